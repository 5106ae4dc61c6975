"""What the labeling view's annotator side and the Data view read from the store: today's labels, recent
decisions, flags for review, sorted pages, project settings (guidelines, length counts), run estimates."""

from __future__ import annotations

import pytest

from studio.core import metrics as M
from studio.store import PairFilter, Project, ProjectError
from tests.conftest import add_pairs


@pytest.fixture
def p():
    project = Project.memory()
    yield project
    project.close()


def _set_created(p: Project, label_id: int, when: str) -> None:
    p._conn.execute("UPDATE labels SET created_at = ? WHERE id = ?", (when, label_id))


def test_labels_since_count_only_this_annotators_labels_still_in_force(p):
    ids = add_pairs(p, 6)
    old = p.record_label(ids[0], "alice", "a", "a")
    _set_created(p, old, "2020-01-01T10:00:00.000+00:00")
    p.record_label(ids[1], "alice", "b", "a")
    p.record_label(ids[2], "alice", "tie", "b")
    p.record_label(ids[3], "import:file.jsonl", "a", "a")  # an import is nobody's work
    p.record_label(ids[4], "bob", "a", "a")
    today = "2021-01-01T00:00:00.000+00:00"
    assert p.label_count_since("alice", today) == 2
    p.record_label(ids[1], "alice", "a", "a")  # a relabel replaces: still two labels in force today
    assert p.label_count_since("alice", today) == 2
    p.undo_label(p.last_label_id("alice"))  # the undo brings the replaced one back
    assert p.label_count_since("alice", today) == 2
    p.undo_label(p.last_label_id("alice"))
    assert p.label_count_since("alice", today) == 1
    assert p.label_count_since("carol", today) == 0


def test_recent_labels_are_the_latest_in_force_newest_first(p):
    ids = add_pairs(p, 7)
    for i in ids[:6]:
        p.record_label(i, "alice", "a", "a")
    p.undo_label(p.last_label_id("alice"))  # ids[5] no longer in force
    p.record_label(ids[0], "alice", "b", "a")  # relabeled: the newest
    recent = p.recent_labels("alice", limit=3)
    assert [lab.pair_id for lab in recent] == [ids[0], ids[4], ids[3]]
    assert recent[0].choice == "b"


def test_flags_carry_a_note_are_renoted_cleared_and_kept_in_history(p):
    ids = add_pairs(p, 4)
    p.flag_pair(ids[1], "alice", "  prompt is cut off  ")
    p.flag_pair(ids[1], "alice", "prompt is cut off at the end")  # the same annotator re-notes
    p.flag_pair(ids[1], "bob")
    p.flag_pair(ids[3], "bob", "is this a duplicate?")
    open_flags = p.flags(ids[1])
    assert [(f.annotator, f.note) for f in open_flags] == [("alice", "prompt is cut off at the end"), ("bob", None)]
    assert p.flagged_pair_count() == 2
    assert p.queue_count("carol", "flagged") == 2 and p.next_pair("carol", "flagged") == ids[1]
    assert p.count_pairs(PairFilter(flagged=True)) == 2
    assert p.clear_flags(ids[1], "alice") == 1
    assert [f.annotator for f in p.flags(ids[1])] == ["bob"]
    assert p.clear_flags(ids[1]) == 1 and p.flags(ids[1]) == []
    assert len(p.flags(ids[1], include_cleared=True)) == 3
    assert p.next_pair("carol", "flagged") == ids[3]
    with pytest.raises(ProjectError, match="pair 999"):
        p.flag_pair(999, "alice", "x")


def test_pairs_sort_by_each_data_view_column(p):
    ids = add_pairs(p, 5)  # response b grows with i; a is "2i."
    p.record_label(ids[0], "alice", "a", "a", seconds=30)
    p.record_label(ids[0], "bob", "b", "a", seconds=10)  # split: disagreement 0.5
    p.record_label(ids[1], "alice", "a", "a", seconds=5)
    p.record_label(ids[1], "bob", "a", "a", seconds=7)  # agree: 0
    p.record_label(ids[2], "alice", "skip", "a", seconds=1)  # only a skip: no disagreement
    p.flag_pair(ids[4], "alice")
    everything = PairFilter()
    assert p.pair_order(everything, "disagreement", descending=True)[:2] == [ids[0], ids[1]]
    assert p.pair_order(everything, "labels", descending=True)[:3] == [ids[0], ids[1], ids[2]]
    assert p.pair_order(everything, "seconds", descending=True)[:3] == [ids[0], ids[1], ids[2]]
    assert p.pair_order(everything, "seconds")[:3] == [ids[2], ids[1], ids[0]], "no time comes last either way"
    assert p.pair_order(everything, "flags", descending=True)[0] == ids[4]
    assert p.pair_order(everything, "b_chars", descending=True) == sorted(
        ids, key=lambda i: -len(p.pair(i).b.text))
    assert p.pair_order(PairFilter(state="labeled"), "id", descending=True) == [ids[1], ids[0]]
    rows = p.pair_rows([ids[1], ids[0], ids[4]])
    assert [r.id for r in rows] == [ids[1], ids[0], ids[4]]
    assert rows[1].disagreement == 0.5 and rows[0].disagreement == 0.0 and rows[2].flags == 1
    assert rows[1].seconds == 20.0 and rows[2].seconds is None
    with pytest.raises(ProjectError, match="sort: unknown column"):
        p.pair_order(everything, "prompt; DROP TABLE pairs")


def test_guidelines_and_length_counts_are_project_settings_with_a_history(tmp_path):
    with Project.create(tmp_path / "proj") as p:
        assert p.guidelines == "" and p.show_length_counts is True and p.length_count_changes() == []
        p.guidelines = "# Prefer\n\n- correct over long"
        p.show_length_counts = False
        p.show_length_counts = False  # no change, no new entry
        p.show_length_counts = True
    with Project.open(tmp_path / "proj") as p:
        assert p.guidelines.startswith("# Prefer")
        changes = p.length_count_changes()
        assert [c["shown"] for c in changes] == [False, True] and changes[0]["at"] <= changes[1]["at"]


def test_recent_pace_prefers_the_same_model_with_a_median_speed_and_seconds_per_step(p):
    add_pairs(p, 2)
    p.record_label(p.pair_ids()[0], "alice", "b", "a")
    assert p.recent_pace("m") is None
    other = p.create_run("dpo", "other-model", {"method": "dpo"}, name="other")
    p.log_metrics(other, [(1, M.TOKENS_PER_SECOND, 900.0)], at=100.0)
    mine = p.create_run("dpo", "m", {"method": "dpo", "batch_size": 8}, name="mine")
    for step, value in ((1, 100.0), (2, 120.0), (3, 5000.0)):
        p.log_metrics(mine, [(step, M.TOKENS_PER_SECOND, value)], at=10.0 * step)
    newest = p.create_run("dpo", "third", {"method": "dpo"}, name="no metrics yet")
    assert newest
    pace = p.recent_pace("m")
    assert (pace.run, pace.tokens_per_second, pace.seconds_per_step) == ("mine", 120.0, 10.0)
    assert pace.config["batch_size"] == 8
    assert p.recent_pace("unknown").run == "mine", "else the newest run that logged any"
    assert p.recent_pace(None).run == "mine"
    assert p.recent_pace("other-model").seconds_per_step is None, "one step: no pace per step"
    prompt_chars, response_chars = p.mean_text_chars()
    pair = p.pair(p.pair_ids()[0])
    assert prompt_chars == len(pair.prompt.text)
    assert response_chars == (len(pair.a.text) + len(pair.b.text)) / 2
