"""Writing a checked import (`formats.ParsedFile`) into the project: bulk inserts in short transactions
whose rows stay invisible until the import is published (`imports`), so a failed or killed import changes
nothing and other writers wait a fraction of a second at most."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from studio.store.db import ProjectError, now_iso
from studio.store.formats import (
    LABELED_FORMATS,
    MAX_FIELD_BYTES,
    ImportErrors,
    ImportReport,
    ParsedFile,
    Progress,
    Row,
    parse_file,
)
from studio.store.imports import GAP_S
from studio.store.project import Project
from studio.store.schema import IMPORT_PREFIX

_SQL_VARS = 900  # ids per `IN (...)` lookup, below SQLite's smallest variable limit


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
