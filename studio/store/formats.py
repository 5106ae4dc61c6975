"""Import and export of preference data in the Hugging Face ecosystem's formats (JSONL, JSON, CSV).

Import reads and checks the whole file first, then writes it in one transaction with bulk inserts,
so a failed import changes nothing and 100k pairs take seconds. Formats, detected from the fields:

- ``trl``           TRL standard preference: ``prompt``, ``chosen``, ``rejected`` strings
- ``trl-chat``      TRL conversational: ``prompt``, ``chosen``, ``rejected`` message lists
- ``hh``            implicit prompt (Anthropic HH-RLHF): ``chosen``/``rejected`` whole transcripts
                    (``\\n\\nHuman: ...\\n\\nAssistant: ...`` strings, or message lists) sharing a prefix
- ``ultrafeedback`` ``prompt`` string, ``chosen``/``rejected`` message lists ending in the reply,
                    optional ``score_chosen``/``score_rejected`` (kept in the pair's meta)
- ``pairs``         unlabeled pairs for annotators: ``prompt``, ``response_a``, ``response_b``
                    (optional ``model_a``, ``model_b``)
- ``prompts``       prompts only: ``prompt`` (answered later by generation)

A labeled row becomes a pair whose A is the chosen response and B the rejected one, with a label 'a'
by the importing annotator (``import:<file name>`` unless given), shown_left 'a'. Storing chosen as A
is deterministic on purpose: the labeling view randomises screen sides per annotator anyway.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from studio.core.types import ROLES
from studio.store.db import ProjectError, content_hash, messages_to_text, now_iso, prompt_hash
from studio.store.project import Project

IMPORT_FORMATS = ("trl", "trl-chat", "hh", "ultrafeedback", "pairs", "prompts")
EXPORT_FORMATS = ("trl", "trl-chat", "labels", "csv")
LABELED_FORMATS = frozenset({"trl", "trl-chat", "hh", "ultrafeedback"})
MAX_FIELD_BYTES = 1_000_000
"""Largest text field accepted (UTF-8 bytes): guards against a column of base64 images or a broken file."""

Progress = Callable[[int, int], None]

_CHUNK = 5000  # rows per bulk insert; also how often progress is reported
_SQL_VARS = 900  # ids per `IN (...)` lookup, below SQLite's smallest variable limit


@dataclasses.dataclass(frozen=True)
class RowError:
    """One problem in an input file: where (file, line or CSV row) and which field."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ImportErrors(ProjectError):
    """The file has invalid rows and nothing was imported; `.errors` lists every one."""

    def __init__(self, errors: Sequence[RowError], limit: int = 20):
        self.errors = list(errors)
        shown = "\n".join(str(e) for e in self.errors[:limit])
        more = f"\n... and {len(self.errors) - limit} more" if len(self.errors) > limit else ""
        super().__init__(f"{len(self.errors)} invalid row(s); nothing was imported:\n{shown}{more}")


@dataclasses.dataclass
class ImportReport:
    file: str
    format: str
    rows: int
    """Rows read from the file, valid or not."""
    prompts_added: int = 0
    responses_added: int = 0
    pairs_added: int = 0
    duplicates: int = 0
    """Pairs (or, for a prompts file, prompts) already in the project or repeated in the file."""
    labels_added: int = 0
    annotator: str | None = None
    invalid: list[RowError] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ExportReport:
    file: str
    format: str
    rows: int
    left_out: dict[str, int]
    """For resolved preferences: pairs not exported as tie, both_bad, no_majority or skipped."""


class Row(NamedTuple):
    """One valid input row, normalised: the prompt and (unless prompts-only) two responses."""

    line: int
    prompt_text: str
    messages: str | None  # the chat as JSON, None for a plain prompt
    prompt_hash: str
    a: str | None  # chosen (labeled formats) or response_a
    b: str | None
    a_hash: str | None  # content_hash of a and b, as the responses table keys them
    b_hash: str | None
    model_a: str | None
    model_b: str | None
    meta: str | None
    labeled: bool


@dataclasses.dataclass
class ParsedFile:
    file: str
    format: str
    total: int
    rows: list[Row]
    errors: list[RowError]


# ---------------------------------------------------------------------------------------------- reading


class _Bad(Exception):
    """A field-level problem in one row."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _container(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".jsonlines"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".tsv":
        return "tsv"
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"[":
        return "json"
    if first == b"{":
        return "jsonl"
    return "csv"


def _decode_lines(data: bytes) -> tuple[list[str], set[int]]:
    """The file's lines (kept ends) and the 1-based numbers of lines that are not valid UTF-8."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines: list[str] = []
    bad: set[int] = set()
    for n, raw in enumerate(data.splitlines(keepends=True), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.add(n)
            lines.append(raw.decode("utf-8", "replace"))
    return lines, bad


def _undecodable(line: int, bad: set[int], end: int | None = None) -> _Bad | None:
    hit = [n for n in range(line, (end or line) + 1) if n in bad]
    if hit:
        return _Bad(None, f"undecodable bytes (not UTF-8) on line {hit[0]}")
    return None


def _jsonl_records(f: BinaryIO) -> Iterator[tuple[int, Any]]:
    """JSON lines streamed from an open file: a million-row file is never held in memory whole."""
    for n, raw in enumerate(f, 1):
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield n, _Bad(None, f"undecodable bytes (not UTF-8) on line {n}")
            continue
        try:
            # without its line break: a line cut short in a string otherwise reads "Invalid control
            # character" (the newline) instead of "Unterminated string"
            yield n, json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as e:
            yield n, _Bad(None, f"invalid JSON: {e.msg} (column {e.colno})")


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, record or _Bad) for every record in the file, in order."""
    with open(path, "rb") as f:
        kind = _container(path, f.read(64))
        f.seek(0)
        if kind == "jsonl":
            yield from _jsonl_records(f)
            return
        data = f.read()
    lines, bad = _decode_lines(data)
    del data
    if kind == "json":
        yield from _json_array(lines, bad)
    else:
        yield from _csv_rows(lines, bad, "\t" if kind == "tsv" else ",")


def _count_lines(path: Path) -> int:
    """A quick upper bound on the rows of a file, so progress can be reported while reading it."""
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return max(n, 1)


def _json_array(lines: list[str], bad: set[int]) -> Iterator[tuple[int, Any]]:
    """Elements of a JSON array with the line each starts on, so errors can name it."""
    text = "".join(lines)
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    import bisect

    def line_of(pos: int) -> int:
        return bisect.bisect_right(starts, pos)

    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()  # type: ignore[union-attr]
    if text[pos:pos + 1] != "[":
        yield line_of(pos), _Bad(None, "invalid JSON: expected an array of objects")
        return
    pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text[pos:pos + 1] == "]":
        return
    while True:
        line = line_of(pos)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            # the rest of the array cannot be located reliably after a syntax error
            yield line_of(e.pos), _undecodable(line_of(e.pos), bad) or _Bad(None, f"invalid JSON: {e.msg}")
            return
        yield line, _undecodable(line, bad, line_of(max(end - 1, pos))) or value
        pos = ws.match(text, end).end()  # type: ignore[union-attr]
        sep = text[pos:pos + 1]
        if sep == "]":
            return
        if sep != ",":
            yield line_of(pos), _Bad(None, "invalid JSON: expected ',' or ']' after an array element")
            return
        pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]


def _json_cell(value: str) -> Any:
    """A CSV cell holding a JSON message list becomes the list; any other cell stays a string."""
    s = value.strip()
    if s.startswith("[") and s.endswith("]"):
        try:
            parsed = json.loads(s)
        except json.JSONDecodeError:
            return value
        if isinstance(parsed, list) and parsed and all(isinstance(m, dict) and "role" in m for m in parsed):
            return parsed
    return value


def _csv_rows(lines: list[str], bad: set[int], delimiter: str) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(io.StringIO("".join(lines)), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        yield 1, _Bad(None, f"invalid CSV: {e}")
        return
    header = [h.strip() for h in header]
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start, _Bad(None, f"invalid CSV: {e}")
            return
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        err = _undecodable(line, bad, reader.line_num)
        if err:
            yield line, err
            continue
        if len(cells) != len(header):
            yield line, _Bad(None, f"expected {len(header)} cells as in the header, got {len(cells)}")
            continue
        record: dict[str, Any] = {}
        for k, v in zip(header, cells, strict=True):
            if k in ("score_chosen", "score_rejected"):
                try:
                    record[k] = float(v) if v.strip() else None
                except ValueError:
                    record[k] = v
            else:
                record[k] = _json_cell(v)
        yield line, record


# ---------------------------------------------------------------------------------------------- checking


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(v), type(v).__name__)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_size(value: str, field: str, limit: int) -> None:
    """The text fits the size limit and is storable: JSON's `\\ud800` escapes can produce half of a
    UTF-16 surrogate pair, which is not Unicode text, and SQLite (UTF-8) would refuse it mid-import."""
    bad = _SURROGATE.search(value)
    if bad:
        raise _Bad(field, f"invalid text: a lone UTF-16 surrogate \\u{ord(bad.group()):04x} at character "
                          f"{bad.start() + 1} (a broken \\u escape; not Unicode text)")
    # len() bounds the UTF-8 size from below (and by 4x from above): encode only long texts
    if len(value) * 4 > limit and len(value.encode("utf-8")) > limit:
        raise _Bad(field, f"text over the size limit ({len(value.encode('utf-8')):,} bytes > {limit:,})")


def _text(record: dict, field: str, limit: int) -> str:
    if field not in record or record[field] is None:
        raise _Bad(field, "missing field")
    value = record[field]
    if not isinstance(value, str):
        raise _Bad(field, f"wrong type: expected a string, got {_type_name(value)}")
    if not value.strip():
        raise _Bad(field, "empty text")
    _check_size(value, field, limit)
    return value


def _messages(value: Any, field: str, limit: int) -> list[dict]:
    if not isinstance(value, list):
        raise _Bad(field, f"wrong type: expected a list of messages, got {_type_name(value)}")
    if not value:
        raise _Bad(field, "empty message list")
    out = []
    for i, m in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(m, dict):
            raise _Bad(where, f"wrong type: expected a message object, got {_type_name(m)}")
        for key in ("role", "content"):
            if key not in m or m[key] is None:
                raise _Bad(f"{where}.{key}", "missing field")
            if not isinstance(m[key], str):
                raise _Bad(f"{where}.{key}", f"wrong type: expected a string, got {_type_name(m[key])}")
        if m["role"] not in ROLES:
            raise _Bad(f"{where}.role", f"unknown message role {m['role']!r} (known: {', '.join(ROLES)})")
        _check_size(m["content"], f"{where}.content", limit)
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _message_field(record: dict, field: str, limit: int) -> list[dict]:
    if field not in record or record[field] is None:
        raise _Bad(field, "missing field")
    return _messages(record[field], field, limit)


def _split_reply(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], str, str]:
    """Conversation before the final replies (shared by both), and the two replies."""
    for name, msgs in (("chosen", chosen), ("rejected", rejected)):
        last = msgs[-1]
        if last["role"] != "assistant":
            raise _Bad(f"{name}[{len(msgs) - 1}].role",
                       f"the last message must be the assistant's reply, got {last['role']!r}")
        if not last["content"].strip():
            raise _Bad(f"{name}[{len(msgs) - 1}].content", "empty text")
    if chosen[:-1] != rejected[:-1]:
        raise _Bad("rejected", "chosen and rejected differ before the final reply (they must share the prompt "
                               "conversation)")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def _hh_transcript(value: Any, field: str, limit: int) -> list[dict]:
    if isinstance(value, list):
        return _messages(value, field, limit)
    if not isinstance(value, str):
        raise _Bad(field, f"wrong type: expected a transcript string or message list, got {_type_name(value)}")
    if not value.strip():
        raise _Bad(field, "empty text")
    _check_size(value, field, limit)
    # a transcript that went through a Windows tool has \r\n line ends: turn markers are then \r\n\r\n
    text = value.replace("\r\n", "\n")
    text = text if text.startswith("\n\n") else "\n\n" + text.lstrip()
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise _Bad(field, "not a Human/Assistant transcript (expected '\\n\\nHuman: ...\\n\\nAssistant: ...')")
    if parts[-2] != "Assistant":
        raise _Bad(field, "the transcript does not end with an '\\n\\nAssistant:' reply")
    return [{"role": "user" if role == "Human" else "assistant", "content": content.strip()}
            for role, content in zip(parts[1::2], parts[2::2], strict=True)]


def _prompt(record: dict, limit: int) -> tuple[str, list[dict] | None]:
    value = record.get("prompt")
    if isinstance(value, list):
        msgs = _messages(value, "prompt", limit)
        return messages_to_text(msgs), msgs
    return _text(record, "prompt", limit), None


def _score(record: dict, field: str) -> float | None:
    v = record.get(field)
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(field, f"wrong type: expected a number, got {_type_name(v)}")
    if math.isnan(v):
        # pandas writes a missing score as NaN (JSON NaN, or "nan" in CSV): it means "no score"
        return None
    if math.isinf(v):
        raise _Bad(field, f"not a finite number: {v}")
    return float(v)


def _normalise(fmt: str, record: dict, line: int, limit: int) -> Row:
    """Check one record against a format and turn it into a Row; raises _Bad naming the field."""
    messages: list[dict] | None = None
    meta: dict[str, Any] = {}
    model_a = model_b = None
    if fmt == "prompts":
        text, messages = _prompt(record, limit)
        a = b = None
    elif fmt == "pairs":
        text, messages = _prompt(record, limit)
        a = _text(record, "response_a", limit)
        b = _text(record, "response_b", limit)
        for key in ("model_a", "model_b"):
            v = record.get(key)
            if v is not None and not isinstance(v, str):
                raise _Bad(key, f"wrong type: expected a string, got {_type_name(v)}")
            if v:
                _check_size(v, key, limit)
        model_a, model_b = record.get("model_a") or None, record.get("model_b") or None
    elif fmt == "trl":
        if isinstance(record.get("prompt"), list):
            raise _Bad("prompt", "wrong type: expected a string, got list (a message list is format trl-chat)")
        text = _text(record, "prompt", limit)
        a = _text(record, "chosen", limit)
        b = _text(record, "rejected", limit)
    elif fmt == "trl-chat":
        prompt_msgs = _message_field(record, "prompt", limit)
        chosen = _message_field(record, "chosen", limit)
        rejected = _message_field(record, "rejected", limit)
        before, a, b = _split_reply(chosen, rejected)
        messages = prompt_msgs + before
        text = messages_to_text(messages)
    elif fmt == "ultrafeedback":
        prompt_text = _text(record, "prompt", limit)
        chosen = _message_field(record, "chosen", limit)
        rejected = _message_field(record, "rejected", limit)
        before, a, b = _split_reply(chosen, rejected)
        messages = before or [{"role": "user", "content": prompt_text}]
        text = messages_to_text(messages)
        for key in ("score_chosen", "score_rejected"):
            score = _score(record, key)
            if score is not None:
                meta[key] = score
    elif fmt == "hh":
        for key in ("chosen", "rejected"):
            if key not in record or record[key] is None:
                raise _Bad(key, "missing field")
        chosen = _hh_transcript(record["chosen"], "chosen", limit)
        rejected = _hh_transcript(record["rejected"], "rejected", limit)
        messages, a, b = _split_reply(chosen, rejected)
        if not messages:
            raise _Bad("chosen", "the transcript has no prompt before the final reply")
        text = messages_to_text(messages)
    else:
        raise ProjectError(f"format: unknown import format {fmt!r}; known: {', '.join(IMPORT_FORMATS)}")
    if a is not None and a == b:
        raise _Bad("response_b" if fmt == "pairs" else "rejected",
                   f"identical to {'response_a' if fmt == 'pairs' else 'chosen'}")
    if not text.strip():
        raise _Bad("prompt", "empty text")
    messages_json = json.dumps(messages, ensure_ascii=False) if messages is not None else None
    return Row(line, text, messages_json, prompt_hash(text, messages), a, b,
               content_hash(a) if a is not None else None, content_hash(b) if b is not None else None, model_a, model_b,
               json.dumps(meta) if meta else None, fmt in LABELED_FORMATS)


def detect_format(record: dict) -> str | None:
    """The import format a record's fields suggest, or None when they fit none."""
    keys = set(record)
    if {"response_a", "response_b"} <= keys:
        return "pairs"
    if {"chosen", "rejected"} <= keys:
        prompt = record.get("prompt")
        if prompt is None:
            return "hh"
        if isinstance(prompt, list):
            return "trl-chat"
        return "ultrafeedback" if isinstance(record.get("chosen"), list) else "trl"
    if "prompt" in keys:
        return "prompts"
    return None


def parse_file(path: str | Path, fmt: str = "auto", max_field_bytes: int = MAX_FIELD_BYTES,
               progress: Progress | None = None) -> ParsedFile:
    """Read and check a whole file without touching any project. Errors are collected, not raised,
    except when the file cannot be read at all or its format cannot be told."""
    path = Path(path)
    name = path.name
    if fmt != "auto" and fmt not in IMPORT_FORMATS:
        raise ProjectError(f"format: unknown import format {fmt!r}; known: auto, {', '.join(IMPORT_FORMATS)}")
    if not path.is_file():
        raise ProjectError(f"{path}: no such file")
    try:
        estimate = _count_lines(path)
        records = _records(path)
        head = list(itertools.islice(records, 200))
    except OSError as e:
        raise ProjectError(f"{path}: cannot read ({e.strerror or e})") from None
    auto = fmt == "auto"
    if auto:
        votes: dict[str, int] = {}
        for _line, rec in head:
            guess = detect_format(rec) if isinstance(rec, dict) else None
            if guess:
                votes[guess] = votes.get(guess, 0) + 1
        if not votes:
            first = next(((ln, r) for ln, r in head if isinstance(r, dict)), None)
            if first is None:
                if head and isinstance(head[0][1], _Bad):
                    raise ImportErrors([RowError(name, head[0][0], head[0][1].field, head[0][1].message)])
                raise ImportErrors([RowError(name, None, None, "no rows to import")])
            raise ImportErrors([RowError(name, first[0], None, "cannot tell the format from the fields "
                                         f"{', '.join(sorted(first[1])) or '(none)'}; expected prompt/chosen/"
                                         "rejected, chosen/rejected, prompt/response_a/response_b or prompt")])
        fmt = max(votes, key=lambda k: votes[k])
        first = next((r for _ln, r in head if isinstance(r, dict)), {})
        if fmt == "pairs" and {"label_id", "annotator", "choice"} <= set(first):
            # Read as plain pairs, every label in it would be dropped without a word.
            raise ImportErrors([RowError(name, None, None, "this is a labels export (one raw label per row); "
                                         "importing raw labels is not supported. To bring the preferences "
                                         "over, export --format trl or trl-chat and import that; to label the "
                                         "pairs again, import this file with --format pairs")])
    rows: list[Row] = []
    errors: list[RowError] = []
    total = 0
    for line, rec in itertools.chain(head, records):
        total += 1
        try:
            if isinstance(rec, _Bad):
                raise rec
            if not isinstance(rec, dict):
                raise _Bad(None, f"wrong type: expected an object with fields, got {_type_name(rec)}")
            row_fmt = fmt
            if auto and fmt in LABELED_FORMATS:
                # A file may mix plain and chat prompts (our CSV export does): each labeled row is read in
                # the labeled format its own fields show. A row missing a field stays in the file's format,
                # so the error names the field rather than guessing another format.
                own = detect_format(rec)
                if own in LABELED_FORMATS:
                    row_fmt = own
            rows.append(_normalise(row_fmt, rec, line, max_field_bytes))
        except _Bad as e:
            errors.append(RowError(name, line, e.field, e.message))
        if progress and total % _CHUNK == 0:
            progress(min(line, estimate), 2 * estimate)
    if not total:
        errors.append(RowError(name, None, None, "no rows to import"))
    return ParsedFile(name, fmt, total, rows, errors)


# ---------------------------------------------------------------------------------------------- writing


def _chunks(seq: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _max_id(conn: Any, table: str) -> int:
    return int(conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])


@contextlib.contextmanager
def _label_trigger_off(conn: Any) -> Iterator[bool]:
    """Drop the trigger that counts each new label on its pair, for one bulk write, and put it back.

    The trigger's per-row UPDATE costs two thirds of inserting a label (4 s of 6 s per 300k labels);
    the caller counts the labels it inserts instead. DDL is transactional in SQLite, so this happens
    inside the import's transaction: a failed import rolls back to the trigger as it was, and other
    connections never see the table without it. Yields whether the caller must do the counting."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'labels_count_insert'"
                       ).fetchone()
    if row is None:
        yield False
        return
    conn.execute("DROP TRIGGER labels_count_insert")
    try:
        yield True
    finally:
        # On some errors (disk full) SQLite has already rolled the whole transaction back, trigger
        # included: creating it again would fail and hide the real error.
        if conn.in_transaction:
            conn.execute(row[0])


def write_parsed(project: Project, parsed: ParsedFile, split: str = "train", annotator: str | None = None,
                 skip_invalid: bool = False, progress: Progress | None = None) -> ImportReport:
    """Write checked rows into the project in one transaction (all or nothing)."""
    if split not in ("train", "eval"):
        raise ProjectError(f"split: expected train or eval, got {split!r}")
    if parsed.errors and not skip_invalid:
        raise ImportErrors(parsed.errors)
    labeled = parsed.format in LABELED_FORMATS
    annotator = (annotator or f"import:{parsed.file}") if labeled else None
    report = ImportReport(parsed.file, parsed.format, parsed.total, annotator=annotator,
                          invalid=list(parsed.errors))
    total = parsed.total
    # Duplicates inside the file are dropped here; those already in the project are found per chunk.
    seen: set[tuple] = set()
    rows: list[Row] = []
    for r in parsed.rows:
        key = (r.prompt_hash,) if r.a is None else (r.prompt_hash, *sorted((r.a_hash, r.b_hash)))  # type: ignore[type-var]
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        rows.append(r)
    del seen
    source = parsed.file
    prompt_ids: dict[str, int] = {}
    old_prompts: set[int] = set()  # prompts that existed before this import: only they can have old pairs
    response_ids: dict[tuple[int, str], int] = {}
    ts = now_iso()
    with project._write() as c, _label_trigger_off(c) as count_labels:
        aid = project.annotator_id(annotator) if annotator and rows else None
        done = total - len(rows)
        for chunk in _chunks(rows, _CHUNK):
            # prompts: look up the ones not seen yet, insert the missing, map the new ids back
            new_hashes = list({r.prompt_hash: None for r in chunk if r.prompt_hash not in prompt_ids})
            for part in _chunks(new_hashes, _SQL_VARS):
                for pid, h in c.execute(f"SELECT id, hash FROM prompts WHERE hash IN ({','.join('?' * len(part))})",
                                        part):
                    prompt_ids[h] = pid
                    old_prompts.add(pid)
            missing: dict[str, Row] = {}
            for r in chunk:
                if r.prompt_hash not in prompt_ids and r.prompt_hash not in missing:
                    missing[r.prompt_hash] = r
            if missing:
                top = _max_id(c, "prompts")
                c.executemany("INSERT INTO prompts (text, messages, split, source, hash, created_at) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              [(r.prompt_text, r.messages, split, source, h, ts) for h, r in missing.items()])
                prompt_ids.update((h, pid) for pid, h in c.execute("SELECT id, hash FROM prompts WHERE id > ?",
                                                                   (top,)))
                report.prompts_added += len(missing)
            if chunk[0].a is None:  # prompts only
                report.duplicates += len(chunk) - len(missing)
                done += len(chunk)
                if progress:
                    progress(total + done, 2 * total)
                continue

            # responses
            wanted: dict[tuple[int, str], tuple[str, str | None]] = {}
            for r in chunk:
                pid = prompt_ids[r.prompt_hash]
                for text, h, model in ((r.a, r.a_hash, r.model_a), (r.b, r.b_hash, r.model_b)):
                    key = (pid, h)
                    if key not in response_ids:
                        wanted[key] = (text, model)
            old = sorted({pid for pid, _h in wanted if pid in old_prompts})
            for part in _chunks(old, _SQL_VARS):
                for pid, h, rid in c.execute("SELECT prompt_id, hash, id FROM responses WHERE prompt_id IN "
                                             f"({','.join('?' * len(part))})", part):
                    response_ids[(pid, h)] = rid
            new_responses = [(pid, text, model, h, ts) for (pid, h), (text, model) in wanted.items()
                             if (pid, h) not in response_ids]
            if new_responses:
                top = _max_id(c, "responses")
                c.executemany("INSERT INTO responses (prompt_id, text, model, hash, created_at) VALUES (?, ?, ?, ?, ?)",
                              new_responses)
                response_ids.update(((pid, h), rid) for rid, pid, h in c.execute(
                    "SELECT id, prompt_id, hash FROM responses WHERE id > ?", (top,)))
                report.responses_added += len(new_responses)

            # pairs: A is chosen (or response_a); a pair already in the project is a duplicate
            existing: dict[tuple[int, int, int], tuple[int, int]] = {}
            old = sorted({prompt_ids[r.prompt_hash] for r in chunk} & old_prompts)
            for part in _chunks(old, _SQL_VARS):
                for pair_id, pid, ra, rb in c.execute(
                        "SELECT id, prompt_id, response_a_id, response_b_id FROM pairs WHERE prompt_id IN "
                        f"({','.join('?' * len(part))})", part):
                    existing[(pid, min(ra, rb), max(ra, rb))] = (pair_id, ra)
            new_pairs = []
            relabel: list[tuple[int, str]] = []  # (existing pair id, choice) for labeled duplicates
            for r in chunk:
                pid = prompt_ids[r.prompt_hash]
                ra = response_ids[(pid, r.a_hash)]  # type: ignore[index]
                rb = response_ids[(pid, r.b_hash)]  # type: ignore[index]
                found = existing.get((pid, min(ra, rb), max(ra, rb)))
                if found is not None:
                    report.duplicates += 1
                    if aid is not None:
                        relabel.append((found[0], "a" if found[1] == ra else "b"))
                    continue
                new_pairs.append((pid, ra, rb, source, r.meta, ts))
            if new_pairs:
                top = _max_id(c, "pairs")
                c.executemany("INSERT INTO pairs (prompt_id, response_a_id, response_b_id, source, meta, created_at) "
                              "VALUES (?, ?, ?, ?, ?, ?)", new_pairs)
                report.pairs_added += len(new_pairs)
                if aid is not None:
                    labels = [(pair_id, aid, "a", "a", ts) for (pair_id,) in
                              c.execute("SELECT id FROM pairs WHERE id > ? ORDER BY id", (top,))]
                    c.executemany("INSERT INTO labels (pair_id, annotator_id, choice, shown_left, created_at) "
                                  "VALUES (?, ?, ?, ?, ?)", labels)
                    if count_labels:
                        c.execute("UPDATE pairs SET n_labels = n_labels + 1 WHERE id > ?", (top,))
                    report.labels_added += len(labels)
            if relabel:
                # A labeled row for a pair that is already here still carries a verdict: keep it unless
                # this annotator already labeled the pair (re-importing a file adds nothing).
                have: set[int] = set()
                for part in _chunks([p for p, _ in relabel], _SQL_VARS):
                    have.update(p for (p,) in c.execute(
                        "SELECT pair_id FROM labels WHERE annotator_id = ? AND state = 'current' AND pair_id IN "
                        f"({','.join('?' * len(part))})", [aid, *part]))
                add = [(p, aid, ch, "a", ts) for p, ch in dict(relabel).items() if p not in have]
                c.executemany("INSERT INTO labels (pair_id, annotator_id, choice, shown_left, created_at) "
                              "VALUES (?, ?, ?, ?, ?)", add)
                if count_labels:
                    c.executemany("UPDATE pairs SET n_labels = n_labels + 1 WHERE id = ?", [(p,) for p, *_ in add])
                report.labels_added += len(add)
            done += len(chunk)
            if progress:
                progress(total + done, 2 * total)
    if progress:
        progress(2 * total, 2 * total)
    return report


def import_file(project: Project, path: str | Path, fmt: str = "auto", split: str = "train",
                annotator: str | None = None, skip_invalid: bool = False, progress: Progress | None = None,
                max_field_bytes: int = MAX_FIELD_BYTES) -> ImportReport:
    """Check a whole file, then import it in one transaction. Raises ImportErrors (nothing written)
    when a row is invalid, unless skip_invalid: then the valid rows go in and `report.invalid` lists
    the others. `progress(done, total)` is called as work proceeds; done reaches total at the end."""
    parsed = parse_file(path, fmt, max_field_bytes, progress)
    return write_parsed(project, parsed, split, annotator, skip_invalid, progress)


# ---------------------------------------------------------------------------------------------- export


def _resolved_rows(project: Project, split: str | None) -> tuple[Iterator[dict], dict[str, int], int]:
    """Resolved preferences with their texts, in pair order, streamed from one query."""
    prefs, left_out = project.resolve(split)
    by_pair = {p.pair_id: p for p in prefs}

    def rows() -> Iterator[dict]:
        sql = ("SELECT p.id, pr.text, pr.messages, pr.split, ra.id, ra.text, rb.text FROM pairs p "
               "JOIN prompts pr ON pr.id = p.prompt_id JOIN responses ra ON ra.id = p.response_a_id "
               "JOIN responses rb ON rb.id = p.response_b_id WHERE p.n_labels > 0 ORDER BY p.id")
        for pair_id, ptext, pmsgs, psplit, ra_id, a_text, b_text in project._conn.execute(sql):
            pref = by_pair.get(pair_id)
            if pref is None:
                continue
            chosen, rejected = (a_text, b_text) if pref.chosen_id == ra_id else (b_text, a_text)
            yield {"pair_id": pair_id, "prompt": ptext, "messages": json.loads(pmsgs) if pmsgs else None,
                   "split": psplit, "chosen": chosen, "rejected": rejected}

    return rows(), left_out, len(prefs)


def _label_rows(project: Project, split: str | None) -> Iterator[dict]:
    sql = ("SELECT l.id, l.pair_id, pr.id, pr.text, pr.messages, pr.split, ra.text, rb.text, a.name, l.choice, "
           "l.strength, l.rationale, l.shown_left, l.seconds, l.created_at, l.state, l.ended_at, l.replaces_id "
           "FROM labels l JOIN annotators a ON a.id = l.annotator_id JOIN pairs p ON p.id = l.pair_id "
           "JOIN prompts pr ON pr.id = p.prompt_id JOIN responses ra ON ra.id = p.response_a_id "
           "JOIN responses rb ON rb.id = p.response_b_id" + (" WHERE pr.split = ?" if split else "") +
           " ORDER BY l.id")
    for row in project._conn.execute(sql, (split,) if split else ()):
        (lid, pair_id, prompt_id, ptext, pmsgs, psplit, a_text, b_text, name, choice, strength, rationale,
         shown_left, seconds, created, state, ended, replaces) = row
        yield {"label_id": lid, "pair_id": pair_id, "prompt_id": prompt_id,
               "prompt": json.loads(pmsgs) if pmsgs else ptext, "split": psplit, "response_a": a_text,
               "response_b": b_text, "annotator": name, "choice": choice, "strength": strength,
               "rationale": rationale, "shown_left": shown_left, "seconds": seconds, "created_at": created,
               "state": state, "ended_at": ended, "replaces_label_id": replaces}


def _atomic_writer(out: Path) -> tuple[io.TextIOWrapper, Callable[[bool], None]]:
    """A temporary file next to `out`, renamed over it on success, so a failed export leaves no half file."""
    # open(..., "x") rather than mkstemp: the file gets the user's usual permissions (umask), not 0600
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProjectError(f"{out}: cannot create the folder {out.parent} ({e.strerror or e})") from None
    try:
        f = open(tmp, "x", encoding="utf-8", newline="")  # noqa: SIM115 - closed in finish()
    except OSError as e:
        raise ProjectError(f"{out}: cannot write ({e.strerror or e})") from None

    def finish(ok: bool) -> None:
        try:
            f.close()  # flushes: on a full disk this is where the error comes
            if ok:
                os.replace(tmp, out)
        except OSError:
            ok = False
            raise
        finally:
            if not ok:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    return f, finish


def _csv_record(r: dict) -> dict:
    """A CSV row: a chat prompt and its replies as JSON message lists (one trl-chat row), a plain one as text."""
    if r["messages"] is None:
        return {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
    return {"prompt": json.dumps(r["messages"], ensure_ascii=False),
            "chosen": json.dumps([{"role": "assistant", "content": r["chosen"]}], ensure_ascii=False),
            "rejected": json.dumps([{"role": "assistant", "content": r["rejected"]}], ensure_ascii=False)}


def export_file(project: Project, out: str | Path, fmt: str = "trl", split: str | None = None,
                progress: Progress | None = None) -> ExportReport:
    """Export resolved preferences (trl, trl-chat, csv) or every raw label (labels).

    `trl` writes plain strings and refuses projects whose prompts are chats (TRL cannot mix the two in
    one dataset): use `trl-chat`, which writes message lists and wraps a plain prompt as one user turn.
    `.json` files get a JSON array, anything else JSON lines; `csv` has prompt, chosen, rejected columns,
    holding JSON message lists on rows whose prompt is a chat (import reads both kinds back).
    `progress(done, total)` is called every few thousand rows and at the end."""
    if fmt not in EXPORT_FORMATS:
        raise ProjectError(f"format: unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    if split not in (None, "train", "eval"):
        raise ProjectError(f"split: expected train or eval, got {split!r}")
    out = Path(out)
    left_out: dict[str, int] = {}
    if fmt == "labels":
        records: Iterator[dict] = _label_rows(project, split)
        total = int(project._scalar(
            "SELECT count(*) FROM labels l" + (" JOIN pairs p ON p.id = l.pair_id JOIN prompts pr ON "
                                                "pr.id = p.prompt_id WHERE pr.split = ?" if split else ""),
            (split,) if split else ()))
    else:
        resolved, left_out, total = _resolved_rows(project, split)
        if fmt == "trl":
            chats = project._scalar(
                "SELECT count(*) FROM prompts WHERE messages IS NOT NULL" + (" AND split = ?" if split else ""),
                (split,) if split else ())
            if chats:
                raise ProjectError(f"export --format trl: {chats} prompt(s) in this project are chats, which the "
                                   "standard format cannot hold; use --format trl-chat")
            records = ({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in resolved)
        elif fmt == "trl-chat":
            records = ({"prompt": r["messages"] or [{"role": "user", "content": r["prompt"]}],
                        "chosen": [{"role": "assistant", "content": r["chosen"]}],
                        "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in resolved)
        else:
            records = (_csv_record(r) for r in resolved)
    if progress is not None:
        records = _reporting(records, total, progress)
    f, finish = _atomic_writer(out)
    n = 0
    try:
        if fmt == "csv":
            writer = csv.writer(f)
            writer.writerow(["prompt", "chosen", "rejected"])
            for rec in records:
                writer.writerow([rec["prompt"], rec["chosen"], rec["rejected"]])
                n += 1
        elif out.suffix.lower() == ".json":
            f.write("[")
            for rec in records:
                f.write(("," if n else "") + "\n" + json.dumps(rec, ensure_ascii=False))
                n += 1
            f.write("\n]\n")
        else:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
        finish(True)
    except OSError as e:
        with contextlib.suppress(OSError):
            finish(False)
        raise ProjectError(f"{out}: cannot write ({e.strerror or e}); no file was written") from None
    except BaseException:
        with contextlib.suppress(OSError):
            finish(False)
        raise
    if progress is not None:
        progress(n, total)
    return ExportReport(str(out), fmt, n, left_out)


def _reporting(records: Iterator[dict], total: int, progress: Progress) -> Iterator[dict]:
    progress(0, total)
    for i, rec in enumerate(records, 1):
        yield rec
        if i % _CHUNK == 0:
            progress(i, total)
