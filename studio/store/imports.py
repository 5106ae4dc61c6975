"""Staged imports: an import writes in short transactions, and its rows stay invisible until it is published.

A large import must neither block labeling and training (a write transaction holds the project's write
lock) nor leave half a file behind when it fails or is killed. So the import's rows go into the real
tables in transactions of a fraction of a second each, marked with the import's id; every query of the
store shows a row only when its import is published (`visible_sql`). Publishing is one tiny
transaction. A failed import deletes its rows again; one whose process was killed is found by its pid
(the next time the project is opened, or by the next import) and deleted the same way.

States of an import: writing -> labeling (published; labels for pairs that were already in the project
are being added) -> done; or writing -> failed (its rows are being deleted; then the import row goes).
"""

from __future__ import annotations

import os
import time

from studio.store.db import ProjectBusy, ProjectError, StoreBase, hostname, now_iso, pid_alive

GAP_S = 0.02
"""Pause between two of an import's transactions, so a writer waiting for the lock (it tries every few
milliseconds) gets it: a labeling view or a training worker waits at most one transaction."""

DELETE_CHUNK = 5000
"""Ids per delete transaction when a failed import's rows are removed."""

_ACTIVE: set[int] = set()
"""Imports this process is writing now (any thread): not left over, even though their pid is alive."""

_PUBLISHED = "SELECT id FROM imports WHERE state IN ('labeling', 'done')"
_UNPUBLISHED = "SELECT id FROM imports WHERE state IN ('writing', 'failed')"


def visible_sql(alias: str) -> str:
    """SQL condition: the row of prompts, responses or pairs under `alias` is not part of an unpublished
    import. Every read of those tables in the store applies it."""
    return f"({alias}.import_id IS NULL OR {alias}.import_id IN ({_PUBLISHED}))"


def all_visible_or(fast: str, checked: str) -> str:
    """A scalar subquery: `fast` while no import is unpublished (nearly always: then every row is
    visible), else `checked`, the same query applying `visible_sql`. Both are in one statement, so they
    read the same snapshot."""
    return f"(CASE WHEN EXISTS ({_UNPUBLISHED}) THEN ({checked}) ELSE ({fast}) END)"


def visible_count_sql(table: str, alias: str, where: str = "") -> str:
    """A scalar subquery: how many rows of `table` (as `alias`, optionally also matching `where`) are
    visible. The plain count takes microseconds on 100k pairs where checking each row's import takes
    ~9 ms (the window's title bar reads these at start)."""
    plain = f"SELECT count(*) FROM {table} {alias}" + (f" WHERE {where}" if where else "")
    extra = f" AND {where}" if where else ""
    return all_visible_or(plain, f"SELECT count(*) FROM {table} {alias} WHERE {visible_sql(alias)}{extra}")


def unpublished_sql(alias: str) -> str:
    """SQL condition: the row belongs to an import that is still being written (or deleted)."""
    return f"{alias}.import_id IN ({_UNPUBLISHED})"


class ImportsStore(StoreBase):
    """The bookkeeping of staged imports (the rows themselves are written by `import_writing.write_parsed`)."""

    def begin_import(self, file: str, fmt: str, annotator: str | None) -> int:
        """Register an import of `file` by this process and return its id. Refuses (ProjectBusy) while
        another import is writing to the project: imports run one at a time."""
        self.recover_imports()
        host, pid = hostname(), os.getpid()
        with self._write() as c:
            for other, name, other_pid, other_host in c.execute(
                    "SELECT id, file, pid, host FROM imports WHERE state IN ('writing', 'labeling')"):
                raise ProjectBusy(f"{self._where}: another import ({name}, pid {other_pid} on {other_host}) is "
                                  f"writing to this project; try again when it has finished (import {other})")
            cur = c.execute(
                "INSERT INTO imports (file, format, annotator, pid, host, state, started_at, first_prompt_id, "
                "first_response_id, first_pair_id) VALUES (?, ?, ?, ?, ?, 'writing', ?, "
                "(SELECT coalesce(max(id), 0) + 1 FROM prompts), (SELECT coalesce(max(id), 0) + 1 FROM responses), "
                "(SELECT coalesce(max(id), 0) + 1 FROM pairs))",
                (file, fmt, annotator, pid, host, now_iso()))
            import_id = int(cur.lastrowid)
        _ACTIVE.add(import_id)
        return import_id

    def publish_import(self, import_id: int) -> None:
        """Make every row of the import visible at once (the import's commit point)."""
        with self._write() as c:
            staged = c.execute("SELECT 1 FROM import_labels WHERE import_id = ? LIMIT 1", (import_id,)).fetchone()
            cur = c.execute("UPDATE imports SET state = ?, ended_at = ? WHERE id = ? AND state = 'writing'",
                            ("labeling" if staged else "done", now_iso(), import_id))
            if cur.rowcount != 1:
                raise ProjectError(f"{self._where}: import {import_id} was cancelled meanwhile; nothing was imported")
        if not staged:
            _ACTIVE.discard(import_id)

    def apply_import_labels(self, import_id: int, chunk: int = DELETE_CHUNK) -> int:
        """Add a published import's labels for pairs that were already in the project, in short transactions,
        unless the annotator has a current label on the pair by then. Returns how many were added."""
        added = 0
        while True:
            with self._write() as c:
                ids = c.execute("SELECT id FROM import_labels WHERE import_id = ? ORDER BY id LIMIT ?",
                                (import_id, chunk)).fetchall()
                if not ids:
                    c.execute("UPDATE imports SET state = 'done' WHERE id = ?", (import_id,))
                    _ACTIVE.discard(import_id)
                    return added
                span = (import_id, ids[0][0], ids[-1][0])
                cur = c.execute(
                    "INSERT INTO labels (pair_id, annotator_id, choice, shown_left, created_at) "
                    "SELECT s.pair_id, s.annotator_id, s.choice, 'a', s.created_at FROM import_labels s "
                    "WHERE s.import_id = ? AND s.id BETWEEN ? AND ? AND NOT EXISTS (SELECT 1 FROM labels l "
                    "WHERE l.pair_id = s.pair_id AND l.annotator_id = s.annotator_id AND l.state = 'current')", span)
                added += max(cur.rowcount, 0)
                c.execute("DELETE FROM import_labels WHERE import_id = ? AND id BETWEEN ? AND ?", span)
            time.sleep(GAP_S)

    def abort_import(self, import_id: int) -> None:
        """Forget an unpublished import: mark it failed (its rows stay invisible), then delete its rows."""
        _ACTIVE.discard(import_id)
        with self._write() as c:
            c.execute("UPDATE imports SET state = 'failed', ended_at = ? WHERE id = ? AND state = 'writing'",
                      (now_iso(), import_id))
        self._delete_import_rows(import_id)

    def _delete_import_rows(self, import_id: int) -> None:
        row = self._conn.execute("SELECT first_prompt_id, first_response_id, first_pair_id FROM imports "
                                 "WHERE id = ? AND state = 'failed'", (import_id,)).fetchone()
        if row is None:
            return
        first_prompt, first_response, first_pair = row
        # Children first: labels on the import's pairs, pairs, responses, prompts. Nothing outside the import
        # refers to its rows (a row someone else took up was given back to the project, import_id NULL), so
        # the foreign-key checks are off here: with them, deleting a response scans every pair (its
        # response columns have no index), minutes for a large import.
        self._conn.execute("PRAGMA foreign_keys = OFF")
        try:
            self._delete_rows(import_id, first_prompt, first_response, first_pair)
        finally:
            self._conn.execute("PRAGMA foreign_keys = ON")

    def _delete_rows(self, import_id: int, first_prompt: int, first_response: int, first_pair: int) -> None:
        steps = (
            ("pairs", first_pair, "DELETE FROM labels WHERE pair_id IN (SELECT id FROM pairs WHERE import_id = ? "
                                  "AND id BETWEEN ? AND ?)"),
            ("pairs", first_pair, "DELETE FROM pairs WHERE import_id = ? AND id BETWEEN ? AND ?"),
            ("responses", first_response, "DELETE FROM responses WHERE import_id = ? AND id BETWEEN ? AND ?"),
            ("prompts", first_prompt, "DELETE FROM prompts WHERE import_id = ? AND id BETWEEN ? AND ?"),
        )
        for table, first, sql in steps:
            top = int(self._scalar(f"SELECT coalesce(max(id), 0) FROM {table}"))
            for lo in range(first, top + 1, DELETE_CHUNK):
                with self._write() as c:
                    c.execute(sql, (import_id, lo, lo + DELETE_CHUNK - 1))
                time.sleep(GAP_S)
        with self._write() as c:
            c.execute("DELETE FROM import_labels WHERE import_id = ?", (import_id,))
            # the annotator the import made for its labels, unless someone else's labels use that name too
            c.execute("DELETE FROM annotators WHERE name = (SELECT annotator FROM imports WHERE id = ?) AND NOT "
                      "EXISTS (SELECT 1 FROM labels l WHERE l.annotator_id = annotators.id)", (import_id,))
            c.execute("DELETE FROM imports WHERE id = ?", (import_id,))

    def recover_imports(self) -> list[int]:
        """Finish what imports killed on this machine left: delete the rows of one killed while writing (it
        was never visible), add the remaining labels of one killed after it was published. Returns their ids."""
        if self.read_only:
            return []
        unfinished = self._conn.execute("SELECT id, state, pid, host FROM imports WHERE state != 'done'").fetchall()
        if not unfinished:
            return []  # nearly always
        host, me = hostname(), os.getpid()
        found = []
        for import_id, state, pid, on in unfinished:
            if on != host:
                continue  # its process cannot be checked from here
            gone = not pid_alive(pid) or (pid == me and import_id not in _ACTIVE)
            if state == "writing" and gone:
                self.abort_import(import_id)
            elif state == "failed" and (gone or pid == me):
                self._delete_import_rows(import_id)
            elif state == "labeling" and gone:
                self.apply_import_labels(import_id)
            else:
                continue
            found.append(import_id)
        return found
