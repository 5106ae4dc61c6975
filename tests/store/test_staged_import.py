"""A long import never blocks other writers, and a failed or killed one leaves nothing visible; imported
labels are the dataset's verdict (not a person's); an older project is migrated to both."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys

import pytest

from studio.store import Project
from studio.store.import_writing import import_file
from tests.store.test_formats import assert_label_counts, snapshot, write_jsonl


def rows(n: int, tag: str = "") -> list[dict]:
    return [{"prompt": f"Question {tag}{i}?", "chosen": f"Answer {i}.", "rejected": f"Wrong {i}."} for i in range(n)]


IMPORT_THEN_HANG = """
import sys, time
from studio.store import Project
from studio.store.import_writing import import_file

def progress(done, total):
    if done > 0.7 * total:  # between two of the import's transactions, 40% into the writing
        print("WRITING", flush=True)
        time.sleep(600)

with Project.open(sys.argv[1]) as p:
    import_file(p, sys.argv[2], progress=progress)
"""


def test_an_import_writes_in_short_transactions_invisibly_and_a_kill_leaves_nothing(tmp_path):
    """The import commits as it goes (so another writer gets in), but none of its rows is visible before
    the end; killed midway, the next opening deletes what it wrote."""
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        import_file(p, write_jsonl(tmp_path / "first.jsonl", rows(3, "first ")))
        p.record_label(1, "alice", "a", "a")
        before, counts_before = snapshot(p), p.counts()
    big = write_jsonl(tmp_path / "big.jsonl", rows(20_000))
    script = tmp_path / "import_then_hang.py"
    script.write_text(IMPORT_THEN_HANG)
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(big)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "WRITING"
        with Project.open(folder) as p:
            written = p._scalar("SELECT count(*) FROM pairs")
            assert written > before[2], "the import commits chunk by chunk"
            assert p.pair_count() == before[2] and p.counts() == counts_before, "none of it is visible"
            assert p._scalar("SELECT count(*) FROM labels") > counts_before["labels"], "its labels are written too"
            assert p.next_pair("bob", after=3) == 1  # the labeling queue does not reach into the import
            p.record_label(2, "alice", "b", "a")  # another writer gets in while the import is unfinished
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    with Project.open(folder) as p:
        assert snapshot(p) == (before[0], before[1], before[2], before[3] + 1, before[4])
        assert p._scalar("SELECT count(*) FROM imports WHERE state != 'done'") == 0
        assert p.integrity_check() == "ok"
        assert_label_counts(p)


def test_a_failed_import_deletes_its_rows_and_annotator(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "first.jsonl", rows(2, "a")))
    before = snapshot(project)
    seen = []

    def cancel(done, total):
        seen.append(project.pair_count())
        if done > total * 3 // 4:
            raise KeyboardInterrupt  # Ctrl+C in the middle of the writing

    with pytest.raises(KeyboardInterrupt):
        import_file(project, write_jsonl(tmp_path / "more.jsonl", rows(3000, "b")), progress=cancel)
    assert snapshot(project) == before and set(seen) == {2}
    assert project._scalar("SELECT count(*) FROM imports WHERE state != 'done'") == 0


def test_labels_for_pairs_already_here_are_added_once_the_import_is_published(project, tmp_path):
    pairs = [{"prompt": r["prompt"], "response_a": r["rejected"], "response_b": r["chosen"]} for r in rows(300)]
    import_file(project, write_jsonl(tmp_path / "pairs.jsonl", pairs))
    report = import_file(project, write_jsonl(tmp_path / "labels.jsonl", rows(300)))
    assert (report.pairs_added, report.duplicates, report.labels_added) == (0, 300, 300)
    assert {lab.choice.value for pid in project.pair_ids() for lab in project.current_labels(pid)} == {"b"}
    assert project._scalar("SELECT count(*) FROM import_labels") == 0
    assert project._scalar("SELECT state FROM imports ORDER BY id DESC LIMIT 1") == "done"


def test_a_prompt_added_while_an_import_holds_it_stays_when_the_import_fails(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "x.jsonl", rows(1)))
    from studio.store.db import prompt_hash

    iid = project.begin_import("other.jsonl", "prompts", None)
    hidden = project._conn.execute("INSERT INTO prompts (text, split, hash, created_at, import_id) "
                                   "VALUES ('Hidden?', 'train', ?, 'now', ?)", (prompt_hash("Hidden?", None), iid))
    assert project.counts()["prompts"] == 1
    assert project.add_prompt("Hidden?") == hidden.lastrowid  # the same prompt: now it is the project's own
    assert project.counts()["prompts"] == 2
    project.abort_import(iid)
    assert project.counts()["prompts"] == 2 and project.prompt(hidden.lastrowid).text == "Hidden?"


def test_pairs_of_an_import_being_written_cannot_be_flagged_and_a_generation_keeps_what_it_shares(project,
                                                                                                tmp_path):
    """Flags and generation jobs (other writers) meet the rows of an unfinished import: a hidden pair is not
    there to flag, its prompts are not generated for, and a generated text or pair the import also holds is
    the job's own, so it stays when the import fails."""
    from studio.core.generations import GENERATE, GenerationPlan
    from studio.store import ProjectError
    from studio.store import generations as G

    import_file(project, write_jsonl(tmp_path / "first.jsonl", rows(2, "first ")))
    project.flag_pair(1, "alice", "typo in the prompt")
    shared = project.pair(1).prompt
    sources = G.resolve_sources(project, ["base", "/other/model-b"], model="/models/a")
    plan = GenerationPlan(GENERATE, sources, [shared.id], samples=1, temperature=0.7)
    job = G.create_job(project, plan)
    # the import's first rows: two new answers to the shared prompt, as a pair
    more = [{"prompt": shared.text, "chosen": "New answer.", "rejected": "Newer answer."}, *rows(6000, "b")]
    seen = {}

    def meanwhile(done, total):
        if done <= total // 2 or seen:
            return  # reading the file (the first half of the progress), or checked already
        hidden = project._scalar("SELECT id FROM pairs WHERE prompt_id = ? AND id > 2", (shared.id,))
        seen["hidden"] = hidden
        with pytest.raises(ProjectError, match=f"pair {hidden}: no such pair"):
            project.flag_pair(hidden, "alice")
        seen["flagged"] = project.flagged_pair_count()
        seen["prompts"] = G.choose_prompts(project, None)
        texts = [G.GeneratedText(shared.id, s, 0, text, 5, True, 10) for s, text in
                 enumerate(("New answer.", "Newer answer."))]
        seen["counts"] = G.write_batch(project, job, plan, texts, [(0, 1)])
        raise KeyboardInterrupt  # the import fails after the job wrote

    with pytest.raises(KeyboardInterrupt):
        import_file(project, write_jsonl(tmp_path / "more.jsonl", more), progress=meanwhile)
    assert seen["hidden"] is not None, "the check ran while the import's rows were written and hidden"
    assert seen["flagged"] == 1 and seen["prompts"] == [1, 2]
    assert seen["counts"] == {"responses": 0, "pairs": 0, "identical": 0}  # both already there (hidden)
    assert project.pair_count() == 3 and seen["hidden"] in project.pair_ids()  # the job's pair, the import's gone
    generated = project._conn.execute("SELECT response_id FROM generations WHERE job_id = ?", (job,)).fetchall()
    assert [project.response(r).text for (r,) in generated] == ["New answer.", "Newer answer."]
    assert project._scalar("SELECT pair_id FROM generated_pairs WHERE job_id = ?", (job,)) == seen["hidden"]
    assert project._conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert project.flagged_pair_count() == 1


# ---------------------------------------------------------------------------------------------- imported labels


def test_imported_labels_do_not_count_as_people_labeling(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "labeled.jsonl", rows(10)))
    assert project.labeled_pair_count() == 0, "no person has labeled anything: not '100% labeled'"
    assert project.counts()["labeled_pairs"] == 0 and project.counts()["labels"] == 10
    assert project.queue_count("alice", "needs_more") == 0
    assert project.queue_count("alice", "mine") == 10
    assert len(project.resolved_preferences()) == 10, "the dataset's verdicts still train"
    project.record_label(1, "alice", "a", "a")
    assert project.labeled_pair_count() == 1
    assert project.queue_count("bob", "needs_more") == 1, "one person's label of two needs another"
    from studio.store.statistics import project_stats

    c = project_stats(project)["counts"]
    assert (c["labeled_pairs"], c["labeled_by_people_pairs"], c["needs_more_pairs"], c["unlabeled_pairs"]) == (
        10, 1, 1, 0)
    assert_label_counts(project)


def test_a_run_size_estimate_reads_the_imported_verdicts_a_run_trains_on(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "labeled.jsonl", rows(3)))
    import_file(project, write_jsonl(tmp_path / "unlabeled.jsonl", [
        {"prompt": "A much longer unlabeled question than the others?", "response_a": "x" * 500, "response_b": "y"}]))
    assert project.labeled_pair_count() == 0 and len(project.resolved_preferences()) == 3
    prompt_chars, response_chars = project.mean_text_chars()
    labeled = [project.pair(i) for i in project.pair_ids()[:3]]
    assert prompt_chars == sum(len(p.prompt.text) for p in labeled) / 3
    assert response_chars == sum(len(p.a.text) + len(p.b.text) for p in labeled) / 6


def test_disagreement_is_between_people_not_with_the_imported_verdict(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "labeled.jsonl", rows(300)))  # every pair: imported "a"
    for pair in (5, 250):
        project.record_label(pair, "alice", "b", "a")
        project.record_label(pair, "bob", "b", "a")  # people agree with each other, not with the dataset
    for pair in (40, 290):
        project.record_label(pair, "alice", "a", "a")
        project.record_label(pair, "bob", "b", "a")
    assert project.queue_count("carol", "disagreements") == 2
    assert [project.next_pair("carol", "disagreements", after=a) for a in (0, 40, 290)] == [40, 290, 40]
    from studio.store import PairFilter

    assert [r.id for r in project.pair_page(PairFilter(agreement="disagree"))] == [40, 290]
    assert [r.id for r in project.pair_page(PairFilter(agreement="agree"))] == [5, 250]
    # the Data view's agreement column and its sort judge the same way: people only
    page = {r.id: r for r in project.pair_rows([5, 40, 7])}
    assert page[5].disagreement == 0 and page[5].votes == {"a": 1, "b": 2}, "two people agree; the dataset differs"
    assert page[40].disagreement == 0.5 and page[7].disagreement is None, "an imported verdict alone is no agreement"
    assert page[7].votes == {"a": 1} and page[40].decided_by_people == 2
    assert project.pair_order(PairFilter(), "disagreement", descending=True)[:2] == [40, 290]
    assert set(project.pair_order(PairFilter(), "disagreement")[:2]) == {5, 250}, "no label by people comes last"


def old_schema_project(folder) -> None:
    """A project as the previous release made it (migrations m001-m004), with imported and human labels
    counted by its triggers: every current non-skip label."""
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    from studio.store import schema

    folder.mkdir()
    (folder / "runs").mkdir()
    db = Database(folder / "studio.db")
    migrations = Migrations(schema.MIGRATION_SET)
    names = ("m001_initial", "m002_labels_by_annotator_time", "m003_metrics_by_name", "m004_run_active_time")
    for name, fn in schema._MIGRATIONS:
        if name in names:
            migrations(name=name)(fn)
    migrations.apply(db)
    c = db.conn
    c.execute("INSERT INTO settings VALUES ('salt', 'abc'), ('name', 'old')")
    c.execute("INSERT INTO annotators (id, name, created_at) VALUES (1, 'import:old.jsonl', 't'), (2, 'alice', 't')")
    for i in range(1, 4):
        c.execute("INSERT INTO prompts (id, text, hash, created_at) VALUES (?, ?, ?, 't')", (i, f"Q{i}", f"h{i}"))
        c.execute("INSERT INTO responses (id, prompt_id, text, hash, created_at) VALUES (?, ?, 'A', 'a', 't'), "
                  "(?, ?, 'B', 'b', 't')", (2 * i - 1, i, 2 * i, i))
        c.execute("INSERT INTO pairs (id, prompt_id, response_a_id, response_b_id, created_at) VALUES (?, ?, ?, ?, "
                  "'t')", (i, i, 2 * i - 1, 2 * i))
        c.execute("INSERT INTO labels (pair_id, annotator_id, choice, shown_left, created_at) "
                  "VALUES (?, 1, 'a', 'a', 't')", (i,))
    c.execute("INSERT INTO labels (pair_id, annotator_id, choice, shown_left, created_at) VALUES (1, 2, 'b', 'a', 't')")
    c.commit()
    assert [r[0] for r in c.execute("SELECT n_labels FROM pairs ORDER BY id")] == [2, 1, 1]
    db.close()


def test_an_old_project_is_migrated_to_people_counts_and_staged_imports(tmp_path):
    folder = tmp_path / "old"
    old_schema_project(folder)
    with Project.open(folder) as p:
        assert [r[0] for r in p._conn.execute("SELECT n_labels FROM pairs ORDER BY id")] == [1, 0, 0]
        assert p.labeled_pair_count() == 1 and p.pair_count() == 3
        assert p.queue_count("bob", "needs_more") == 1
        assert len(p.resolved_preferences()) == 2  # pair 1: import a vs alice b, no majority
        assert_label_counts(p)
        p.record_label(2, "bob", "a", "a")  # the new triggers count a person, not an import
        p.undo_label(p.last_label_id("bob"))
        assert_label_counts(p)
        report = import_file(p, write_jsonl(tmp_path / "new.jsonl", rows(5)))
        assert report.pairs_added == 5 and p.pair_count() == 8
    # and the file still reads with plain SQLite (nothing but columns and tables were added)
    conn = sqlite3.connect(folder / "studio.db")
    assert conn.execute("SELECT count(*) FROM pairs WHERE import_id IS NULL").fetchone()[0] == 3
    conn.close()


def test_the_import_wait_bench_measures_another_writer(tmp_path, capsys):
    from studio.cli import main

    assert main(["bench", "import-wait", "--pairs", "2000", "--out", str(tmp_path / "b"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "longest wait of a label save" in out
    figures = json.loads(out[out.index("{"):])
    assert figures["pairs_added"] == 2000 and figures["labels_written"] > 0 and figures["label_errors"] == 0
    assert figures["longest_wait_s"] >= figures["median_wait_s"] > 0
