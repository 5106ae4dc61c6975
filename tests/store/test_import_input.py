"""Hostile and unusual input files: fields that fit no format, deep nesting, compressed and binary files,
empty files, folders, and the exit codes `studio import` gives for each."""

from __future__ import annotations

import csv
import gzip
import json

import pytest

from studio.cli import main
from studio.store import Project
from studio.store.formats import FileRejected, ImportErrors, parse_file
from studio.store.import_writing import import_file
from tests.store.test_formats import preferences, write_jsonl

TRL = [{"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5."},
       {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}]


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# ---------------------------------------------------------------------------------------------- fields


def test_a_csv_without_the_rejected_column_is_refused_not_read_as_prompts(tmp_path, capsys):
    path = write_csv(tmp_path / "prefs.csv", ["prompt", "chosen"], [["Q1", "A1"], ["Q2", "A2"]])
    with pytest.raises(FileRejected) as e:
        parse_file(path)
    msg = str(e.value)
    assert "cannot tell the format from the columns chosen, prompt (missing: rejected)" in msg
    assert "trl, trl-chat and ultrafeedback need prompt, chosen, rejected" in msg
    assert "pairs needs prompt, response_a, response_b" in msg
    assert main(["import", str(tmp_path / "p"), str(path)]) == 3
    assert "missing: rejected" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_a_csv_without_prompt_gets_the_columns_message_not_a_transcript_error(tmp_path):
    path = write_csv(tmp_path / "noprompt.csv", ["chosen", "rejected"], [["Good answer", "Bad answer"]])
    with pytest.raises(FileRejected, match="from the columns chosen, rejected") as e:
        parse_file(path)
    assert "Human/Assistant transcripts" in str(e.value)
    pairs = write_csv(tmp_path / "pairs.csv", ["response_a", "response_b"], [["x", "y"]])
    with pytest.raises(FileRejected, match=r"response_a, response_b \(missing: prompt\)"):
        parse_file(pairs)


def test_exact_fields_with_extra_columns_still_import(project, tmp_path):
    hh = write_csv(tmp_path / "hh.csv", ["chosen", "rejected"],
                   [["\n\nHuman: Hi?\n\nAssistant: Hello!", "\n\nHuman: Hi?\n\nAssistant: Go away."]])
    assert import_file(project, hh).format == "hh"
    extra = write_jsonl(tmp_path / "extra.jsonl", [{**r, "id": i, "score": 0.5} for i, r in enumerate(TRL)])
    assert import_file(project, extra).pairs_added == 2
    prompts = write_csv(tmp_path / "prompts.csv", ["prompt", "topic"], [["Write a haiku", "poetry"]])
    assert import_file(project, prompts).format == "prompts"


# ---------------------------------------------------------------------------------------------- nesting


def test_deeply_nested_json_is_a_named_row_error_not_a_recursion_error(project, tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(TRL[0]) + "\n" + '{"prompt": "Q", "chosen": ' + deep(5000) + ', "rejected": "x"}\n'
                    + json.dumps(TRL[1]) + "\n")
    with pytest.raises(ImportErrors) as e:
        import_file(project, path)
    (err,) = e.value.errors
    assert err.line == 2 and "nested too deeply" in err.message
    report = import_file(project, path, skip_invalid=True)
    assert report.pairs_added == 2 and [x.line for x in report.invalid] == [2]


def test_deep_nesting_in_a_csv_cell_names_the_line_and_the_field(tmp_path):
    path = write_csv(tmp_path / "deep.csv", ["prompt", "chosen", "rejected"],
                     [["Q1", "A", "B"], ["Q2", deep(3000), "B"]])
    (err,) = parse_file(path).errors
    assert (err.line, err.field) == (3, "chosen") and "nested too deeply" in err.message


def test_a_deep_element_of_a_json_array_is_skipped_and_the_rest_is_read(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[\n" + json.dumps(TRL[0]) + ",\n" + '{"prompt": "Q", "chosen": ' + deep(4000)
                    + ', "rejected": "s\\"]"}' + ",\n" + json.dumps(TRL[1]) + "\n]\n")
    parsed = parse_file(path)
    assert [(e.line, "nested too deeply" in e.message) for e in parsed.errors] == [(3, True)]
    assert [r.line for r in parsed.rows] == [2, 4]


# ---------------------------------------------------------------------------------------------- compressed, binary


@pytest.mark.parametrize("name", ["prefs.jsonl.gz", "prefs.json.gz", "prefs.csv.gz"])
def test_gzip_compressed_files_are_read(tmp_path, name):
    plain = tmp_path / "plain.jsonl"
    write_jsonl(plain, TRL)
    if name.startswith("prefs.json."):
        text = json.dumps(TRL)
    elif name.startswith("prefs.csv"):
        text = "prompt,chosen,rejected\n" + "".join(f'"{r["prompt"]}",{r["chosen"]},{r["rejected"]}\n' for r in TRL)
    else:
        text = plain.read_text()
    packed = tmp_path / name
    packed.write_bytes(gzip.compress(text.encode()))
    a, b = Project.create(tmp_path / "a"), Project.create(tmp_path / "b")
    import_file(a, plain)
    report = import_file(b, packed)
    assert report.pairs_added == 2 and preferences(a) == preferences(b)
    a.close()
    b.close()


@pytest.mark.parametrize(("head", "says"), [(b"PAR1\x15\x04\x15\x10", "a Parquet file"),
                                            (b"PK\x03\x04\x14\x00", "a ZIP archive"),
                                            (b"\x00\x01\x02binary\x00\xff", "NUL bytes")])
def test_binary_files_are_not_text_files(tmp_path, capsys, head, says):
    path = tmp_path / "data.csv"
    path.write_bytes(head + bytes(range(256)) * 4)
    assert main(["import", str(tmp_path / "p"), str(path)]) == 3
    err = capsys.readouterr().err
    assert "not a text file" in err and says in err and "newline" not in err
    assert not (tmp_path / "p").exists()


def test_skip_invalid_with_no_valid_row_exits_non_zero_and_leaves_no_project(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q", "chosen": "A", "rejected": "A"},
                                               {"prompt": "R", "chosen": 3, "rejected": "B"}])
    assert main(["import", str(tmp_path / "new"), str(bad), "--skip-invalid"]) == 1
    err = capsys.readouterr().err
    assert "none of its 2 rows is valid; nothing was imported" in err
    assert "bad.jsonl:1: rejected: identical to chosen" in err
    assert not (tmp_path / "new").exists()


def test_a_failed_write_takes_back_the_project_it_created(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "here"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    import studio.store.import_writing as import_writing

    def broken(*args, **kwargs):
        raise import_writing.ProjectError("the disk is full")

    monkeypatch.setattr(import_writing, "write_parsed", broken)
    assert main(["import", str(folder), str(write_jsonl(tmp_path / "ok.jsonl", TRL))]) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # the user's folder stays, with only theirs


# ---------------------------------------------------------------------------------------------- messages


def test_a_json_array_in_a_jsonl_file_says_so(tmp_path, capsys):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps(TRL, indent=2))
    with pytest.raises(FileRejected, match=r"is one JSON array, not JSON lines .* name it .json"):
        parse_file(path)
    assert main(["import", str(tmp_path / "p"), str(path)]) == 3


def test_a_folder_given_as_the_file_says_it_is_a_folder(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert main(["import", str(tmp_path / "p"), str(tmp_path / "data")]) == 3
    assert "data: is a folder, not a file" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf\n"])
def test_an_empty_file_says_it_is_empty(tmp_path, capsys, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    assert main(["import", str(tmp_path / "p"), str(path)]) == 3
    assert "empty.jsonl: the file is empty" in capsys.readouterr().err
    gz = tmp_path / "empty.jsonl.gz"
    gz.write_bytes(gzip.compress(content))
    with pytest.raises(FileRejected, match="the file is empty"):
        parse_file(gz)


def test_a_csv_with_only_a_header_has_no_rows(tmp_path):
    with pytest.raises(FileRejected, match=r"no rows to import \(only a header\)"):
        parse_file(write_csv(tmp_path / "h.csv", ["prompt", "chosen", "rejected"], []))


def test_exit_codes_tell_row_errors_file_errors_and_project_errors_apart(tmp_path, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", TRL)
    rows = write_jsonl(tmp_path / "rows.jsonl", [TRL[0], {"prompt": "Q", "chosen": "A"}])
    assert main(["import", str(tmp_path / "p"), str(rows)]) == 1  # a row is invalid
    assert main(["import", str(tmp_path / "p"), str(tmp_path / "missing.jsonl")]) == 3  # the file as a whole
    assert main(["import", str(tmp_path / "p"), str(good)]) == 0
    with Project.open(tmp_path / "p") as p:
        p._conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                        "VALUES ('studio', 'm999_future', '2030-01-01')")
    capsys.readouterr()
    assert main(["import", str(tmp_path / "p"), str(good)]) == 2  # the project cannot take it
    assert "newer version" in capsys.readouterr().err
