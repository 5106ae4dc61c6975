"""A project whose files cannot be written (a read-only folder or disk) is read: stats, runs, export work,
and a write says the project is read-only (the GUI side: tests/ui/test_main_window.py)."""

from __future__ import annotations

import json

import pytest

from studio.cli import main
from studio.store import Project, ProjectError, ProjectReadOnly
from studio.store.import_writing import import_file
from tests.store.test_formats import write_jsonl
from tests.store.test_staged_import import old_schema_project, rows


@pytest.fixture
def labeled(tmp_path):
    folder = tmp_path / "proj"
    with Project.create(folder) as p:
        import_file(p, write_jsonl(tmp_path / "in.jsonl", rows(4)))
        p.record_label(1, "alice", "b", "a")
        p.create_run("dpo", "tiny", {"beta": 0.1})
    return folder


def test_stats_runs_and_export_work_on_a_read_only_project(labeled, read_only_copy, tmp_path, capsys):
    folder = read_only_copy(labeled)
    assert main(["stats", str(folder), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["counts"]["pairs"] == 4 and stats["counts"]["labeled_by_people_pairs"] == 1
    assert main(["runs", str(folder), "--json"]) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)] == ["queued"]
    out = tmp_path / "out.jsonl"
    assert main(["export", str(folder), str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3  # pair 1 is a split vote (import a, alice b)
    assert main(["metrics", str(folder), "1", "--json"]) == 0


def test_a_write_to_a_read_only_project_says_so(labeled, read_only_copy, tmp_path, capsys):
    folder = read_only_copy(labeled)
    with Project.open(folder) as p:
        assert p.read_only
        assert p.next_pair("carol") == 1  # reading as a new annotator writes nothing
        with pytest.raises(ProjectReadOnly, match="read-only"):
            p.record_label(2, "alice", "a", "a")
        assert p.current_label(2, "alice") is None
    assert main(["import", str(folder), str(write_jsonl(tmp_path / "more.jsonl", rows(2, "more ")))]) == 2
    assert "open read-only" in capsys.readouterr().err


def test_an_old_read_only_project_says_it_needs_an_upgrade_where_it_can_be_written(tmp_path, read_only_copy):
    old_schema_project(tmp_path / "old")
    with pytest.raises(ProjectError, match=r"older version .* cannot be written here"):
        Project.open(read_only_copy(tmp_path / "old"))


def test_flags_and_an_annotators_recent_labels_read_on_a_read_only_project_and_a_flag_says_read_only(
        labeled, read_only_copy):
    with Project.open(labeled) as p:
        p.flag_pair(2, "alice", "the prompt is cut off")
    folder = read_only_copy(labeled)
    with Project.open(folder) as p:
        assert [f.note for f in p.flags(2)] == ["the prompt is cut off"] and p.flagged_pair_count() == 1
        assert p.label_count_since("alice", "2000-01-01") == 1
        assert [lab.pair_id for lab in p.recent_labels("alice")] == [1]
        assert p.label_count_since("carol", "2000-01-01") == 0 and p.recent_labels("carol") == []  # writes nothing
        with pytest.raises(ProjectReadOnly, match="read-only"):
            p.flag_pair(1, "alice", "looks wrong")
        with pytest.raises(ProjectReadOnly, match="read-only"):
            p.clear_flags(2, "alice")
        assert p.flagged_pair_count() == 1 and p.flags(1) == []
