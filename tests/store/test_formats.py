"""Import and export: every format, every kind of bad input, duplicates, and the round trip."""

from __future__ import annotations

import csv
import json

import pytest

from studio.store import Project
from studio.store.export import export_file
from studio.store.formats import FileRejected, ImportErrors, parse_file
from studio.store.import_writing import import_file


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def snapshot(project: Project) -> tuple:
    """Everything an import could touch, to assert that a failed import changed nothing."""
    return tuple(project._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("prompts", "responses", "pairs", "labels", "annotators"))


def preferences(project: Project) -> set[tuple]:
    """Resolved preferences as texts: (prompt text, prompt messages, chosen, rejected)."""
    out = set()
    for p in project.resolved_preferences():
        prompt = project.prompt(p.prompt_id)
        out.add((prompt.text, json.dumps(prompt.messages), project.response(p.chosen_id).text,
                 project.response(p.rejected_id).text))
    return out


TRL_ROWS = [
    {"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5."},
    {"prompt": "What is 2 + 2?", "chosen": "Four.", "rejected": "5."},  # same prompt, second pair
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
]


# ---------------------------------------------------------------------------------------------- formats


def test_trl_standard_import_makes_labeled_pairs_with_chosen_as_a(project, tmp_path):
    report = import_file(project, write_jsonl(tmp_path / "prefs.jsonl", TRL_ROWS))
    assert (report.format, report.rows, report.pairs_added, report.prompts_added) == ("trl", 3, 3, 2)
    assert report.labels_added == 3 and report.annotator == "import:prefs.jsonl"
    assert report.responses_added == 5  # "5." is one response to the first prompt, shared by two pairs
    pair = project.pair(1)
    assert (pair.prompt.text, pair.a.text, pair.b.text, pair.source) == ("What is 2 + 2?", "4.", "5.", "prefs.jsonl")
    (label,) = project.current_labels(1)
    assert (label.annotator, label.choice, label.shown_left) == ("import:prefs.jsonl", "a", "a")
    assert project.prompt(pair.prompt.id).split == "train"
    assert preferences(project) == {("What is 2 + 2?", "null", "4.", "5."), ("What is 2 + 2?", "null", "Four.", "5."),
                                    ("Name a colour.", "null", "Blue.", "Seven.")}


def test_trl_conversational_import_keeps_the_chat(project, tmp_path):
    rows = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
             "chosen": [{"role": "assistant", "content": "Hello!"}],
             "rejected": [{"role": "assistant", "content": "Go away."}]}]
    report = import_file(project, write_jsonl(tmp_path / "chat.jsonl", rows))
    assert report.format == "trl-chat"
    pair = project.pair(1)
    assert pair.prompt.messages == rows[0]["prompt"]
    assert pair.prompt.text == "system: Be brief.\n\nuser: Hi?"
    assert (pair.a.text, pair.b.text) == ("Hello!", "Go away.")


def test_hh_transcripts_are_split_into_prompt_conversation_and_final_replies(project, tmp_path):
    rows = [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello, how can I help?\n\nHuman: A joke?\n\nAssistant: Why did "
                       "the chicken cross the road?",
             "rejected": "\n\nHuman: Hi\n\nAssistant: Hello, how can I help?\n\nHuman: A joke?\n\nAssistant: No."}]
    report = import_file(project, write_jsonl(tmp_path / "hh.jsonl", rows))
    assert report.format == "hh" and report.pairs_added == 1
    pair = project.pair(1)
    assert pair.prompt.messages == [{"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "Hello, how can I help?"},
                                    {"role": "user", "content": "A joke?"}]
    assert (pair.a.text, pair.b.text) == ("Why did the chicken cross the road?", "No.")


def test_implicit_prompt_message_lists_are_accepted_as_hh(project, tmp_path):
    conv = [{"role": "user", "content": "Hi"}]
    rows = [{"chosen": [*conv, {"role": "assistant", "content": "Hello!"}],
             "rejected": [*conv, {"role": "assistant", "content": "What."}]}]
    report = import_file(project, write_jsonl(tmp_path / "implicit.jsonl", rows))
    assert report.format == "hh"
    assert project.pair(1).prompt.messages == conv


def test_ultrafeedback_scores_go_to_pair_meta(project, tmp_path):
    rows = [{"prompt": "Write a haiku.", "score_chosen": 8.5, "score_rejected": 3,
             "chosen": [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "Old pond..."}],
             "rejected": [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "No."}]}]
    report = import_file(project, write_jsonl(tmp_path / "uf.jsonl", rows))
    assert report.format == "ultrafeedback"
    pair = project.pair(1)
    assert pair.meta == {"score_chosen": 8.5, "score_rejected": 3.0}
    assert pair.prompt.messages == [{"role": "user", "content": "Write a haiku."}]
    assert (pair.a.text, pair.b.text) == ("Old pond...", "No.")


def test_unlabeled_pairs_get_no_label_and_keep_their_models(project, tmp_path):
    rows = [{"prompt": "Q?", "response_a": "A1", "response_b": "B1", "model_a": "m-small", "model_b": "m-big"}]
    report = import_file(project, write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert (report.format, report.pairs_added, report.labels_added, report.annotator) == ("pairs", 1, 0, None)
    pair = project.pair(1)
    assert (pair.a.model, pair.b.model) == ("m-small", "m-big")
    assert project.current_labels(1) == []
    assert project.next_pair("ann") == 1


def test_prompts_only_into_the_eval_split(project, tmp_path):
    rows = [{"prompt": "First?"}, {"prompt": "Second?"}, {"prompt": "First?"}]
    report = import_file(project, write_jsonl(tmp_path / "prompts.jsonl", rows), split="eval")
    assert (report.format, report.prompts_added, report.pairs_added, report.duplicates) == ("prompts", 2, 0, 1)
    assert {r["split"] for r in project._query("SELECT split FROM prompts")} == {"eval"}


def test_json_array_and_csv_with_message_list_cells(project, tmp_path):
    arr = tmp_path / "prefs.json"
    arr.write_text(json.dumps(TRL_ROWS, indent=2), encoding="utf-8")
    assert import_file(project, arr).pairs_added == 3

    path = tmp_path / "chat.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "chosen", "rejected"])
        w.writerow([json.dumps([{"role": "user", "content": "Hi, CSV?"}]),
                    json.dumps([{"role": "assistant", "content": "Yes,\nreally."}]),
                    json.dumps([{"role": "assistant", "content": "No"}])])
        w.writerow(["[not json] plain prompt", "a, with comma", "b"])
    # a file may mix chat and plain prompts: each labeled row is read by its own fields
    report = import_file(project, path)
    assert report.pairs_added == 2
    assert project.pair(4).prompt.messages == [{"role": "user", "content": "Hi, CSV?"}]
    assert project.pair(4).a.text == "Yes,\nreally."
    assert (project.pair(5).prompt.text, project.pair(5).a.text) == ("[not json] plain prompt", "a, with comma")


def test_an_explicit_format_is_strict(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [TRL_ROWS[0], {"prompt": [{"role": "user", "content": "Q"}],
                                                               "chosen": "A", "rejected": "B"}])
    assert [str(e) for e in parse_file(path, "trl").errors] == [
        "mixed.jsonl:2: prompt: wrong type: expected a string, got list (a message list is format trl-chat)"]
    assert [str(e) for e in parse_file(path).errors] == [
        "mixed.jsonl:2: chosen: wrong type: expected a list of messages, got string"]


def test_explicit_annotator_and_format(project, tmp_path):
    report = import_file(project, write_jsonl(tmp_path / "p.jsonl", TRL_ROWS[:1]), fmt="trl", annotator="gold")
    assert report.annotator == "gold"
    assert project.current_labels(1)[0].annotator == "gold"


# ---------------------------------------------------------------------------------------------- bad input

BAD = [
    ("invalid_json", b'{"prompt": "Q", "chosen": "A", "rejected": "B"}\n{"prompt": "Q2", "chosen": \n',
     "bad.jsonl:2: invalid JSON"),
    ("truncated_line", b'{"prompt": "Q", "chosen": "A", "rejected": "B"}\n{"prompt": "Q2", "chosen": "A", "rej\r\n',
     "bad.jsonl:2: invalid JSON: Unterminated string starting at (column 33)"),
    ("missing_field", [TRL_ROWS[0], {"prompt": "Q2", "chosen": "A"}], "bad.jsonl:2: rejected: missing field"),
    ("wrong_type", [TRL_ROWS[0], {"prompt": "Q2", "chosen": 5, "rejected": "B"}],
     "bad.jsonl:2: chosen: wrong type: expected a string, got number"),
    ("empty_text", [TRL_ROWS[0], {"prompt": "Q2", "chosen": "  ", "rejected": "B"}], "bad.jsonl:2: chosen: empty text"),
    ("identical", [TRL_ROWS[0], {"prompt": "Q2", "chosen": "Same", "rejected": "Same"}],
     "bad.jsonl:2: rejected: identical to chosen"),
    ("unknown_role", [{"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "assistant", "content": "A"}],
                       "rejected": [{"role": "assistant", "content": "B"}]},
                      {"prompt": [{"role": "bot", "content": "Q2"}], "chosen": [{"role": "assistant", "content": "A"}],
                       "rejected": [{"role": "assistant", "content": "B"}]}],
     "bad.jsonl:2: prompt[0].role: unknown message role 'bot'"),
    ("undecodable", b'{"prompt": "Q", "chosen": "A", "rejected": "B"}\n{"prompt": "Q\xff\xfe", "chosen": "A", '
                    b'"rejected": "B"}\n', "bad.jsonl:2: undecodable bytes (not UTF-8)"),
    ("too_big", [TRL_ROWS[0], {"prompt": "Q2", "chosen": "x" * 2_000_001, "rejected": "B"}],
     "bad.jsonl:2: chosen: text over the size limit"),
]


@pytest.mark.parametrize(("kind", "content", "message"), BAD, ids=[b[0] for b in BAD])
def test_each_kind_of_bad_row_is_named_and_changes_nothing(project, tmp_path, kind, content, message):
    import_file(project, write_jsonl(tmp_path / "before.jsonl", [{"prompt": "Old", "chosen": "x", "rejected": "y"}]))
    before = snapshot(project)
    path = tmp_path / "bad.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_jsonl(path, content)
    with pytest.raises(ImportErrors) as exc:
        import_file(project, path, max_field_bytes=1_000_000)
    assert len(exc.value.errors) == 1
    assert str(exc.value.errors[0]).startswith(message), str(exc.value.errors[0])
    assert message in str(exc.value)
    assert snapshot(project) == before
    assert_label_counts(project)


def test_hh_rows_that_do_not_share_the_conversation_are_rejected(project, tmp_path):
    rows = [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "\n\nHuman: Bye\n\nAssistant: Ciao"},
            {"chosen": "just text", "rejected": "\n\nHuman: Hi\n\nAssistant: Hey"}]
    errors = parse_file(write_jsonl(tmp_path / "hh.jsonl", rows)).errors
    assert [(e.line, e.field) for e in errors] == [(1, "rejected"), (2, "chosen")]
    assert "differ before the final reply" in errors[0].message
    assert "not a Human/Assistant transcript" in errors[1].message


def test_json_array_errors_name_the_line_of_the_element(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text('[\n  {"prompt": "Q", "chosen": "A", "rejected": "B"},\n  {"prompt": "Q2",\n   "chosen": ""'
                    ',\n   "rejected": "B"}\n]\n', encoding="utf-8")
    (err,) = parse_file(path).errors
    assert (err.line, err.field, err.message) == (3, "chosen", "empty text")


def test_skip_invalid_imports_the_valid_rows_and_lists_the_rest(project, tmp_path):
    rows = [*TRL_ROWS, {"prompt": "Q2", "chosen": "A"}, {"prompt": "Q3", "chosen": "X", "rejected": "X"}]
    report = import_file(project, write_jsonl(tmp_path / "mixed.jsonl", rows), skip_invalid=True)
    assert report.pairs_added == 3 and report.rows == 5
    assert [(e.line, e.field) for e in report.invalid] == [(4, "rejected"), (5, "rejected")]


def test_unknown_format_is_reported_with_its_fields(project, tmp_path):
    with pytest.raises(FileRejected, match=r"x.jsonl:1: cannot tell the format from the fields foo, question"):
        import_file(project, write_jsonl(tmp_path / "x.jsonl", [{"question": "Q", "foo": 1}]))


# ---------------------------------------------------------------------------------------------- duplicates


def test_duplicates_in_the_file_and_in_the_project_are_skipped_and_counted(project, tmp_path):
    first = import_file(project, write_jsonl(tmp_path / "a.jsonl", [*TRL_ROWS, TRL_ROWS[0]]))
    assert (first.pairs_added, first.duplicates) == (3, 1)
    # the same pair in the other order, from unlabeled pairs: a duplicate, no label added
    swapped = {"prompt": "What is 2 + 2?", "response_a": "5.", "response_b": "4."}
    second = import_file(project, write_jsonl(tmp_path / "b.jsonl", [swapped]))
    assert (second.pairs_added, second.duplicates, second.prompts_added) == (0, 1, 0)
    # re-importing the labeled file adds nothing at all
    third = import_file(project, tmp_path / "a.jsonl")
    assert (third.pairs_added, third.labels_added, third.duplicates) == (0, 0, 4)
    assert snapshot(project)[2:4] == (3, 3)
    assert_label_counts(project)


def assert_label_counts(project: Project) -> None:
    """n_labels (kept by triggers, also during bulk imports) counts the current non-skip labels of people."""
    assert project._conn.execute(
        "SELECT count(*) FROM pairs p WHERE n_labels != (SELECT count(*) FROM labels l JOIN annotators a "
        "ON a.id = l.annotator_id WHERE l.pair_id = p.id AND l.state = 'current' AND l.choice != 'skip' "
        "AND a.name NOT LIKE 'import:%')").fetchone()[0] == 0
    assert project._scalar("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                          "AND name = 'labels_count_insert'") == 1


def test_a_labeled_row_for_an_existing_unlabeled_pair_adds_its_label(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Q", "response_a": "B", "response_b": "A"}]))
    report = import_file(project, write_jsonl(tmp_path / "labels.jsonl",
                                              [{"prompt": "Q", "chosen": "A", "rejected": "B"}]))
    assert (report.pairs_added, report.duplicates, report.labels_added) == (0, 1, 1)
    (label,) = project.current_labels(1)
    assert label.choice == "b"  # chosen "A" is the existing pair's response B
    assert_label_counts(project)
    (pref,) = project.resolved_preferences()
    assert project.response(pref.chosen_id).text == "A"


def test_progress_reaches_its_total(project, tmp_path):
    calls = []
    import_file(project, write_jsonl(tmp_path / "p.jsonl", TRL_ROWS), progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(d <= t for d, t in calls)


# ---------------------------------------------------------------------------------------------- export


def test_round_trip_trl(tmp_path):
    src = Project.create(tmp_path / "src")
    import_file(src, write_jsonl(tmp_path / "in.jsonl", TRL_ROWS), annotator="import")
    src.record_label(3, "alice", "b", "a")  # import says a, alice says b: no majority, left out
    report = export_file(src, tmp_path / "out.jsonl", "trl")
    assert report.rows == 2 and report.left_out["no_majority"] == 1
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert set(lines[0]) == {"prompt", "chosen", "rejected"}
    dst = Project.create(tmp_path / "dst")
    import_file(dst, tmp_path / "out.jsonl")
    assert preferences(dst) == preferences(src)
    assert len(preferences(dst)) == 2


def test_round_trip_trl_chat_and_csv(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "Hi?"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
             "rejected": [{"role": "assistant", "content": "Go, away."}]},
            {"prompt": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "Sum 1 2"}],
             "chosen": [{"role": "assistant", "content": "```\n3\n```"}],
             "rejected": [{"role": "assistant", "content": "12"}]}]
    src = Project.create(tmp_path / "src")
    import_file(src, write_jsonl(tmp_path / "chat.jsonl", rows))
    with pytest.raises(Exception, match="use --format trl-chat"):
        export_file(src, tmp_path / "plain.jsonl", "trl")
    assert not (tmp_path / "plain.jsonl").exists()
    for fmt, name in (("trl-chat", "out.jsonl"), ("trl-chat", "out.json"), ("csv", "out.csv")):
        export_file(src, tmp_path / name, fmt)
        dst = Project.create(tmp_path / f"dst-{name}")
        assert import_file(dst, tmp_path / name).pairs_added == 2
        assert preferences(dst) == preferences(src), name


def test_trl_chat_export_wraps_plain_prompts_as_a_user_turn(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "in.jsonl", TRL_ROWS[:1]))
    export_file(project, tmp_path / "out.jsonl", "trl-chat")
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row == {"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
                   "chosen": [{"role": "assistant", "content": "4."}],
                   "rejected": [{"role": "assistant", "content": "5."}]}


def test_labels_export_has_every_raw_label_with_history(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "response_a": "A", "response_b": "B"},
                                                            {"prompt": "Q", "response_a": "A", "response_b": "C"}]))
    project.record_label(1, "alice", "a", "b", strength="clear", rationale="shorter", seconds=3.5)
    project.record_label(1, "alice", "tie", "b", seconds=2.0)  # replaces the first
    last = project.record_label(2, "bob", "b", "a")
    project.undo_label(last)
    export_file(project, tmp_path / "labels.jsonl", "labels")
    rows = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [(r["annotator"], r["choice"], r["state"]) for r in rows] == [
        ("alice", "a", "replaced"), ("alice", "tie", "current"), ("bob", "b", "undone")]
    first = rows[0]
    assert (first["shown_left"], first["strength"], first["rationale"], first["seconds"]) == ("b", "clear", "shorter",
                                                                                              3.5)
    assert first["prompt"] == "Q" and first["response_a"] == "A" and first["created_at"]
    assert rows[1]["replaces_label_id"] == first["label_id"]


def test_export_by_split(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "t.jsonl", TRL_ROWS[:1]))
    import_file(project, write_jsonl(tmp_path / "e.jsonl", TRL_ROWS[2:]), split="eval")
    assert export_file(project, tmp_path / "eval.jsonl", "trl", split="eval").rows == 1
    assert json.loads((tmp_path / "eval.jsonl").read_text())["prompt"] == "Name a colour."


def test_a_failure_during_the_write_rolls_everything_back(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "first.jsonl", TRL_ROWS[:1]))
    before = snapshot(project)

    def cancel(done, total):
        if done > total // 2:  # the write phase has started
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        import_file(project, write_jsonl(tmp_path / "more.jsonl", TRL_ROWS[1:]), progress=cancel)
    assert snapshot(project) == before
    assert_label_counts(project)
    assert import_file(project, tmp_path / "more.jsonl").labels_added == 2
    assert_label_counts(project)


def test_skip_invalid_with_no_valid_rows_is_an_error_and_adds_nothing(project, tmp_path):
    before = snapshot(project)
    with pytest.raises(ImportErrors, match=r"no valid rows \(all 1 are invalid\); nothing was imported"):
        import_file(project, write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q", "chosen": "A", "rejected": "A"}]),
                    skip_invalid=True)
    assert snapshot(project) == before  # not even the import annotator


def test_export_reports_progress_up_to_the_rows_written(project, tmp_path, monkeypatch):
    import studio.store.export as export

    monkeypatch.setattr(export, "PROGRESS_EVERY", 2)  # report every 2 rows, so a small file shows steps
    rows = [{"prompt": f"Question {i}?", "chosen": f"Yes {i}.", "rejected": f"No {i}."} for i in range(5)]
    import_file(project, write_jsonl(tmp_path / "in.jsonl", rows))
    seen: list[tuple[int, int]] = []
    assert export_file(project, tmp_path / "out.jsonl", "trl", progress=lambda d, t: seen.append((d, t))).rows == 5
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]
    seen.clear()
    export_file(project, tmp_path / "labels.jsonl", "labels", progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)


def test_a_labels_export_is_not_silently_read_as_unlabeled_pairs(project, tmp_path):
    import_file(project, write_jsonl(tmp_path / "in.jsonl", TRL_ROWS[:2]))
    export_file(project, tmp_path / "labels.jsonl", "labels")
    fresh = Project.create(tmp_path / "fresh")
    with pytest.raises(FileRejected, match="labels export") as e:
        import_file(fresh, tmp_path / "labels.jsonl")
    assert "--format trl" in str(e.value)
    assert fresh.pair_count() == 0
    # asked for explicitly, the pairs come over (to be labeled again)
    assert import_file(fresh, tmp_path / "labels.jsonl", fmt="pairs").pairs_added == 2
