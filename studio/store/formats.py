"""The import formats of preference data in the Hugging Face ecosystem (JSONL, JSON, CSV), and checking a
file against them (`parse_file`).

Import reads (`file_reading`) and checks the whole file first, then writes it (`import_writing`) with bulk
inserts in short transactions whose rows stay invisible until the last one (`imports`), so a failed or
killed import changes nothing, other writers wait a fraction of a second at most, and 100k pairs take
seconds; `export` writes resolved preferences or labels. Plain or gzip-compressed files. Formats,
detected from the fields (which must fit one exactly):

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

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from studio.core.types import ROLES
from studio.store import file_reading as reading
from studio.store.db import ProjectError, content_hash, messages_to_text, prompt_hash
from studio.store.file_reading import FieldError, FileRejected, RowError

IMPORT_FORMATS = ("trl", "trl-chat", "hh", "ultrafeedback", "pairs", "prompts")
EXPORT_FORMATS = ("trl", "trl-chat", "labels", "csv")
LABELED_FORMATS = frozenset({"trl", "trl-chat", "hh", "ultrafeedback"})
MAX_FIELD_BYTES = 1_000_000
"""Largest text field accepted (UTF-8 bytes): guards against a column of base64 images or a broken file."""

Progress = Callable[[int, int], None]

PROGRESS_EVERY = 5000
"""Rows between two progress reports, reading a file and exporting one."""


class ImportErrors(ProjectError):
    """The file has invalid rows and nothing was imported; `.errors` lists every one."""

    def __init__(self, errors: Sequence[RowError], limit: int = 20, headline: str | None = None):
        self.errors = list(errors)
        shown = "\n".join(str(e) for e in self.errors[:limit])
        more = f"\n... and {len(self.errors) - limit} more" if len(self.errors) > limit else ""
        headline = headline or f"{len(self.errors)} invalid row(s)"
        super().__init__(f"{headline}; nothing was imported:\n{shown}{more}")


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
        raise FieldError(field, f"invalid text: a lone UTF-16 surrogate \\u{ord(bad.group()):04x} at character "
                          f"{bad.start() + 1} (a broken \\u escape; not Unicode text)")
    # len() bounds the UTF-8 size from below (and by 4x from above): encode only long texts
    if len(value) * 4 > limit and len(value.encode("utf-8")) > limit:
        raise FieldError(field, f"text over the size limit ({len(value.encode('utf-8')):,} bytes > {limit:,})")


def _text(record: dict, field: str, limit: int) -> str:
    if field not in record or record[field] is None:
        raise FieldError(field, "missing field")
    value = record[field]
    if not isinstance(value, str):
        raise FieldError(field, f"wrong type: expected a string, got {_type_name(value)}")
    if not value.strip():
        raise FieldError(field, "empty text")
    _check_size(value, field, limit)
    return value


def _messages(value: Any, field: str, limit: int) -> list[dict]:
    if not isinstance(value, list):
        raise FieldError(field, f"wrong type: expected a list of messages, got {_type_name(value)}")
    if not value:
        raise FieldError(field, "empty message list")
    out = []
    for i, m in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(m, dict):
            raise FieldError(where, f"wrong type: expected a message object, got {_type_name(m)}")
        for key in ("role", "content"):
            if key not in m or m[key] is None:
                raise FieldError(f"{where}.{key}", "missing field")
            if not isinstance(m[key], str):
                raise FieldError(f"{where}.{key}", f"wrong type: expected a string, got {_type_name(m[key])}")
        if m["role"] not in ROLES:
            raise FieldError(f"{where}.role", f"unknown message role {m['role']!r} (known: {', '.join(ROLES)})")
        _check_size(m["content"], f"{where}.content", limit)
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _message_field(record: dict, field: str, limit: int) -> list[dict]:
    if field not in record or record[field] is None:
        raise FieldError(field, "missing field")
    return _messages(record[field], field, limit)


def _split_reply(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], str, str]:
    """Conversation before the final replies (shared by both), and the two replies."""
    for name, msgs in (("chosen", chosen), ("rejected", rejected)):
        last = msgs[-1]
        if last["role"] != "assistant":
            raise FieldError(f"{name}[{len(msgs) - 1}].role",
                       f"the last message must be the assistant's reply, got {last['role']!r}")
        if not last["content"].strip():
            raise FieldError(f"{name}[{len(msgs) - 1}].content", "empty text")
    if chosen[:-1] != rejected[:-1]:
        raise FieldError("rejected", "chosen and rejected differ before the final reply (they must share the prompt "
                               "conversation)")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def _hh_transcript(value: Any, field: str, limit: int) -> list[dict]:
    if isinstance(value, list):
        return _messages(value, field, limit)
    if not isinstance(value, str):
        raise FieldError(field, f"wrong type: expected a transcript string or message list, got {_type_name(value)}")
    if not value.strip():
        raise FieldError(field, "empty text")
    _check_size(value, field, limit)
    # a transcript that went through a Windows tool has \r\n line ends: turn markers are then \r\n\r\n
    text = value.replace("\r\n", "\n")
    text = text if text.startswith("\n\n") else "\n\n" + text.lstrip()
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise FieldError(field, "not a Human/Assistant transcript (expected '\\n\\nHuman: ...\\n\\nAssistant: ...')")
    if parts[-2] != "Assistant":
        raise FieldError(field, "the transcript does not end with an '\\n\\nAssistant:' reply")
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
        raise FieldError(field, f"wrong type: expected a number, got {_type_name(v)}")
    if math.isnan(v):
        # pandas writes a missing score as NaN (JSON NaN, or "nan" in CSV): it means "no score"
        return None
    if math.isinf(v):
        raise FieldError(field, f"not a finite number: {v}")
    return float(v)


def _normalise(fmt: str, record: dict, line: int, limit: int) -> Row:
    """Check one record against a format and turn it into a Row; raises FieldError naming the field."""
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
                raise FieldError(key, f"wrong type: expected a string, got {_type_name(v)}")
            if v:
                _check_size(v, key, limit)
        model_a, model_b = record.get("model_a") or None, record.get("model_b") or None
    elif fmt == "trl":
        if isinstance(record.get("prompt"), list):
            raise FieldError("prompt", "wrong type: expected a string, got list (a message list is format trl-chat)")
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
                raise FieldError(key, "missing field")
        chosen = _hh_transcript(record["chosen"], "chosen", limit)
        rejected = _hh_transcript(record["rejected"], "rejected", limit)
        messages, a, b = _split_reply(chosen, rejected)
        if not messages:
            raise FieldError("chosen", "the transcript has no prompt before the final reply")
        text = messages_to_text(messages)
    else:
        raise ProjectError(f"format: unknown import format {fmt!r}; known: {', '.join(IMPORT_FORMATS)}")
    if a is not None and a == b:
        raise FieldError("response_b" if fmt == "pairs" else "rejected",
                   f"identical to {'response_a' if fmt == 'pairs' else 'chosen'}")
    if not text.strip():
        raise FieldError("prompt", "empty text")
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
        head_bytes = reading.head(path)
        reading.check_text(path, raw, head_bytes)
        if not head_bytes.lstrip(b"\xef\xbb\xbf").strip() and reading.is_blank(path):
            raise reject("the file is empty" if path.stat().st_size else "the file is empty (0 bytes)")
        kind = reading.container(path, head_bytes)
        if kind == "jsonl" and head_bytes.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
            raise reject(f"is one JSON array, not JSON lines (one object per line) as its name "
                         f"{reading.name_suffix(path)} says: name it .json, or write one object per line")
        estimate = reading.count_lines(path)
        records = reading.records(path, kind)
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
                raise ImportErrors([RowError(name, ln, r.field, r.message) if isinstance(r, FieldError) else
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
            if isinstance(rec, FieldError):
                raise rec
            if not isinstance(rec, dict):
                raise FieldError(None, f"wrong type: expected an object with fields, got {_type_name(rec)}")
            row_fmt = fmt
            if auto and fmt in LABELED_FORMATS:
                # A file may mix plain and chat prompts (our CSV export does): each labeled row is read in
                # the labeled format its own fields show. A row missing a field stays in the file's format,
                # so the error names the field rather than guessing another format.
                own = detect_format(rec)
                if own in LABELED_FORMATS:
                    row_fmt = own
            rows.append(_normalise(row_fmt, rec, line, max_field_bytes))
        except FieldError as e:
            errors.append(RowError(name, line, e.field, e.message))
        if progress and total % PROGRESS_EVERY == 0:
            progress(min(line, estimate), 2 * estimate)
    return ParsedFile(name, fmt, total, rows, errors)
