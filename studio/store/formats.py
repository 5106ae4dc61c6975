"""Import and export of preference data in the Hugging Face ecosystem's formats (JSONL, JSON, CSV).

Import reads and checks the whole file first, then writes it with bulk inserts in short transactions
whose rows stay invisible until the last one (`imports`), so a failed or killed import changes nothing,
other writers wait a fraction of a second at most, and 100k pairs take seconds. Plain or gzip-compressed
files. Formats, detected from the fields (which must fit one exactly):

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
import gzip
import io
import itertools
import json
import math
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from studio.core.types import ROLES
from studio.store.db import ProjectError, content_hash, messages_to_text, now_iso, prompt_hash
from studio.store.imports import GAP_S, visible_sql
from studio.store.project import Project
from studio.store.schema import IMPORT_PREFIX

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

    def __init__(self, errors: Sequence[RowError], limit: int = 20, headline: str | None = None):
        self.errors = list(errors)
        shown = "\n".join(str(e) for e in self.errors[:limit])
        more = f"\n... and {len(self.errors) - limit} more" if len(self.errors) > limit else ""
        headline = headline or f"{len(self.errors)} invalid row(s)"
        super().__init__(f"{headline}; nothing was imported:\n{shown}{more}")


class FileRejected(ProjectError):
    """The file as a whole cannot be imported (missing, a folder, empty, not text, fields that fit no
    format...), before any row is looked at; nothing was imported. `.error` says where and why."""

    def __init__(self, error: RowError):
        super().__init__(str(error))
        self.error = error


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


_GZIP = b"\x1f\x8b"
_BINARY = (  # magic numbers of files people might hand over instead of JSON lines, JSON or CSV
    (b"PAR1", "a Parquet file: convert it first, e.g. pandas.read_parquet(FILE).to_json(OUT, orient='records', "
              "lines=True)"),
    (b"PK\x03\x04", "a ZIP archive: unpack it first"),
    (b"BZh", "bzip2-compressed: decompress it first (gzip is read directly)"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first (gzip is read directly)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it first (gzip is read directly)"),
    (b"ARROW1", "an Arrow file: convert it to JSON lines first"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\xff\xfe", "text in UTF-16: save it as UTF-8"),
    (b"\xfe\xff", "text in UTF-16: save it as UTF-8"),
)
_TEXT_FORMS = "import reads JSON lines, JSON or CSV, plain or gzip-compressed (.gz)"


def _open_input(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it is gzip (told by its first bytes, whatever its name)."""
    f = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if f.read(2) == _GZIP:
        f.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def _name_suffix(path: Path) -> str:
    """The extension that says the container: `.jsonl` for `x.jsonl` and for `x.jsonl.gz`."""
    name = path.name.lower()
    return Path(name[:-3] if name.endswith(".gz") else name).suffix


def _check_text(path: Path, raw: bytes, head: bytes) -> None:
    """Refuse a file that is not text before a parser misreads it (a CSV parser would complain about
    newlines in a Parquet file). `raw` is how the file starts, `head` how its (decompressed) text does."""
    for magic, what in _BINARY:
        if raw.startswith(magic) or head.startswith(magic):
            raise FileRejected(RowError(str(path), None, None, f"not a text file ({what}); {_TEXT_FORMS}"))
    if b"\x00" in head:
        raise FileRejected(RowError(str(path), None, None, f"not a text file (it holds NUL bytes: binary data); "
                                                           f"{_TEXT_FORMS}"))


def _container(path: Path, head: bytes) -> str:
    suffix = _name_suffix(path)
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
        except RecursionError:
            yield n, _too_deep(None)


def _too_deep(field: str | None) -> _Bad:
    """JSON nested deeper than Python's parser goes (about a thousand levels): no preference data is."""
    return _Bad(field, f"invalid JSON: nested too deeply (over {sys.getrecursionlimit():,} levels)")


def _records(path: Path, kind: str) -> Iterator[tuple[int, Any]]:
    """(line, record or _Bad) for every record in the file, in order."""
    with _open_input(path) as f:
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
    with _open_input(path) as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return max(n, 1)


def _head(path: Path, size: int = 1 << 16) -> bytes:
    """The first bytes of the file, decompressed."""
    with _open_input(path) as f:
        return f.read(size)


def _is_blank(path: Path) -> bool:
    """Nothing but white space (and a byte-order mark) in the whole file."""
    with _open_input(path) as f:
        first = True
        while block := f.read(1 << 20):
            if first and block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]
            first = False
            if block.strip():
                return False
    return True


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
        except RecursionError:
            end = _json_value_end(text, pos)
            if end is None:
                yield line, _too_deep(None)
                return
            value = _too_deep(None)
        yield line, _undecodable(line, bad, line_of(max(end - 1, pos))) or value
        pos = ws.match(text, end).end()  # type: ignore[union-attr]
        sep = text[pos:pos + 1]
        if sep == "]":
            return
        if sep != ",":
            yield line_of(pos), _Bad(None, "invalid JSON: expected ',' or ']' after an array element")
            return
        pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]


def _json_value_end(text: str, pos: int) -> int | None:
    """Where the JSON value starting at `pos` ends, found by counting brackets outside strings (for a value
    too deep for the parser, so the elements after it can still be read); None if it never closes."""
    depth, i, n = 0, pos, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _json_cell(value: str, field: str) -> Any:
    """A CSV cell holding a JSON message list becomes the list; any other cell stays a string."""
    s = value.strip()
    if s.startswith("[") and s.endswith("]"):
        try:
            parsed = json.loads(s)
        except json.JSONDecodeError:
            return value
        except RecursionError:
            raise _too_deep(field) from None
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
        try:
            for k, v in zip(header, cells, strict=True):
                if k in ("score_chosen", "score_rejected"):
                    try:
                        record[k] = float(v) if v.strip() else None
                    except ValueError:
                        record[k] = v
                else:
                    record[k] = _json_cell(v, k)
        except _Bad as e:
            yield line, e
            continue
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


_ANSWER_FIELDS = frozenset({"chosen", "rejected", "response_a", "response_b"})
_FORMAT_FIELDS = {  # what each format needs, for the message when a file's fields fit none of them
    "trl, trl-chat and ultrafeedback need": ("prompt", "chosen", "rejected"),
    "hh needs": ("chosen", "rejected"),
    "pairs needs": ("prompt", "response_a", "response_b"),
    "prompts needs": ("prompt",),
}
_FORMAT_NEEDS = ("; ".join(f"{fmt} {', '.join(fields)}" for fmt, fields in _FORMAT_FIELDS.items())
                 + " and no chosen, rejected, response_a or response_b; hh's chosen and rejected are "
                   "Human/Assistant transcripts")


def _transcript_like(value: Any) -> bool:
    """A message list, or a string with HH's `Human:` / `Assistant:` turns."""
    return isinstance(value, list) or (isinstance(value, str) and "Human:" in value and "Assistant:" in value)


def detect_format(record: dict) -> str | None:
    """The import format a record's fields fit exactly, or None when they fit none.

    The answer fields must be a format's whole set: `prompt` with only `chosen` is not a prompts file (its
    answers would be dropped without a word), `chosen`/`rejected` without `prompt` are HH only when they
    hold transcripts. Other fields (ids, scores, metadata) are allowed."""
    keys = set(record)
    answers = keys & _ANSWER_FIELDS
    has_prompt = record.get("prompt") is not None
    if answers == {"response_a", "response_b"}:
        return "pairs" if has_prompt else None
    if answers == {"chosen", "rejected"}:
        if not has_prompt:
            return "hh" if _transcript_like(record.get("chosen")) else None
        if isinstance(record["prompt"], list):
            return "trl-chat"
        return "ultrafeedback" if isinstance(record.get("chosen"), list) else "trl"
    if not answers and has_prompt:
        return "prompts"
    return None


def _no_format(name: str, line: int, keys: set[str], kind: str) -> FileRejected:
    """Which fields were found, what each format needs, and what the nearest one lacks."""
    what = "columns" if kind in ("csv", "tsv") else "fields"
    missing = min((tuple(f for f in fields if f not in keys) for fields in _FORMAT_FIELDS.values()
                   if set(fields) & keys & _ANSWER_FIELDS), key=len, default=())
    hint = f" (missing: {', '.join(missing)})" if missing else ""
    if not missing and {"chosen", "rejected"} <= keys and "prompt" not in keys:
        hint = " (chosen and rejected without a prompt must be Human/Assistant transcripts, as in HH-RLHF)"
    return FileRejected(RowError(name, line, None, (
        f"cannot tell the format from the {what} {', '.join(sorted(keys)) or '(none)'}{hint}: they fit no "
        f"format exactly ({_FORMAT_NEEDS})")))


def parse_file(path: str | Path, fmt: str = "auto", max_field_bytes: int = MAX_FIELD_BYTES,
               progress: Progress | None = None) -> ParsedFile:
    """Read and check a whole file without touching any project. Row errors are collected, not raised;
    FileRejected is raised when the file as a whole cannot be imported (missing, a folder, empty, not a
    text file, its fields fit no format...)."""
    path = Path(path)
    name = path.name
    if fmt != "auto" and fmt not in IMPORT_FORMATS:
        raise ProjectError(f"format: unknown import format {fmt!r}; known: auto, {', '.join(IMPORT_FORMATS)}")

    def reject(message: str, line: int | None = None) -> FileRejected:
        return FileRejected(RowError(str(path), line, None, message))

    if path.is_dir():
        raise reject("is a folder, not a file: give the data file inside it")
    if not path.exists():
        raise reject("no such file")
    try:
        with open(path, "rb") as f:
            raw = f.read(64)
        head_bytes = _head(path)
        _check_text(path, raw, head_bytes)
        if not head_bytes.lstrip(b"\xef\xbb\xbf").strip() and _is_blank(path):
            raise reject("the file is empty" if path.stat().st_size else "the file is empty (0 bytes)")
        kind = _container(path, head_bytes)
        if kind == "jsonl" and head_bytes.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
            raise reject(f"is one JSON array, not JSON lines (one object per line) as its name {_name_suffix(path)} "
                         "says: name it .json, or write one object per line")
        estimate = _count_lines(path)
        records = _records(path, kind)
        head = list(itertools.islice(records, 200))
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a cut-off gzip ends in EOFError
        raise reject(f"cannot read ({getattr(e, 'strerror', None) or e})") from None
    if not head:
        raise reject("no rows to import" + (" (only a header)" if kind in ("csv", "tsv") else ""))
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
                # not one object among the first records: those are the errors to show
                raise ImportErrors([RowError(name, ln, r.field, r.message) if isinstance(r, _Bad) else
                                    RowError(name, ln, None, "wrong type: expected an object with fields, got "
                                                             f"{_type_name(r)}") for ln, r in head])
            raise _no_format(name, first[0], set(first[1]), kind)
        fmt = max(votes, key=lambda k: votes[k])
        first = next((r for _ln, r in head if isinstance(r, dict)), {})
        if fmt == "pairs" and {"label_id", "annotator", "choice"} <= set(first):
            # Read as plain pairs, every label in it would be dropped without a word.
            raise reject("this is a labels export (one raw label per row); importing raw labels is not "
                         "supported. To bring the preferences over, export --format trl or trl-chat and import "
                         "that; to label the pairs again, import this file with --format pairs")
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
    return ParsedFile(name, fmt, total, rows, errors)


# ---------------------------------------------------------------------------------------------- writing


def _chunks(seq: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _max_id(conn: Any, table: str) -> int:
    return int(conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])


@contextlib.contextmanager
def _label_trigger_off(conn: Any) -> Iterator[bool]:
    """Drop the trigger that counts each new label on its pair, for one bulk insert, and put it back.

    Merely having the trigger costs more than the insert itself (2 s per 100k labels, even when its WHEN
    is false); the caller counts what the trigger would have. DDL is transactional in SQLite, so this
    happens inside one of the import's transactions: a failure rolls back to the trigger as it was, and
    other connections never see the table without it. Yields whether the caller must do the counting."""
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


_TRANSACTION_S = 0.25
"""Aimed length of one of an import's write transactions: other writers wait at most about this long."""
_MIN_CHUNK = 2000
"""Rows in an import's first transaction, and at least in any: each commit is followed by a WAL
checkpoint (two fsyncs), which at hundreds of tiny transactions took longer than the writing."""


@dataclasses.dataclass
class _ChunkWriter:
    """Writes an import's rows chunk by chunk, each chunk in its own short transaction, all of them marked
    with the import's id (invisible until it is published). Keeps the id maps between chunks."""

    import_id: int
    split: str
    source: str
    annotator_id: int | None
    report: ImportReport
    created_at: str = dataclasses.field(default_factory=now_iso)
    prompt_ids: dict[str, int] = dataclasses.field(default_factory=dict)
    old_prompts: set[int] = dataclasses.field(default_factory=set)
    """Prompts that existed before this import: only they can have pairs from before it."""
    response_ids: dict[tuple[int, str], int] = dataclasses.field(default_factory=dict)
    person: bool = False
    """The labels' annotator is a person (--annotator NAME), whose labels count in n_labels."""

    def write(self, c: Any, chunk: Sequence[Row]) -> None:
        report, ts, iid = self.report, self.created_at, self.import_id
        # prompts: look up the ones not seen yet, insert the missing, map the new ids back
        new_hashes = list({r.prompt_hash: None for r in chunk if r.prompt_hash not in self.prompt_ids})
        for part in _chunks(new_hashes, _SQL_VARS):
            for pid, h in c.execute(f"SELECT id, hash FROM prompts WHERE hash IN ({','.join('?' * len(part))})",
                                    part):
                self.prompt_ids[h] = pid
                self.old_prompts.add(pid)
        missing: dict[str, Row] = {}
        for r in chunk:
            if r.prompt_hash not in self.prompt_ids and r.prompt_hash not in missing:
                missing[r.prompt_hash] = r
        if missing:
            top = _max_id(c, "prompts")
            c.executemany("INSERT INTO prompts (text, messages, split, source, hash, created_at, import_id) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [(r.prompt_text, r.messages, self.split, self.source, h, ts, iid)
                           for h, r in missing.items()])
            self.prompt_ids.update((h, pid) for pid, h in c.execute("SELECT id, hash FROM prompts WHERE id > ?",
                                                                    (top,)))
            report.prompts_added += len(missing)
        if chunk[0].a is None:  # prompts only
            report.duplicates += len(chunk) - len(missing)
            return

        # responses
        wanted: dict[tuple[int, str], tuple[str, str | None]] = {}
        for r in chunk:
            pid = self.prompt_ids[r.prompt_hash]
            for text, h, model in ((r.a, r.a_hash, r.model_a), (r.b, r.b_hash, r.model_b)):
                key = (pid, h)
                if key not in self.response_ids:
                    wanted[key] = (text, model)  # type: ignore[assignment]
        old = sorted({pid for pid, _h in wanted if pid in self.old_prompts})
        for part in _chunks(old, _SQL_VARS):
            for pid, h, rid in c.execute("SELECT prompt_id, hash, id FROM responses WHERE prompt_id IN "
                                         f"({','.join('?' * len(part))})", part):
                self.response_ids[(pid, h)] = rid
        new_responses = [(pid, text, model, h, ts, iid) for (pid, h), (text, model) in wanted.items()
                         if (pid, h) not in self.response_ids]
        if new_responses:
            top = _max_id(c, "responses")
            c.executemany("INSERT INTO responses (prompt_id, text, model, hash, created_at, import_id) "
                          "VALUES (?, ?, ?, ?, ?, ?)", new_responses)
            self.response_ids.update(((pid, h), rid) for rid, pid, h in c.execute(
                "SELECT id, prompt_id, hash FROM responses WHERE id > ?", (top,)))
            report.responses_added += len(new_responses)

        # pairs: A is chosen (or response_a); a pair already in the project is a duplicate
        existing: dict[tuple[int, int, int], tuple[int, int]] = {}
        old = sorted({self.prompt_ids[r.prompt_hash] for r in chunk} & self.old_prompts)
        for part in _chunks(old, _SQL_VARS):
            for pair_id, pid, ra, rb in c.execute(
                    "SELECT id, prompt_id, response_a_id, response_b_id FROM pairs WHERE prompt_id IN "
                    f"({','.join('?' * len(part))})", part):
                existing[(pid, min(ra, rb), max(ra, rb))] = (pair_id, ra)
        new_pairs = []
        relabel: dict[int, str] = {}  # existing pair id -> choice, for labeled duplicates
        for r in chunk:
            pid = self.prompt_ids[r.prompt_hash]
            ra = self.response_ids[(pid, r.a_hash)]  # type: ignore[index]
            rb = self.response_ids[(pid, r.b_hash)]  # type: ignore[index]
            found = existing.get((pid, min(ra, rb), max(ra, rb)))
            if found is not None:
                report.duplicates += 1
                if self.annotator_id is not None:
                    relabel[found[0]] = "a" if found[1] == ra else "b"
                continue
            new_pairs.append((pid, ra, rb, self.source, r.meta, ts, iid))
        if new_pairs:
            top = _max_id(c, "pairs")
            c.executemany("INSERT INTO pairs (prompt_id, response_a_id, response_b_id, source, meta, created_at, "
                          "import_id) VALUES (?, ?, ?, ?, ?, ?, ?)", new_pairs)
            report.pairs_added += len(new_pairs)
            if self.annotator_id is not None:
                labels = [(pair_id, self.annotator_id, "a", "a", ts) for (pair_id,) in
                          c.execute("SELECT id FROM pairs WHERE id > ? ORDER BY id", (top,))]
                with _label_trigger_off(c) as count_labels:
                    c.executemany("INSERT INTO labels (pair_id, annotator_id, choice, shown_left, created_at) "
                                  "VALUES (?, ?, ?, ?, ?)", labels)
                    if count_labels and self.person:  # n_labels counts people's labels; an import's are not
                        c.execute("UPDATE pairs SET n_labels = n_labels + 1 WHERE id > ?", (top,))
                report.labels_added += len(labels)
        if relabel:
            # A labeled row for a pair that is already here still carries a verdict: kept unless this
            # annotator already labeled the pair (re-importing a file adds nothing). Those pairs are visible,
            # so their labels wait in import_labels until the import is published.
            c.executemany("INSERT INTO import_labels (import_id, pair_id, annotator_id, choice, created_at) "
                          "VALUES (?, ?, ?, ?, ?)",
                          [(iid, p, self.annotator_id, ch, ts) for p, ch in relabel.items()])


def write_parsed(project: Project, parsed: ParsedFile, split: str = "train", annotator: str | None = None,
                 skip_invalid: bool = False, progress: Progress | None = None) -> ImportReport:
    """Write checked rows into the project, all or nothing, without holding up other writers.

    The rows go in by short transactions (about a quarter of a second each, with a pause between them, so
    a labeling view or a training worker waits at most one), marked as this import's and invisible to
    every query until the import is published in one last tiny transaction. If anything fails (or the
    progress callback raises to cancel), the rows written so far are deleted again; if the process is
    killed, the next opening of the project deletes them."""
    if split not in ("train", "eval"):
        raise ProjectError(f"split: expected train or eval, got {split!r}")
    if parsed.errors and not skip_invalid:
        raise ImportErrors(parsed.errors)
    if parsed.errors and not parsed.rows:
        raise ImportErrors(parsed.errors, headline=f"no valid rows (all {parsed.total} are invalid)")
    labeled = parsed.format in LABELED_FORMATS
    annotator = (annotator or f"{IMPORT_PREFIX}{parsed.file}") if labeled else None
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
    import_id = project.begin_import(parsed.file, parsed.format, annotator)
    published = False
    try:
        writer = _ChunkWriter(import_id, split, parsed.file,
                              project.annotator_id(annotator) if annotator and rows else None, report,
                              person=bool(annotator) and not annotator.startswith(IMPORT_PREFIX))
        done, size, start = total - len(rows), _MIN_CHUNK, 0
        while start < len(rows):
            chunk = rows[start:start + size]
            start += len(chunk)
            with project._write() as c:
                started = time.monotonic()
                writer.write(c, chunk)
                took = time.monotonic() - started
            # As many rows per transaction as fit in about _TRANSACTION_S on this machine, at this size. The
            # WAL checkpoint that follows a commit is not counted: other writers need not wait for it.
            size = max(_MIN_CHUNK, min(2 * size, 50_000, int(size * _TRANSACTION_S / max(took, 1e-3))))
            done += len(chunk)
            if progress:
                progress(total + done, 2 * total)
            time.sleep(GAP_S)  # the writers waiting for the lock go first
        project.publish_import(import_id)
        published = True
        report.labels_added += project.apply_import_labels(import_id)
    except BaseException:
        if not published:
            # the original error matters more than one in cleaning up (the next opening cleans up then)
            with contextlib.suppress(Exception):
                project.abort_import(import_id)
        raise
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
               "JOIN responses rb ON rb.id = p.response_b_id WHERE EXISTS (SELECT 1 FROM labels l WHERE "
               f"l.pair_id = p.id AND l.state = 'current') AND {visible_sql('p')} ORDER BY p.id")
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
           f"JOIN responses rb ON rb.id = p.response_b_id WHERE {visible_sql('p')}"
           + (" AND pr.split = ?" if split else "") + " ORDER BY l.id")
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
            f"SELECT count(*) FROM labels l JOIN pairs p ON p.id = l.pair_id WHERE {visible_sql('p')}"
            + (" AND p.prompt_id IN (SELECT id FROM prompts WHERE split = ?)" if split else ""),
            (split,) if split else ()))
    else:
        resolved, left_out, total = _resolved_rows(project, split)
        if fmt == "trl":
            chats = project._scalar(
                f"SELECT count(*) FROM prompts pr WHERE messages IS NOT NULL AND {visible_sql('pr')}"
                + (" AND split = ?" if split else ""), (split,) if split else ())
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
