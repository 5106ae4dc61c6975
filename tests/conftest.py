"""Shared fixtures: temporary projects with a few prompts, responses and pairs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# a finished reward or DPO run would start a rank job in a process of its own (tests/train/test_measure_jobs.py
# turns it on where it tests that)
os.environ.setdefault("STUDIO_AUTO_RANK", "0")

from studio.store import Project


@pytest.fixture
def project(tmp_path):
    """An empty project in a temporary folder."""
    p = Project.create(tmp_path / "proj")
    yield p
    p.close()


def add_pairs(project: Project, n: int, split: str = "train", source: str = "test") -> list[int]:
    """Add n pairs, each to its own prompt, with a short and a long response."""
    ids = []
    for i in range(n):
        pid = project.add_prompt(f"Question {i}: what is {i} plus {i}?", split=split, source=source)
        a = project.add_response(pid, f"{2 * i}.")
        b = project.add_response(pid, f"The answer to {i} plus {i} is {2 * i}, since adding a number to itself "
                                      f"doubles it.")
        ids.append(project.add_pair(pid, a, b, source=source))
    return ids


@pytest.fixture
def pairs_project(project):
    """A project with 10 train and 4 eval pairs, unlabeled."""
    add_pairs(project, 10)
    add_pairs_eval = [project.add_pair(*_eval_pair(project, i)) for i in range(4)]
    assert all(add_pairs_eval)
    return project


def _eval_pair(project: Project, i: int) -> tuple[int, int, int]:
    pid = project.add_prompt(f"Eval question {i}?", split="eval", source="test")
    return pid, project.add_response(pid, f"Short {i}."), project.add_response(pid, f"A longer answer number {i}.")
