"""The Project store: migrations, label history and undo, queues, resolution."""

from __future__ import annotations

import sqlite3

import pytest

from studio.store import Project, ProjectError
from studio.store.schema import known_migrations
from tests.conftest import add_pairs

# ---------------------------------------------------------------------------------------------- migrations


def test_a_new_memory_project_has_every_migration_and_the_schema():
    p = Project.memory()
    applied = [r[0] for r in p._conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert applied == known_migrations()
    assert p.schema_version == len(known_migrations()) >= 2
    tables = {r[0] for r in p._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"prompts", "responses", "pairs", "labels", "annotators", "runs", "metrics", "samples"} <= tables
    indexes = {r[0] for r in p._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "labels_by_annotator_time" in indexes
    assert p._scalar("PRAGMA foreign_keys") == 1


def test_an_older_project_is_migrated_on_open(tmp_path):
    folder = tmp_path / "old"
    Project.create(folder).close()
    # roll the file back to schema 1, as a project made by the first release would be
    conn = sqlite3.connect(folder / "studio.db")
    conn.execute("DROP INDEX labels_by_annotator_time")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm002_labels_by_annotator_time'")
    conn.commit()
    conn.close()
    with Project.open(folder) as p:
        assert p.schema_version == len(known_migrations())
        assert p._scalar("SELECT count(*) FROM sqlite_master WHERE name = 'labels_by_annotator_time'") == 1


def test_old_runs_log_ratio_rows_are_renamed_so_they_draw_on_todays_charts(tmp_path):
    from studio.core import metrics as M

    folder = tmp_path / "old"
    with Project.create(folder) as p:
        run = p.create_run("dpo", "m", {})
        p.log_metrics(run, [(1, "kl/chosen", -0.1), (1, "kl/rejected", -0.3), (2, "eval/kl/chosen", -0.2),
                            (2, M.EVAL_KL, 0.05)])
    conn = sqlite3.connect(folder / "studio.db")  # back to before m005, with the old names stored
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm005_logratio_names'")
    conn.commit()
    conn.close()
    with Project.open(folder) as p:
        names = [n for _, _, n, _, _ in p.metrics(run)]
    assert names == [M.LOGRATIO_CHOSEN, M.LOGRATIO_REJECTED, M.eval_name(M.LOGRATIO_CHOSEN), M.EVAL_KL]


def test_a_project_from_a_newer_version_is_refused_clearly(tmp_path):
    folder = tmp_path / "newer"
    Project.create(folder).close()
    conn = sqlite3.connect(folder / "studio.db")
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                 "VALUES ('studio', 'm999_from_the_future', '2030-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(ProjectError, match=r"newer version of Preference Studio.*m999_from_the_future.*upgrade"):
        Project.open(folder)


def test_memory_project_refuses_a_newer_schema():
    p = Project.memory()
    p._conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                   "VALUES ('studio', 'm999_future', 'x')")
    with pytest.raises(ProjectError, match="newer version"):
        p._migrate()


def test_opening_a_missing_or_broken_project_says_what_to_do(tmp_path):
    with pytest.raises(ProjectError, match="studio init"):
        Project.open(tmp_path / "nothing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "studio.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ProjectError, match="not a readable project database"):
        Project.open(tmp_path / "broken")


# ---------------------------------------------------------------------------------------------- labels


def test_relabel_and_undo_keep_the_history(pairs_project):
    p = pairs_project
    first = p.record_label(1, "alice", "a", "a", strength="slight", seconds=2.0)
    second = p.record_label(1, "alice", "b", "b", rationale="changed my mind")
    assert [(lab.choice, lab.state) for lab in p.label_history(1)] == [("a", "replaced"), ("b", "current")]
    assert p._scalar("SELECT n_labels FROM pairs WHERE id = 1") == 1
    assert p.last_label_id("alice") == second
    assert p.undo_label(second) == 1
    assert p.current_label(1, "alice").id == first
    assert [lab.state for lab in p.label_history(1)] == ["current", "undone"]
    p.undo_label(first)
    assert p.current_labels(1) == [] and p._scalar("SELECT n_labels FROM pairs WHERE id = 1") == 0
    with pytest.raises(ProjectError, match="only a current label can be undone"):
        p.undo_label(first)


def test_skips_do_not_count_towards_the_overlap(pairs_project):
    p = pairs_project
    p.record_label(2, "alice", "skip", "a")
    assert p._scalar("SELECT n_labels FROM pairs WHERE id = 2") == 0
    p.record_label(2, "alice", "tie", "a")
    assert p._scalar("SELECT n_labels FROM pairs WHERE id = 2") == 1


# ---------------------------------------------------------------------------------------------- queues


def test_mine_queue_continues_after_the_latest_label_and_wraps(pairs_project):
    p = pairs_project
    assert p.next_pair("alice") == 1
    for pid in (1, 2, 3):
        p.record_label(pid, "alice", "a", "a")
    assert p.next_pair("alice") == 4
    assert p.next_pair("alice", after=14) == 4  # wraps round past the end
    assert p.queue_count("alice") == 11
    for pid in range(4, 15):
        p.record_label(pid, "alice", "b", "a")
    assert p.next_pair("alice") is None and p.queue_count("alice") == 0


def test_needs_more_queue_for_each_label_count_below_the_target(pairs_project):
    p = pairs_project
    p.overlap_target = 3
    p.record_label(5, "alice", "a", "a")
    p.record_label(9, "alice", "a", "a")
    p.record_label(9, "bob", "a", "a")
    p.record_label(12, "alice", "a", "a")
    p.record_label(12, "bob", "a", "a")
    p.record_label(12, "carol", "a", "a")  # done: three labels
    assert p.next_pair("dave", "needs_more", after=0) == 5
    assert p.next_pair("dave", "needs_more", after=5) == 9
    assert p.next_pair("dave", "needs_more", after=9) == 5  # 12 has enough labels; wraps to 5
    assert p.next_pair("alice", "needs_more", after=0) is None  # alice labeled both
    assert p.queue_count("dave", "needs_more") == 2


def test_disagreements_queue(pairs_project):
    p = pairs_project
    p.record_label(3, "alice", "a", "a")
    p.record_label(3, "bob", "a", "b")
    p.record_label(7, "alice", "a", "a")
    p.record_label(7, "bob", "b", "a")
    p.record_label(8, "alice", "a", "a")
    p.record_label(8, "bob", "skip", "a")
    assert p.next_pair("carol", "disagreements", after=0) == 7
    assert p.next_pair("carol", "disagreements", after=7) == 7
    assert p.queue_count("carol", "disagreements") == 1


def test_queue_filters_by_split_and_search(pairs_project):
    p = pairs_project
    assert p.next_pair("alice", split="eval") == 11
    assert p.next_pair("alice", search="Question 7") == 8
    with pytest.raises(ProjectError, match="unknown queue"):
        p.next_pair("alice", "nope")


def test_resolve_majority_and_left_out_counts(project):
    add_pairs(project, 5)
    project.record_label(1, "a1", "a", "a")
    project.record_label(1, "a2", "a", "a")
    project.record_label(1, "a3", "b", "a")  # 2-1 for a
    project.record_label(2, "a1", "tie", "a")
    project.record_label(3, "a1", "a", "a")
    project.record_label(3, "a2", "b", "a")  # split vote
    project.record_label(4, "a1", "skip", "a")
    project.record_label(5, "a1", "both_bad", "a")
    prefs, left_out = project.resolve()
    assert [(x.pair_id, x.votes_for, x.votes_total) for x in prefs] == [(1, 2, 3)]
    assert left_out == {"tie": 1, "both_bad": 1, "no_majority": 1, "skipped": 1}


def test_a_run_keeps_a_relative_model_folder_as_an_absolute_path(tmp_path, monkeypatch):
    # `studio train p --model p/models/tiny` then `--resume` from another directory must find the model
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proj" / "models" / "tiny").mkdir(parents=True)
    p = Project.create(tmp_path / "proj")
    local = p.create_run("dpo", "proj/models/tiny", {}, snapshot=[])
    hub = p.create_run("dpo", "org/name", {}, snapshot=[])
    assert p.run(local)["model"] == str(tmp_path / "proj" / "models" / "tiny")
    assert p.run(hub)["model"] == "org/name"  # a hub id (no such folder here) is kept as given
    p.close()


def test_a_runs_training_time_leaves_out_the_pause_between_stop_and_resume(project):
    run_id = project.create_run("dpo", "m", {})
    project.update_run(run_id, status="running", started_at="2026-01-01T10:00:00+00:00",
                       resumed_at="2026-01-01T10:00:00+00:00")
    project.update_run(run_id, status="interrupted", ended_at="2026-01-01T10:00:10+00:00")
    # an hour later it is resumed and runs 5 more seconds
    project.update_run(run_id, status="running", resumed_at="2026-01-01T11:00:00+00:00")
    project.update_run(run_id, status="done", ended_at="2026-01-01T11:00:05+00:00")
    run = project.run(run_id)
    assert run["active_seconds"] == pytest.approx(15.0, abs=0.01) and run["resumed_at"] is None
    # ending again without a new session adds nothing
    project.update_run(run_id, ended_at="2026-01-01T12:00:00+00:00")
    assert project.run(run_id)["active_seconds"] == pytest.approx(15.0, abs=0.01)
