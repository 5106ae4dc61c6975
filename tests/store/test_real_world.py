"""Files as they come from the wild (BOMs, CRLF, pandas NaN, broken escapes) and a store that runs out of
disk or finds the database busy: clear errors, and nothing already stored is lost."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from studio.cli import main
from studio.store import Project, ProjectError
from studio.store.export import export_file
from studio.store.formats import ImportErrors, parse_file
from studio.store.import_writing import import_file
from studio.store.project import ProjectBusy, StorageError
from tests.store.test_formats import assert_label_counts, preferences, snapshot, write_jsonl

# ---------------------------------------------------------------------------------------------- shapes of files


def test_jsonl_with_bom_crlf_and_a_trailing_blank_line(project, tmp_path):
    path = tmp_path / "win.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "p1", "chosen": "c1", "rejected": "r1"}\r\n'
                     b'{"prompt": "p2", "chosen": "c2", "rejected": "r2"}\r\n\r\n')
    report = import_file(project, path)
    assert (report.format, report.rows, report.pairs_added) == ("trl", 2, 2)
    assert {r[0] for r in project._conn.execute("SELECT text FROM prompts")} == {"p1", "p2"}  # no \r, no BOM


def test_csv_with_bom_embedded_newlines_and_quotes_names_the_right_lines(project, tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b'\xef\xbb\xbfprompt,chosen,rejected\r\n"multi\r\nline ""quoted""","c, 1",r1\r\n'
                     b'p2,same,same\r\n"p3","x\n\ny",""\r\n')
    errors = parse_file(path).errors
    # the record after a two-line cell starts on line 4
    assert [(e.line, e.field, e.message) for e in errors] == [(4, "rejected", "identical to chosen"),
                                                              (5, "rejected", "empty text")]
    report = import_file(project, path, skip_invalid=True)
    assert report.pairs_added == 1
    assert project.prompt(1).text == 'multi\r\nline "quoted"'
    assert project.response(1).text == "c, 1"


@pytest.mark.parametrize("field", ["prompt", "chosen", "model_a", "content"])
def test_a_lone_surrogate_escape_is_a_named_error_not_a_crash(project, tmp_path, field):
    # "\ud800" is valid JSON but not Unicode text: SQLite (UTF-8) refused it halfway through the write
    good = {"prompt": "Old", "chosen": "x", "rejected": "y"}
    row: dict = {"prompt": "Q", "chosen": "A", "rejected": "B"}
    where = field
    if field == "model_a":
        good = {"prompt": "Old", "response_a": "x", "response_b": "y"}
        row = {"prompt": "Q", "response_a": "A", "response_b": "B", "model_a": "m\ud800"}
    elif field == "content":
        row = {"prompt": [{"role": "user", "content": "Q\udc00"}], "chosen": [{"role": "assistant", "content": "A"}],
               "rejected": [{"role": "assistant", "content": "B"}]}
        where = "prompt[0].content"
    else:
        row[field] = "bad \ud800 text"
    import_file(project, write_jsonl(tmp_path / "before.jsonl", [good]))
    before = snapshot(project)
    path = tmp_path / "sur.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n", encoding="utf-8")  # ensure_ascii: \ud800
    with pytest.raises(ImportErrors) as exc:
        import_file(project, path)
    (err,) = exc.value.errors
    assert (err.line, err.field) == (2, where)
    assert "lone UTF-16 surrogate" in err.message
    assert snapshot(project) == before


def test_a_surrogate_file_through_the_cli_creates_no_project(tmp_path, capsys):
    path = tmp_path / "sur.jsonl"
    path.write_text('{"prompt": "\\ud800", "chosen": "a", "rejected": "b"}\n', encoding="utf-8")
    assert main(["import", str(tmp_path / "new"), str(path)]) == 1
    assert "sur.jsonl:1: prompt: invalid text: a lone UTF-16 surrogate" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_ultrafeedback_with_system_messages_and_pandas_nan_scores(project, tmp_path):
    def conv(reply):
        return [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "How are you?"},
                {"role": "assistant", "content": reply}]

    path = tmp_path / "uf.jsonl"
    # json.dumps writes float("nan") as NaN, as pandas' to_json of a missing score does
    path.write_text(json.dumps({"prompt": "How are you?", "prompt_id": "x1", "chosen": conv("Well."),
                                "rejected": conv("Bad."), "score_chosen": 8.5, "score_rejected": float("nan"),
                                "messages": conv("Well.")}) + "\n", encoding="utf-8")
    report = import_file(project, path)
    assert report.format == "ultrafeedback"
    pair = project.pair(1)
    assert pair.prompt.messages == conv("x")[:2]
    assert (pair.a.text, pair.b.text) == ("Well.", "Bad.")
    assert pair.meta == {"score_chosen": 8.5}  # NaN means no score; never a NaN in the stored JSON
    assert "NaN" not in project._scalar("SELECT meta FROM pairs WHERE id = 1")


def test_nan_score_in_csv_is_no_score_and_infinity_is_an_error(project, tmp_path):
    path = tmp_path / "uf.csv"
    chosen = json.dumps([{"role": "user", "content": "p"}, {"role": "assistant", "content": "a"}])
    rejected = json.dumps([{"role": "user", "content": "p"}, {"role": "assistant", "content": "b"}])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "chosen", "rejected", "score_chosen", "score_rejected"])
        w.writerow(["p", chosen, rejected, "nan", "3"])
        w.writerow(["q", chosen.replace('"p"', '"q"'), rejected.replace('"p"', '"q"'), "inf", "1"])
    parsed = parse_file(path)
    assert [(e.line, e.field, e.message) for e in parsed.errors] == [(3, "score_chosen", "not a finite number: inf")]
    import_file(project, path, skip_invalid=True)
    assert project.pair(1).meta == {"score_rejected": 3.0}


def test_hh_transcripts_with_windows_line_ends_and_odd_whitespace(project, tmp_path):
    rows = [
        # multi-turn: the earlier turns become the prompt conversation
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: A joke?\n\nAssistant:  Why did the chicken...  ",
         "rejected": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: A joke?\n\nAssistant: No."},
        # no leading blank lines, CRLF line ends (a transcript saved by a Windows tool)
        {"chosen": "Human: Two\r\n\r\nAssistant: 2", "rejected": "Human: Two\r\n\r\nAssistant: two"},
    ]
    report = import_file(project, write_jsonl(tmp_path / "hh.jsonl", rows))
    assert (report.format, report.pairs_added) == ("hh", 2)
    first, second = project.pair(1), project.pair(2)
    assert first.prompt.messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                                     {"role": "user", "content": "A joke?"}]
    assert first.a.text == "Why did the chicken..."
    assert second.prompt.messages == [{"role": "user", "content": "Two"}]
    assert (second.a.text, second.b.text) == ("2", "two")


def test_an_hh_transcript_that_does_not_end_with_the_assistant_is_named(tmp_path):
    rows = [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye",
             "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Ciao"}]
    (err,) = parse_file(write_jsonl(tmp_path / "hh.jsonl", rows)).errors
    assert (err.line, err.field) == (1, "chosen")
    assert "does not end with an" in err.message and "Assistant:" in err.message


def test_trl_conversational_prompt_ending_with_an_assistant_turn_is_kept_as_is(project, tmp_path):
    # TRL reads a final assistant turn in the prompt as a prefill the completion continues: keep it whole
    prompt = [{"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Here it is:"}]
    rows = [{"prompt": prompt, "chosen": [{"role": "assistant", "content": "Old pond..."}],
             "rejected": [{"role": "assistant", "content": "No."}]}]
    import_file(project, write_jsonl(tmp_path / "tc.jsonl", rows))
    assert project.pair(1).prompt.messages == prompt
    export_file(project, tmp_path / "out.jsonl", "trl-chat")
    assert json.loads((tmp_path / "out.jsonl").read_text())["prompt"] == prompt


def test_round_trip_by_split_keeps_the_eval_split(tmp_path):
    """TRL files carry no split: export each split to its own file and import it with --split."""
    chat = {"prompt": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "Sum 1 2"}],
            "chosen": [{"role": "assistant", "content": "3"}], "rejected": [{"role": "assistant", "content": "12"}]}
    plain = {"prompt": "Capital of France?", "chosen": "Paris, \"of course\".\nIt is.", "rejected": "Lyon"}
    src = Project.create(tmp_path / "src")
    import_file(src, write_jsonl(tmp_path / "train.jsonl", [chat]))
    import_file(src, write_jsonl(tmp_path / "eval.jsonl", [plain]), split="eval")
    for fmt, ext in (("trl-chat", "jsonl"), ("csv", "csv")):
        dst = Project.create(tmp_path / f"dst-{fmt}")
        for split in ("train", "eval"):
            out = tmp_path / f"{fmt}-{split}.{ext}"
            assert export_file(src, out, fmt, split=split).rows == 1
            import_file(dst, out, split=split)
        by_split = {dst.prompt(p.prompt_id).text: p.split for p in dst.resolved_preferences()}
        assert by_split == {"system: Terse.\n\nuser: Sum 1 2": "train",
                            # trl-chat wraps a plain prompt as one user turn; csv keeps it plain
                            ("user: Capital of France?" if fmt == "trl-chat" else "Capital of France?"): "eval"}
        if fmt == "csv":
            assert preferences(dst) == preferences(src)
        dst.close()


def test_importing_the_same_file_twice_counts_duplicates_and_adds_no_labels(tmp_path, capsys):
    src = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "Q1", "chosen": "a", "rejected": "b"},
                                                {"prompt": "Q2", "chosen": "c", "rejected": "d"}])
    assert main(["import", str(tmp_path / "p"), str(src)]) == 0
    assert main(["import", str(tmp_path / "p"), str(src)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "imported prefs.jsonl as trl: 2 rows, 0 pairs added, 2 duplicates skipped, 0 new prompts"
    with Project.open(tmp_path / "p") as p:
        assert p._scalar("SELECT count(*) FROM labels") == 2


def test_skip_invalid_lists_each_skipped_row_on_stderr(tmp_path, capsys):
    src = write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "Q1", "chosen": "a", "rejected": "b"},
                                                {"prompt": "Q2", "chosen": 5, "rejected": "b"},
                                                {"prompt": "Q3", "chosen": "x"}])
    assert main(["import", str(tmp_path / "p"), str(src), "--skip-invalid"]) == 0
    cap = capsys.readouterr()
    assert cap.err.splitlines() == ["skipped: mixed.jsonl:2: chosen: wrong type: expected a string, got number",
                                    "skipped: mixed.jsonl:3: rejected: missing field"]
    assert "1 pairs added" in cap.out and "2 invalid rows skipped" in cap.out


# ---------------------------------------------------------------------------------------------- full disk, busy


def _fill_up(project: Project, spare_pages: int = 3) -> None:
    """Cap the database a few pages above its size: SQLite then fails writes with SQLITE_FULL, exactly as
    on a full disk (see test_a_real_full_disk... for the real thing)."""
    pages = project._scalar("PRAGMA page_count")
    project._conn.execute(f"PRAGMA max_page_count = {pages + spare_pages}")


def _rows(n: int, tag: str = "") -> list[dict]:
    return [{"prompt": f"Question {tag}{i} " + "words " * 40, "chosen": f"Good {i} " + "yes " * 60,
             "rejected": f"Bad {i} " + "no " * 50} for i in range(n)]


def test_a_full_disk_during_import_is_a_clear_error_and_changes_nothing(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "first.jsonl", _rows(5)))
    before = snapshot(project)
    _fill_up(project)
    with pytest.raises(StorageError, match="the disk is full; nothing was saved") as exc:
        import_file(project, write_jsonl(tmp_path / "big.jsonl", _rows(2000, "b")))
    assert "studio.db" in str(exc.value)
    assert snapshot(project) == before
    # the label-count trigger the import drops for speed is back, and counts still match
    assert project._scalar("SELECT count(*) FROM sqlite_master WHERE name = 'labels_count_insert'") == 1
    assert_label_counts(project)
    project._conn.execute("PRAGMA max_page_count = 1073741823")
    assert import_file(project, tmp_path / "big.jsonl").pairs_added == 2000
    assert_label_counts(project)


def test_a_full_disk_while_labeling_keeps_the_earlier_label(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "response_a": "A", "response_b": "B"}]))
    first = project.record_label(1, "alice", "a", "a", rationale="fine")
    _fill_up(project, spare_pages=0)
    with pytest.raises(StorageError, match="disk is full"):
        project.record_label(1, "alice", "b", "a", rationale="x" * 20_000)
    assert [(lab.id, lab.choice.value, lab.state.value) for lab in project.label_history(1)] == [
        (first, "a", "current")]
    assert project._scalar("SELECT n_labels FROM pairs WHERE id = 1") == 1


def test_a_write_behind_a_held_lock_is_reported_as_busy(tmp_path):
    with Project.create(tmp_path / "p") as first, Project.open(tmp_path / "p") as second:
        second._conn.execute("PRAGMA busy_timeout = 50")
        with first.transaction(), pytest.raises(ProjectBusy, match="the project is busy"):
            second.log_metrics(1, [(1, "loss", 0.5)])
        assert not second._conn.in_transaction
        second.set_setting("x", "1")  # once the lock is free, the same write works


def test_a_real_full_disk_on_a_small_tmpfs(tmp_path):
    """The real thing: a 3 MB tmpfs (needs root; skipped elsewhere). The import fails with a clear error
    and the project, WAL file included, still opens with everything it had."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        folder = mnt / "proj"
        small = write_jsonl(tmp_path / "small.jsonl", _rows(100))
        big = write_jsonl(tmp_path / "big.jsonl", _rows(20_000, "b"))
        code = subprocess.run([sys.executable, "-m", "studio", "import", str(folder), str(small)],
                              capture_output=True, text=True).returncode
        assert code == 0
        res = subprocess.run([sys.executable, "-m", "studio", "import", str(folder), str(big)],
                             capture_output=True, text=True)
        assert res.returncode == 2, res.stderr
        assert "the disk is full; nothing was saved" in res.stderr and "Traceback" not in res.stderr
        with Project.open(folder) as p:
            assert p.pair_count() == 100
            assert_label_counts(p)
            assert p._scalar("PRAGMA integrity_check") == "ok"
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_labels_from_another_process_go_in_while_a_worker_logs_metrics(tmp_path):
    """Two processes writing at once, as the GUI and a training worker do: neither sees 'database is
    locked' while the other keeps its transactions short."""
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        import_file(p, write_jsonl(tmp_path / "pairs.jsonl", [
            {"prompt": f"Q{i}", "response_a": "A", "response_b": "B"} for i in range(200)]))
        run = p.create_run("dpo", "tiny", {})
    script = (f"from studio.store import Project\n"
              f"with Project.open({str(folder)!r}) as p:\n"
              f"    for step in range(300):\n"
              f"        p.log_metrics({run}, [(step, 'loss', 0.1), (step, 'rewards/margins', 0.2)])\n")
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd())
    try:
        with Project.open(folder) as p:
            for pair in range(1, 201):
                p.record_label(pair, "alice", "a", p.shown_left(pair, "alice"), seconds=1.0)
    finally:
        assert worker.wait(timeout=120) == 0
    with Project.open(folder) as p:
        assert p._scalar("SELECT count(*) FROM labels WHERE state = 'current'") == 200
        assert p._scalar("SELECT count(*) FROM metrics") == 600


def test_export_prints_what_it_left_out(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "demo"), "--no-model"]) == 0
    assert main(["export", str(tmp_path / "demo"), str(tmp_path / "out.jsonl"), "--format", "trl-chat"]) == 0
    out = capsys.readouterr().out.splitlines()[-1]
    assert out == (f"wrote 22 preferences to {tmp_path / 'out.jsonl'} (left out: 2 ties, 0 both bad, "
                   "6 without a majority, 0 only skipped)")


def test_an_export_that_cannot_be_written_is_a_clear_error_and_leaves_no_file(tmp_path):
    with Project.create(tmp_path / "p") as p:
        import_file(p, write_jsonl(tmp_path / "in.jsonl", _rows(3)))
        (tmp_path / "a-file").write_text("x")
        with pytest.raises(ProjectError, match=r"a-file/out.jsonl: cannot create the folder"):
            export_file(p, tmp_path / "a-file" / "out.jsonl")
        (tmp_path / "out.jsonl").mkdir()  # the rename over a folder fails once everything is written
        with pytest.raises(ProjectError, match=r"out.jsonl: cannot write \(.*\); no file was written"):
            export_file(p, tmp_path / "out.jsonl")
        assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_an_export_onto_a_full_tmpfs_leaves_no_half_file(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with Project.create(tmp_path / "p") as p:
            import_file(p, write_jsonl(tmp_path / "in.jsonl", _rows(300)))
            with pytest.raises(ProjectError, match="No space left on device"):
                export_file(p, mnt / "out.jsonl")
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
