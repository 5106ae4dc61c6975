"""Shared fixtures: temporary projects with a few prompts, responses and pairs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# a finished reward or DPO run would start a rank job in a process of its own (tests/train/test_measure_jobs.py
# turns it on where it tests that)
os.environ.setdefault("STUDIO_AUTO_RANK", "0")

from studio.store import Project


@pytest.fixture(autouse=True)
def _own_settings(tmp_path, monkeypatch):
    """Each test gets its own settings file: recent projects and the annotator name never leak between
    tests, nor into the user's."""
    monkeypatch.setenv("STUDIO_SETTINGS", str(tmp_path / "settings.ini"))


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


@pytest.fixture
def read_only_copy(tmp_path):
    """make(folder) -> a copy of a project folder that this process cannot write: on a read-only tmpfs when
    running as root (root writes through file permissions), else a folder without write permission."""
    import shutil
    import subprocess

    mounts, made = [], []

    def make(folder):
        if os.geteuid() == 0:
            mnt = tmp_path / f"read-only-{len(mounts)}"
            mnt.mkdir()
            if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)],
                              capture_output=True).returncode:
                pytest.skip("cannot mount a tmpfs here")
            mounts.append(mnt)
            copy = mnt / folder.name
            shutil.copytree(folder, copy)
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        else:
            copy = tmp_path / f"read-only-{folder.name}"
            shutil.copytree(folder, copy)
            for p in [*sorted(copy.rglob("*"), reverse=True), copy]:
                p.chmod(p.stat().st_mode & ~0o222)
            made.append(copy)
        return copy

    yield make
    for mnt in mounts:
        subprocess.run(["umount", "--lazy", str(mnt)], check=False)  # lazy: even with a file still open
    for copy in made:
        for p in [copy, *copy.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


def _ours(widget) -> bool:
    return type(widget).__module__.startswith(("studio", "tests", "pyqtgraph"))  # never Qt's own (tooltips, ...)


@pytest.fixture(autouse=True)
def _delete_leftover_windows():
    """Windows a GUI test leaves behind are deleted after it. pytest-qt closes the widgets a test registers but
    does not delete them, and many views are made without registering; the application then holds every window
    of every earlier test, and a style sheet applied later re-polishes all of them (the theme tests took 15 s
    each to set up and tear down late in the suite, under 1 s alone)."""
    yield
    import sys

    if "PySide6.QtWidgets" not in sys.modules:  # tests without Qt never load it
        return
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        return
    for widget in QApplication.topLevelWidgets():
        if _ours(widget):
            widget.close()
            widget.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
