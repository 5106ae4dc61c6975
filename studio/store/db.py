"""The connection layer of a project database: errors, connection settings, transactions, settings.

Every SQL statement of the app lives in `studio.store`; the connection is private to it (`_conn`), and a
test checks that nothing outside the store executes SQL on it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from studio.core import paths

BUSY_TIMEOUT_MS = 15_000
POLL_MS = 5
"""While waiting for the write lock, try again at least this often. SQLite's own busy handler backs off to
100 ms between tries, so a writer waiting behind an import's short transactions could miss every gap
between them; polling finds the next gap."""


class ProjectError(Exception):
    """A problem a user can fix (missing folder, newer schema, unknown pair...); the message says what."""


class StorageError(ProjectError):
    """The database could not take a write (disk full, read-only, I/O error); nothing of it was saved."""


class ProjectReadOnly(StorageError):
    """The project's files cannot be written here (a read-only folder, file or disk): it was opened for
    reading only, and every change is refused."""


class ProjectBusy(StorageError):
    """Another process held the write lock for longer than the busy timeout (typically a large import).
    Nothing was written; the same write can simply be tried again later."""


_STORAGE_ERRORS = ("SQLITE_FULL", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")


def is_storage_error(e: BaseException) -> bool:
    """An SQLite failure of the storage itself (disk full, busy, I/O), not of the statement."""
    name = getattr(e, "sqlite_errorname", "") or ""
    return isinstance(e, sqlite3.OperationalError) and name.startswith(_STORAGE_ERRORS)


def storage_error(where: object, e: sqlite3.Error) -> StorageError:
    """The user-facing form of an SQLite failure during a write, saying what happened and what to do."""
    msg = str(e)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        return ProjectBusy(
            f"{where}: the project is busy: another process (an import or a training run) held the write lock "
            f"for more than {BUSY_TIMEOUT_MS // 1000} s; nothing was saved by this change, try it again")
    if "full" in low:
        return StorageError(f"{where}: the disk is full; nothing was saved by this change (the project is as it "
                            "was before it): free some space and try again")
    if "readonly" in low or "read-only" in low:
        return ProjectReadOnly(f"{where}: the project database is read-only here; nothing was saved by this change")
    return StorageError(f"{where}: the database could not save this change ({msg}); nothing of it was saved")


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def content_hash(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def prompt_hash(text: str, messages: Sequence[dict] | None) -> str:
    if messages is not None:
        return content_hash("chat", json.dumps(list(messages), ensure_ascii=False, sort_keys=True))
    return content_hash("text", text)


def messages_to_text(messages: Sequence[dict]) -> str:
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def connect(db_file: str | Path) -> sqlite3.Connection:
    """A connection tuned for a GUI and a training worker writing to one file at once."""
    conn = sqlite3.connect(str(db_file), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if str(db_file) != ":memory:":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise ProjectError(f"{db_file}: could not switch the database to WAL mode (got {mode})")
            # WAL + NORMAL survives a killed process; only an OS crash can lose the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()  # a file that is not a database is not left open
        raise
    return conn


def connect_read_only(db_file: str | Path) -> sqlite3.Connection:
    """A read-only connection to a project whose files cannot be written here. SQLite needs the WAL's
    shared-memory file to read a WAL database; when it cannot even create that (a read-only folder or
    disk), the file is opened as immutable: nothing can change it while it cannot be written."""
    uri = f"file:{urllib.parse.quote(str(Path(db_file).resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    return conn


def writable(db_file: Path) -> bool:
    """Whether this process may write the database and create its journal files next to it."""
    return (not db_file.exists() or os.access(db_file, os.W_OK)) and os.access(db_file.parent, os.W_OK | os.X_OK)


def hostname() -> str:
    """This machine's name, as recorded beside a pid (a run's worker, an import, an annotator session):
    a pid is only checked on the machine that wrote it. On POSIX, gethostname() is uname's node name;
    reading it from `os` keeps the socket module out of the window's start (~4 ms)."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        return uname().nodename
    import socket

    return socket.gethostname()


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid runs on this machine (a zombie, exited but not reaped, is gone)."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) is dead for our purposes
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


class StoreBase:
    """The connection, transactions and the settings table; the parts of the Project facade build on it."""

    def __init__(self, folder: str | Path | None, conn: sqlite3.Connection, read_only: bool = False):
        self.folder = Path(folder) if folder is not None else None
        self._conn = conn
        self.closed = False
        self.read_only = read_only
        """Opened for reading only (its files cannot be written here): every write raises ProjectReadOnly."""

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def _write(self, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """A short write transaction. BEGIN IMMEDIATE takes the write lock up front, so a GUI and a
        worker wait for each other (up to the busy timeout) instead of failing on a lock upgrade; with
        `wait=False` a held lock raises ProjectBusy at once (the GUI's main thread never waits). Nested,
        it is a savepoint of the outer transaction."""
        conn = self._conn
        if conn.in_transaction:
            sp = f"sp_{secrets.token_hex(6)}"
            conn.execute(f"SAVEPOINT {sp}")
            try:
                yield conn
            except BaseException:
                # SQLite rolls the whole transaction back by itself on some errors (disk full): then the
                # savepoint is gone and the outer write() reports the original error
                if conn.in_transaction:
                    conn.execute(f"ROLLBACK TO SAVEPOINT {sp}")
                    conn.execute(f"RELEASE SAVEPOINT {sp}")
                raise
            conn.execute(f"RELEASE SAVEPOINT {sp}")
            return
        if self.read_only:
            raise ProjectReadOnly(f"{self._where}: the project is open read-only (its files cannot be written "
                                  "here); nothing was saved")
        try:
            self._begin(wait)
        except sqlite3.OperationalError as e:
            if not wait and "lock" in str(e):
                raise ProjectBusy(f"{self._where}: the project is busy: another process (an import or a training "
                                  "run) is writing to it right now; nothing was saved by this change") from e
            if is_storage_error(e):
                raise storage_error(self._where, e) from e
            raise
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if is_storage_error(e):
                raise storage_error(self._where, e) from e
            raise

    def _begin(self, wait: bool) -> None:
        """BEGIN IMMEDIATE, trying every few milliseconds until the busy timeout (or once, without `wait`)."""
        conn = self._conn
        deadline = time.monotonic() + (BUSY_TIMEOUT_MS / 1000 if wait else 0)
        conn.execute(f"PRAGMA busy_timeout = {POLL_MS if wait else 0}")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as e:
                    if not is_storage_error(e) or "lock" not in str(e) or time.monotonic() >= deadline:
                        raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several store calls into one write transaction: all of them are saved, or none."""
        with self._write():
            yield

    @property
    def _where(self) -> str:
        return str(paths.db_path(self.folder)) if self.folder is not None else ":memory:"

    def _query(self, sql: str, params: Sequence | dict = ()) -> list[dict]:
        cur = self._conn.execute(sql, params)
        cols = [d[0] for d in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def _scalar(self, sql: str, params: Sequence | dict = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ settings

    def setting(self, key: str, default: str | None = None) -> str | None:
        value = self._scalar("SELECT value FROM settings WHERE key = ?", (key,))
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        with self._write() as c:
            c.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, str(value)))

    @property
    def overlap_target(self) -> int:
        """How many annotators each pair should get (the 'needs another label' queue)."""
        return int(self.setting("overlap_target", "2") or 2)

    @overlap_target.setter
    def overlap_target(self, n: int) -> None:
        if int(n) < 1:
            raise ProjectError("overlap_target: must be at least 1")
        self.set_setting("overlap_target", str(int(n)))

    @property
    def guidelines(self) -> str:
        """The project's labeling guidelines (markdown), shown beside the labeling view; '' when none."""
        return self.setting("guidelines", "") or ""

    @guidelines.setter
    def guidelines(self, text: str) -> None:
        self.set_setting("guidelines", text)

    @property
    def show_length_counts(self) -> bool:
        """Whether the labeling view shows each response's character and word counts (they can pull
        annotators towards the longer answer; a project may hide them)."""
        return self.setting("show_length_counts", "1") != "0"

    @show_length_counts.setter
    def show_length_counts(self, shown: bool) -> None:
        # every change is kept with its time, so the bias audit can compare labels made with and without
        # the counts on screen (labels carry their created_at)
        if bool(shown) == self.show_length_counts and self.setting("show_length_counts") is not None:
            return
        with self._write():
            history = self.length_count_changes()
            history.append({"at": now_iso(), "shown": bool(shown)})
            self.set_setting("length_counts_history", json.dumps(history))
            self.set_setting("show_length_counts", "1" if shown else "0")

    def length_count_changes(self) -> list[dict]:
        """When the length counts were turned on or off: [{"at": ISO time, "shown": bool}], oldest first."""
        try:
            history = json.loads(self.setting("length_counts_history", "[]") or "[]")
        except ValueError:
            return []
        return [h for h in history if isinstance(h, dict) and "at" in h and "shown" in h]
