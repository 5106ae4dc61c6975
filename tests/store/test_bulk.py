"""Bulk-filled rows read back through the Project like any others (the benchmarks rely on it)."""

from __future__ import annotations

import sqlite3

import pytest

from studio.store import bulk


def test_bulk_rows_are_ordinary_prompts_responses_pairs_and_labels(project):
    bulk.add_prompts(project, [(1, "First?", "train", "s1"), (2, "Second?", "eval", None)])
    bulk.add_responses(project, [(1, 1, "yes", "m0"), (2, 1, "no", "m1"), (3, 2, "maybe", None), (4, 2, "later", None)])
    bulk.add_pairs(project, [(1, 1, 2, "s1"), (2, 3, 4, None)])
    assert project.pair_count() == 2
    pair = project.pair(2)
    assert (pair.prompt.text, pair.prompt.split, pair.a.text, pair.b.text) == ("Second?", "eval", "maybe", "later")
    assert project.response(1).model == "m0"

    added = bulk.add_labels(project, [(1, "alice", "a", "b", 3.0), (2, "bob", "tie", "a", 5.0),
                                      (1, "bob", "b", "a", 4.0)])
    assert added == 3
    assert project.annotators() == ["alice", "bob"]
    [label] = project.current_labels(2)
    assert (label.choice, label.shown_left, label.seconds) == ("tie", "a", 5.0)
    # the labels count like the app's own (the n_labels triggers ran), and the queues see them
    assert project.counts()["labeled_pairs"] == 2 and project.counts()["labels"] == 3
    assert project.next_pair("alice") == 2 and project.next_pair("bob") is None


def test_bulk_prompts_refuse_ids_already_taken(project):
    first = project.add_prompt("Already here")
    with pytest.raises(sqlite3.IntegrityError, match=r"prompts\.id"):
        bulk.add_prompts(project, [(first + 1, "Fresh", "train", None), (first, "Another", "train", None)])
    assert project.prompt(first).text == "Already here"
    assert project.counts()["prompts"] == 1  # nothing half-written
