"""Reading an import's file into records: plain or gzip-compressed JSON lines, a JSON array or CSV, each
record with its line (or CSV row) number. A file that is not text (Parquet, Arrow, zip, images...) is
refused by name; a record that cannot be read becomes a `FieldError` at its line, so one bad line does not
hide the others. `formats.parse_file` checks the records against the import formats."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from studio.store.db import ProjectError


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


class FileRejected(ProjectError):
    """The file as a whole cannot be imported (missing, a folder, empty, not text, fields that fit no
    format...), before any row is looked at; nothing was imported. `.error` says where and why."""

    def __init__(self, error: RowError):
        super().__init__(str(error))
        self.error = error


class FieldError(Exception):
    """A field-level problem in one row (reading it, or checking it against its format)."""

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


def name_suffix(path: Path) -> str:
    """The extension that says the container: `.jsonl` for `x.jsonl` and for `x.jsonl.gz`."""
    name = path.name.lower()
    return Path(name[:-3] if name.endswith(".gz") else name).suffix


def check_text(path: Path, raw: bytes, head: bytes) -> None:
    """Refuse a file that is not text before a parser misreads it (a CSV parser would complain about
    newlines in a Parquet file). `raw` is how the file starts, `head` how its (decompressed) text does."""
    for magic, what in _BINARY:
        if raw.startswith(magic) or head.startswith(magic):
            raise FileRejected(RowError(str(path), None, None, f"not a text file ({what}); {_TEXT_FORMS}"))
    if b"\x00" in head:
        raise FileRejected(RowError(str(path), None, None, f"not a text file (it holds NUL bytes: binary data); "
                                                           f"{_TEXT_FORMS}"))


def container(path: Path, head: bytes) -> str:
    suffix = name_suffix(path)
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


def _undecodable(line: int, bad: set[int], end: int | None = None) -> FieldError | None:
    hit = [n for n in range(line, (end or line) + 1) if n in bad]
    if hit:
        return FieldError(None, f"undecodable bytes (not UTF-8) on line {hit[0]}")
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
            yield n, FieldError(None, f"undecodable bytes (not UTF-8) on line {n}")
            continue
        try:
            # without its line break: a line cut short in a string otherwise reads "Invalid control
            # character" (the newline) instead of "Unterminated string"
            yield n, json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as e:
            yield n, FieldError(None, f"invalid JSON: {e.msg} (column {e.colno})")
        except RecursionError:
            yield n, _too_deep(None)


def _too_deep(field: str | None) -> FieldError:
    """JSON nested deeper than Python's parser goes (about a thousand levels): no preference data is."""
    return FieldError(field, f"invalid JSON: nested too deeply (over {sys.getrecursionlimit():,} levels)")


def records(path: Path, kind: str) -> Iterator[tuple[int, Any]]:
    """(line, record or FieldError) for every record in the file, in order."""
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


def count_lines(path: Path) -> int:
    """A quick upper bound on the rows of a file, so progress can be reported while reading it."""
    n = 0
    with _open_input(path) as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return max(n, 1)


def head(path: Path, size: int = 1 << 16) -> bytes:
    """The first bytes of the file, decompressed."""
    with _open_input(path) as f:
        return f.read(size)


def is_blank(path: Path) -> bool:
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
        yield line_of(pos), FieldError(None, "invalid JSON: expected an array of objects")
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
            yield line_of(e.pos), _undecodable(line_of(e.pos), bad) or FieldError(None, f"invalid JSON: {e.msg}")
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
            yield line_of(pos), FieldError(None, "invalid JSON: expected ',' or ']' after an array element")
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
        yield 1, FieldError(None, f"invalid CSV: {e}")
        return
    header = [h.strip() for h in header]
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start, FieldError(None, f"invalid CSV: {e}")
            return
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        err = _undecodable(line, bad, reader.line_num)
        if err:
            yield line, err
            continue
        if len(cells) != len(header):
            yield line, FieldError(None, f"expected {len(header)} cells as in the header, got {len(cells)}")
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
        except FieldError as e:
            yield line, e
            continue
        yield line, record
