"""The project commands through `studio.cli.main`: exit codes, messages, and the --json shapes."""

from __future__ import annotations

import json

from studio.cli import main
from studio.store import Project


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [{"prompt": "Q1", "chosen": "good", "rejected": "bad"}, {"prompt": "Q2", "chosen": "yes", "rejected": "no"}]


def test_init_then_refuse_a_second_init(tmp_path, capsys):
    assert main(["init", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "studio.db").exists() and (tmp_path / "p" / "runs").is_dir()
    assert main(["init", str(tmp_path / "p")]) == 2
    assert "a project already exists here" in capsys.readouterr().err


def test_import_into_a_missing_folder_creates_the_project(tmp_path, capsys):
    src = write_jsonl(tmp_path / "prefs.jsonl", [*ROWS, ROWS[0]])
    assert main(["import", str(tmp_path / "new"), str(src), "--annotator", "gold"]) == 0
    out = capsys.readouterr().out
    assert "imported prefs.jsonl as trl: 3 rows, 2 pairs added, 1 duplicates skipped" in out
    assert "2 labels by gold" in out
    with Project.open(tmp_path / "new") as p:
        assert p.pair_count() == 2 and p.annotators() == ["gold"]


def test_a_failed_import_lists_errors_changes_nothing_and_exits_non_zero(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"prompt": "Q", "chosen": "x"}, {"prompt": 3, "chosen": "a",
                                                                                       "rejected": "b"}])
    assert main(["import", str(tmp_path / "p"), str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.jsonl:2: rejected: missing field" in err
    assert "bad.jsonl:3: prompt: wrong type: expected a string, got number" in err
    assert "2 invalid row(s) of 3; nothing was imported" in err
    assert not (tmp_path / "p").exists()  # not even created

    assert main(["import", str(tmp_path / "p"), str(bad), "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "1 pairs added" in captured.out and "2 invalid rows skipped" in captured.out
    assert "skipped: bad.jsonl:2: rejected: missing field" in captured.err


def test_import_errors_for_a_missing_file_and_format(tmp_path, capsys):
    assert main(["import", str(tmp_path / "p"), str(tmp_path / "nope.jsonl")]) == 3
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"text": "hello"}])
    assert main(["import", str(tmp_path / "p"), str(odd)]) == 3
    assert "cannot tell the format" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_export_prints_what_was_left_out(tmp_path, capsys):
    main(["import", str(tmp_path / "p"), str(write_jsonl(tmp_path / "in.jsonl", ROWS))])
    with Project.open(tmp_path / "p") as p:
        p.record_label(2, "alice", "b", "a")  # a split vote with the import
    capsys.readouterr()
    assert main(["export", str(tmp_path / "p"), str(tmp_path / "out.jsonl"), "--format", "trl"]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 preferences" in out and "1 without a majority" in out
    assert json.loads((tmp_path / "out.jsonl").read_text()) == ROWS[0]
    assert main(["export", str(tmp_path / "p"), str(tmp_path / "labels.jsonl"), "--format", "labels"]) == 0
    assert "wrote 3 labels" in capsys.readouterr().out


def test_stats_json_shape(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "demo")]) == 0
    assert "created demo project" in capsys.readouterr().out
    # the demo carries a tiny model, so a run can be launched from it offline
    assert (tmp_path / "demo" / "models" / "tiny-demo" / "config.json").is_file()
    assert main(["stats", str(tmp_path / "demo"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert set(s) == {"schema", "project", "split", "counts", "resolved", "label_distribution", "position_bias",
                      "length_bias", "agreement", "annotators", "annotator_audit", "warnings"}
    assert set(s["position_bias"]) == {"decided", "left_won", "share", "ci95"}
    assert set(s["annotator_audit"]) == {"time_floor_seconds", "people", "imported"}
    assert set(s["annotator_audit"]["people"][0]) == {
        "name", "labels", "decided", "ties", "both_bad", "skips", "left", "longer", "length_coefficient",
        "median_seconds", "fast_labels", "majority_agreement"}  # as docs/store.md lists them
    assert set(s["length_bias"]) == {"decided_pairs", "chosen_longer", "share", "ci95", "median_ratio"}
    assert set(s["agreement"]) == {"pairs", "annotators", "percent", "cohens_kappa", "krippendorff_alpha"}
    assert main(["stats", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "Krippendorff's alpha" in out and "alice" in out and "chose longer (95%)" in out


def test_runs_and_metrics_json(tmp_path, capsys):
    main(["import", str(tmp_path / "p"), str(write_jsonl(tmp_path / "in.jsonl", ROWS))])
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "p"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    with Project.open(tmp_path / "p") as p:
        run = p.create_run("dpo", "tiny-model", {"beta": 0.1})
        p.update_run(run, status="running", step=2, total_steps=10, started_at="2025-01-01T00:00:00")
        p.log_metrics(run, [(1, "loss", 0.69), (2, "loss", 0.5), (2, "rewards/margins", 0.1)], at=100.0)
    assert main(["runs", str(tmp_path / "p"), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert set(r) == {"id", "name", "method", "status", "model", "step", "total_steps", "created_at", "started_at",
                      "ended_at", "error", "group_id", "queue_place", "warnings", "reward_model"}
    assert (r["id"], r["name"], r["status"], r["step"], r["total_steps"]) == (run, f"dpo-{run}", "running", 2, 10)
    assert r["reward_model"] is None  # set for PPO/RLOO runs: the reward run or classifier they train against
    assert main(["metrics", str(tmp_path / "p"), str(run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["metrics"]
    assert [(m["step"], m["name"], m["value"]) for m in rows] == [(1, "loss", 0.69), (2, "loss", 0.5),
                                                                   (2, "rewards/margins", 0.1)]
    assert main(["runs", str(tmp_path / "p")]) == 0
    assert "dpo-1" in capsys.readouterr().out
    assert main(["metrics", str(tmp_path / "p"), "99"]) == 2
    assert "run 99: no such run" in capsys.readouterr().err


def test_commands_on_a_missing_project_say_how_to_create_one(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "none")]) == 2
    assert "studio init" in capsys.readouterr().err
