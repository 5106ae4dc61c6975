"""The Project: opens a project folder's database, migrates it once, and owns every write to it."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core import paths
from studio.core.types import (
    Choice,
    Label,
    LabelState,
    Pair,
    Preference,
    Prompt,
    Response,
    RunStatus,
    Strength,
)
from studio.store.schema import applied_migrations, known_migrations, migration_set

if TYPE_CHECKING:
    from sqlite_utils import Database

BUSY_TIMEOUT_MS = 15_000
QUEUES = ("mine", "needs_more", "disagreements", "all")


class ProjectError(Exception):
    """A problem a user can fix (missing folder, newer schema, unknown pair...); the message says what."""


class StorageError(ProjectError):
    """The database could not take a write (disk full, read-only, I/O error); nothing of it was saved."""


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
        return StorageError(f"{where}: the project database is read-only here; nothing was saved by this change")
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
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    if str(db_file) != ":memory:":
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise ProjectError(f"{db_file}: could not switch the database to WAL mode (got {mode})")
        # WAL + NORMAL survives a killed process; only an OS crash can lose the last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class Project:
    """A project folder: `studio.db` plus `runs/`. Use `Project.create` or `Project.open`."""

    def __init__(self, folder: str | Path | None, conn: sqlite3.Connection):
        self.folder = Path(folder) if folder is not None else None
        self.conn = conn
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        """The sqlite-utils view of the connection, made on first use (it imports sqlite_utils)."""
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self.conn, execute_plugins=False)
        return self._db

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, folder: str | Path, name: str | None = None) -> Project:
        folder = Path(folder)
        if paths.db_path(folder).exists():
            raise ProjectError(f"{folder}: a project already exists here")
        if folder.exists() and not folder.is_dir():
            raise ProjectError(f"{folder}: exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / paths.RUNS_DIR).mkdir(exist_ok=True)
        project = cls._open_db(folder, paths.db_path(folder))
        if project.setting("name") is None:
            project.set_setting("name", name or folder.resolve().name)
        return project

    @classmethod
    def open(cls, folder: str | Path, create: bool = False) -> Project:
        folder = Path(folder)
        db_file = paths.db_path(folder)
        if not db_file.exists():
            if create:
                return cls.create(folder)
            if folder.is_file():
                raise ProjectError(f"{folder}: is a file; a project is a folder holding {paths.DB_NAME}")
            raise ProjectError(f"{folder}: no project here (no {paths.DB_NAME}); create one with "
                               f"`studio init {folder}`")
        (folder / paths.RUNS_DIR).mkdir(exist_ok=True)
        return cls._open_db(folder, db_file)

    @classmethod
    def memory(cls) -> Project:
        """An in-memory project, for tests of the schema and queries."""
        conn = connect(":memory:")
        return cls._from_conn(None, conn)

    @classmethod
    def _open_db(cls, folder: Path, db_file: Path) -> Project:
        try:
            conn = connect(db_file)
        except sqlite3.DatabaseError as e:
            raise ProjectError(f"{db_file}: not a readable project database ({e})") from None
        return cls._from_conn(folder, conn)

    @classmethod
    def _from_conn(cls, folder: Path | None, conn: sqlite3.Connection) -> Project:
        project = cls(folder, conn)
        try:
            project._migrate()
        except sqlite3.DatabaseError as e:
            conn.close()
            where = folder / paths.DB_NAME if folder else ":memory:"
            raise ProjectError(f"{where}: not a readable project database ({e})") from None
        except ProjectError:
            conn.close()
            raise
        return project

    def _migrate(self) -> None:
        applied = applied_migrations(self.conn)
        unknown = [n for n in applied if n not in known_migrations()]
        if unknown:
            where = self.folder or ":memory:"
            raise ProjectError(
                f"{where}: this project was made by a newer version of Preference Studio "
                f"(schema step {unknown[-1]} is unknown here); upgrade Preference Studio to open it")
        if len(applied) < len(known_migrations()):
            migration_set().apply(self.db)
        if self.setting("salt") is None:
            self.set_setting("salt", secrets.token_hex(8))

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA optimize")
        self.conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.setting("name") or (self.folder.name if self.folder else "memory")

    @property
    def schema_version(self) -> int:
        return len(applied_migrations(self.conn))

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction. BEGIN IMMEDIATE takes the write lock up front, so a GUI and a
        worker wait for each other (busy timeout) instead of failing on a lock upgrade."""
        if self.conn.in_transaction:
            sp = f"sp_{secrets.token_hex(6)}"
            self.conn.execute(f"SAVEPOINT {sp}")
            try:
                yield self.conn
            except BaseException:
                # SQLite rolls the whole transaction back by itself on some errors (disk full): then the
                # savepoint is gone and the outer write() reports the original error
                if self.conn.in_transaction:
                    self.conn.execute(f"ROLLBACK TO SAVEPOINT {sp}")
                    self.conn.execute(f"RELEASE SAVEPOINT {sp}")
                raise
            self.conn.execute(f"RELEASE SAVEPOINT {sp}")
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if is_storage_error(e):
                raise storage_error(self._where, e) from e
            raise
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as e:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            if is_storage_error(e):
                raise storage_error(self._where, e) from e
            raise

    @property
    def _where(self) -> str:
        return str(paths.db_path(self.folder)) if self.folder is not None else ":memory:"

    def query(self, sql: str, params: Sequence | dict = ()) -> list[dict]:
        cur = self.conn.execute(sql, params)
        cols = [d[0] for d in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: Sequence | dict = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ settings

    def setting(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM settings WHERE key = ?", (key,))
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        with self.write() as c:
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

    # ------------------------------------------------------------------ annotators

    def annotator_id(self, name: str) -> int:
        """The id of an annotator, created on first use."""
        name = name.strip()
        if not name:
            raise ProjectError("annotator: the name is empty")
        found = self.scalar("SELECT id FROM annotators WHERE name = ?", (name,))
        if found is not None:
            return int(found)
        with self.write() as c:
            c.execute("INSERT OR IGNORE INTO annotators (name, created_at) VALUES (?, ?)", (name, now_iso()))
        return int(self.scalar("SELECT id FROM annotators WHERE name = ?", (name,)))

    def annotators(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM annotators ORDER BY name")]

    # ------------------------------------------------------------------ prompts, responses, pairs

    def add_prompt(self, text: str | None = None, messages: Sequence[dict] | None = None,
                   split: str = "train", source: str | None = None) -> int:
        """Add a prompt (plain text or a chat message list), or return the id of the identical one."""
        if messages is not None:
            messages = [{"role": m["role"], "content": m["content"]} for m in messages]
            text = messages_to_text(messages)
        if not text:
            raise ProjectError("prompt: the text is empty")
        h = prompt_hash(text, messages)
        with self.write() as c:
            c.execute(
                "INSERT OR IGNORE INTO prompts (text, messages, split, source, hash, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (text, json.dumps(messages, ensure_ascii=False) if messages is not None else None,
                 split, source, h, now_iso()))
        return int(self.scalar("SELECT id FROM prompts WHERE hash = ?", (h,)))

    def add_response(self, prompt_id: int, text: str, model: str | None = None) -> int:
        if not text:
            raise ProjectError("response: the text is empty")
        h = content_hash(text)
        with self.write() as c:
            c.execute("INSERT OR IGNORE INTO responses (prompt_id, text, model, hash, created_at) "
                      "VALUES (?, ?, ?, ?, ?)", (prompt_id, text, model, h, now_iso()))
        return int(self.scalar("SELECT id FROM responses WHERE prompt_id = ? AND hash = ?", (prompt_id, h)))

    def add_pair(self, prompt_id: int, response_a_id: int, response_b_id: int, source: str | None = None,
                 meta: dict | None = None) -> int | None:
        """Add a pair; returns None when the same two responses to this prompt are already a pair."""
        if response_a_id == response_b_id:
            raise ProjectError("pair: both sides are the same response")
        with self.write() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO pairs (prompt_id, response_a_id, response_b_id, source, meta, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (prompt_id, response_a_id, response_b_id, source,
                 json.dumps(meta) if meta else None, now_iso()))
            return int(cur.lastrowid) if cur.rowcount else None

    def _prompt_from_row(self, r: dict) -> Prompt:
        return Prompt(id=r["id"], text=r["text"], messages=json.loads(r["messages"]) if r["messages"] else None,
                      split=r["split"], source=r["source"])

    def prompt(self, prompt_id: int) -> Prompt:
        rows = self.query("SELECT * FROM prompts WHERE id = ?", (prompt_id,))
        if not rows:
            raise ProjectError(f"prompt {prompt_id}: no such prompt")
        return self._prompt_from_row(rows[0])

    def response(self, response_id: int) -> Response:
        rows = self.query("SELECT id, prompt_id, text, model FROM responses WHERE id = ?", (response_id,))
        if not rows:
            raise ProjectError(f"response {response_id}: no such response")
        return Response(**rows[0])

    def pair(self, pair_id: int) -> Pair:
        rows = self.query("SELECT * FROM pairs WHERE id = ?", (pair_id,))
        if not rows:
            raise ProjectError(f"pair {pair_id}: no such pair")
        r = rows[0]
        return Pair(id=r["id"], prompt=self.prompt(r["prompt_id"]), a=self.response(r["response_a_id"]),
                    b=self.response(r["response_b_id"]), source=r["source"],
                    meta=json.loads(r["meta"]) if r["meta"] else {})

    def pair_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM pairs"))

    # ------------------------------------------------------------------ labeling

    def shown_left(self, pair_id: int, annotator: str) -> str:
        """Which response ('a' or 'b') this annotator sees on the left: random per annotator and pair,
        but stable across restarts (a keyed hash, so nothing has to be stored before labeling)."""
        digest = hashlib.blake2b(f"{annotator}\x00{pair_id}".encode(), digest_size=1,
                                 key=(self.setting("salt") or "").encode()).digest()
        return "a" if digest[0] & 1 else "b"

    def record_label(self, pair_id: int, annotator: str, choice: Choice | str, shown_left: str,
                     strength: Strength | str | None = None, rationale: str | None = None,
                     seconds: float | None = None) -> int:
        """Commit a label; an earlier label by the same annotator on this pair becomes 'replaced'."""
        choice = Choice(choice)
        strength = Strength(strength).value if strength else None
        if shown_left not in ("a", "b"):
            raise ProjectError(f"shown_left: expected 'a' or 'b', got {shown_left!r}")
        aid = self.annotator_id(annotator)
        with self.write() as c:
            if c.execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone() is None:
                raise ProjectError(f"pair {pair_id}: no such pair")
            prev = c.execute("SELECT id FROM labels WHERE pair_id = ? AND annotator_id = ? AND state = 'current'",
                             (pair_id, aid)).fetchone()
            ts = now_iso()
            if prev:
                c.execute("UPDATE labels SET state = 'replaced', ended_at = ? WHERE id = ?", (ts, prev[0]))
            cur = c.execute(
                "INSERT INTO labels (pair_id, annotator_id, choice, strength, rationale, shown_left, seconds, "
                "created_at, state, replaces_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'current', ?)",
                (pair_id, aid, choice.value, strength, rationale or None, shown_left, seconds, ts,
                 prev[0] if prev else None))
            return int(cur.lastrowid)

    def undo_label(self, label_id: int) -> int:
        """Undo a current label: it becomes 'undone' and the label it replaced (if any) is current
        again. Returns the pair id, so the caller can show that pair again."""
        with self.write() as c:
            row = c.execute("SELECT pair_id, state, replaces_id FROM labels WHERE id = ?", (label_id,)).fetchone()
            if row is None:
                raise ProjectError(f"label {label_id}: no such label")
            pair_id, state, replaces = row
            if state != LabelState.CURRENT.value:
                raise ProjectError(f"label {label_id}: is {state}, only a current label can be undone")
            c.execute("UPDATE labels SET state = 'undone', ended_at = ? WHERE id = ?", (now_iso(), label_id))
            if replaces is not None:
                c.execute("UPDATE labels SET state = 'current', ended_at = NULL WHERE id = ?", (replaces,))
        return int(pair_id)

    def last_label_id(self, annotator: str) -> int | None:
        """The annotator's most recent label that is still current (what Ctrl+Z undoes)."""
        aid = self.annotator_id(annotator)
        return self.scalar("SELECT id FROM labels WHERE annotator_id = ? AND state = 'current' "
                           "ORDER BY id DESC LIMIT 1", (aid,))

    def _label_from_row(self, r: dict) -> Label:
        return Label(id=r["id"], pair_id=r["pair_id"], annotator=r["annotator"], choice=Choice(r["choice"]),
                     strength=Strength(r["strength"]) if r["strength"] else None, rationale=r["rationale"],
                     shown_left=r["shown_left"], seconds=r["seconds"], created_at=r["created_at"],
                     state=LabelState(r["state"]))

    def label_history(self, pair_id: int) -> list[Label]:
        """Every label ever made on the pair, oldest first, including replaced and undone ones."""
        rows = self.query("SELECT l.*, a.name AS annotator FROM labels l JOIN annotators a ON a.id = l.annotator_id "
                          "WHERE l.pair_id = ? ORDER BY l.id", (pair_id,))
        return [self._label_from_row(r) for r in rows]

    def current_labels(self, pair_id: int) -> list[Label]:
        return [lab for lab in self.label_history(pair_id) if lab.state is LabelState.CURRENT]

    def current_label(self, pair_id: int, annotator: str) -> Label | None:
        for lab in self.current_labels(pair_id):
            if lab.annotator == annotator:
                return lab
        return None

    # ------------------------------------------------------------------ queues

    def _queue_sql(self, queue: str, annotator_id: int, split: str | None, source: str | None,
                   search: str | None, n_labels: int | None = None, scan: bool = False) -> tuple[str, list[Any]]:
        """WHERE clause of a queue. `n_labels` narrows needs_more to pairs with exactly that many labels
        (an equality the (n_labels, id) index serves in id order); `scan` picks forms that are fast when
        walking pairs in id order for the first match rather than counting them all."""
        if queue not in QUEUES:
            raise ProjectError(f"queue: unknown queue {queue!r}; known: {', '.join(QUEUES)}")
        where: list[str] = []
        params: list[Any] = []
        not_mine = ("NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = p.id AND l.annotator_id = ? "
                    "AND l.state = 'current')")
        if queue == "mine":
            where.append(not_mine)
            params.append(annotator_id)
        elif queue == "needs_more":
            if n_labels is not None:
                where.append("p.n_labels = ?")
                params.append(n_labels)
            else:
                where.append("p.n_labels >= 1 AND p.n_labels < ?")
                params.append(self.overlap_target)
            where.append(not_mine)
            params.append(annotator_id)
        elif queue == "disagreements" and scan:
            # per pair, through labels_by_pair; `+` keeps the planner walking pairs in id order
            where.append("+p.n_labels >= 2 AND (SELECT count(DISTINCT l.choice) FROM labels l WHERE l.pair_id = p.id "
                         "AND l.state = 'current' AND l.choice != 'skip') > 1")
        elif queue == "disagreements":
            where.append("p.id IN (SELECT pair_id FROM labels WHERE state = 'current' AND choice != 'skip' "
                         "GROUP BY pair_id HAVING count(DISTINCT choice) > 1)")
        if split:
            where.append("p.prompt_id IN (SELECT id FROM prompts WHERE split = ?)")
            params.append(split)
        if source:
            where.append("p.source = ?")
            params.append(source)
        if search:
            cond, args = search_condition(search)
            where.append(cond)
            params += args
        return " AND ".join(where) or "1", params

    def next_pair(self, annotator: str, queue: str = "mine", after: int | None = None, split: str | None = None,
                  source: str | None = None, search: str | None = None) -> int | None:
        """The id of the next pair in a queue after pair `after` (wrapping around), or None when empty.

        Without `after`, the scan starts after the annotator's latest label, so it never rescans the
        pairs already done (fast at a million pairs)."""
        aid = self.annotator_id(annotator)
        if after is None:
            after = self.scalar("SELECT pair_id FROM labels WHERE annotator_id = ? ORDER BY id DESC LIMIT 1",
                                (aid,)) or 0
        if queue == "needs_more":
            # One indexed query per label count below the target: a range on n_labels would make SQLite
            # sort every matching pair to find the first by id (tens of ms at a million pairs).
            conds = [self._queue_sql(queue, aid, split, source, search, n_labels=n)
                     for n in range(1, self.overlap_target)]
        else:
            conds = [self._queue_sql(queue, aid, split, source, search, scan=True)]
        for op in (">", "<="):
            if op == "<=" and not after:
                break
            hits = [self.scalar(f"SELECT p.id FROM pairs p WHERE p.id {op} ? AND {cond} ORDER BY p.id LIMIT 1",
                                [after, *params]) for cond, params in conds]
            hits = [h for h in hits if h is not None]
            if hits:
                return int(min(hits))
        return None

    def queue_count(self, annotator: str, queue: str = "mine", split: str | None = None,
                    source: str | None = None, search: str | None = None) -> int:
        aid = self.annotator_id(annotator)
        cond, params = self._queue_sql(queue, aid, split, source, search)
        return int(self.scalar(f"SELECT count(*) FROM pairs p WHERE {cond}", params))

    # ------------------------------------------------------------------ resolution

    def vote_rows(self, split: str | None = None) -> list[tuple]:
        """Per labeled pair: (pair_id, prompt_id, a_id, b_id, split, n_a, n_b, n_tie, n_both_bad, n_skip)."""
        sql = (
            "SELECT p.id, p.prompt_id, p.response_a_id, p.response_b_id, pr.split, "
            "sum(l.choice = 'a'), sum(l.choice = 'b'), sum(l.choice = 'tie'), sum(l.choice = 'both_bad'), "
            "sum(l.choice = 'skip') "
            "FROM labels l JOIN pairs p ON p.id = l.pair_id JOIN prompts pr ON pr.id = p.prompt_id "
            "WHERE l.state = 'current' " + ("AND pr.split = ? " if split else "") +
            "GROUP BY p.id ORDER BY p.id")
        return self.conn.execute(sql, (split,) if split else ()).fetchall()

    def resolve(self, split: str | None = None) -> tuple[list[Preference], dict[str, int]]:
        """Majority across annotators on each labeled pair (skips ignored). Returns the preferences and
        counts of what was left out: tie, both_bad, no_majority (a split vote), skipped (only skips)."""
        prefs: list[Preference] = []
        left_out = {"tie": 0, "both_bad": 0, "no_majority": 0, "skipped": 0}
        for pid, prompt_id, a_id, b_id, sp, na, nb, nt, nbb, _ns in self.vote_rows(split):
            votes = {"a": na, "b": nb, "tie": nt, "both_bad": nbb}
            total = na + nb + nt + nbb
            if total == 0:
                left_out["skipped"] += 1
                continue
            best = max(votes.values())
            winners = [k for k, v in votes.items() if v == best]
            if len(winners) > 1:
                left_out["no_majority"] += 1
            elif winners[0] in ("tie", "both_bad"):
                left_out[winners[0]] += 1
            else:
                chosen, rejected = (a_id, b_id) if winners[0] == "a" else (b_id, a_id)
                prefs.append(Preference(pid, prompt_id, chosen, rejected, sp, best, total))
        return prefs, left_out

    def resolved_preferences(self, split: str | None = None) -> list[Preference]:
        return self.resolve(split)[0]

    def counts(self) -> dict[str, int]:
        """Headline numbers for the window title bar and `studio stats`. `annotators` counts those with a
        label in force (opening the app registers its user, who has labeled nothing yet)."""
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM prompts), (SELECT count(*) FROM responses), (SELECT count(*) FROM pairs), "
            "(SELECT count(*) FROM pairs WHERE n_labels > 0), (SELECT count(*) FROM labels WHERE state = 'current'), "
            "(SELECT count(DISTINCT annotator_id) FROM labels WHERE state = 'current'), "
            "(SELECT count(*) FROM runs)").fetchone()
        keys = ("prompts", "responses", "pairs", "labeled_pairs", "labels", "annotators", "runs")
        return dict(zip(keys, (int(v) for v in row), strict=True))

    # ------------------------------------------------------------------ runs

    def create_run(self, method: str, model: str, config: dict, name: str | None = None,
                   parent_id: int | None = None, snapshot: Iterable[Preference] | None = None) -> int:
        """Create a queued run with its frozen snapshot of resolved preferences (taken now unless given)."""
        prefs = list(snapshot) if snapshot is not None else self.resolved_preferences()
        if Path(model).expanduser().is_dir():
            # A local folder is kept absolute: relative to this process's working directory it would name
            # another folder (or none) when the run is resumed or retried from elsewhere.
            model = str(Path(model).expanduser().resolve())
        with self.write() as c:
            cur = c.execute(
                "INSERT INTO runs (name, method, model, config, status, created_at, parent_id) "
                "VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                (name or "", method, model, json.dumps(config, sort_keys=True), now_iso(), parent_id))
            run_id = int(cur.lastrowid)
            if not name:
                c.execute("UPDATE runs SET name = ? WHERE id = ?", (f"{method}-{run_id}", run_id))
            c.executemany(
                "INSERT INTO run_preferences (run_id, pair_id, prompt_id, chosen_id, rejected_id, split) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, p.pair_id, p.prompt_id, p.chosen_id, p.rejected_id, p.split) for p in prefs])
        if self.folder is not None:
            paths.run_dir(self.folder, run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def run_snapshot(self, run_id: int, split: str | None = None) -> list[dict]:
        """The frozen training data of a run, with texts: prompt (text, messages), chosen, rejected."""
        sql = ("SELECT rp.pair_id, rp.split, pr.id AS prompt_id, pr.text AS prompt, pr.messages, "
               "c.text AS chosen, r.text AS rejected FROM run_preferences rp "
               "JOIN prompts pr ON pr.id = rp.prompt_id JOIN responses c ON c.id = rp.chosen_id "
               "JOIN responses r ON r.id = rp.rejected_id WHERE rp.run_id = ?" +
               (" AND rp.split = ?" if split else "") + " ORDER BY rp.pair_id")
        rows = self.query(sql, (run_id, split) if split else (run_id,))
        for r in rows:
            r["messages"] = json.loads(r["messages"]) if r["messages"] else None
        return rows

    def run(self, run_id: int) -> dict:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise ProjectError(f"run {run_id}: no such run")
        r = rows[0]
        r["config"] = json.loads(r["config"])
        return r

    def runs(self) -> list[dict]:
        rows = self.query("SELECT * FROM runs ORDER BY id")
        for r in rows:
            r["config"] = json.loads(r["config"])
        return rows

    RUN_FIELDS = frozenset({"name", "status", "device", "pid", "host", "step", "total_steps", "started_at",
                            "resumed_at",
                            "ended_at", "heartbeat_at", "error", "log_tail", "stop_requested", "config", "model"})

    def update_run(self, run_id: int, **fields: Any) -> None:
        bad = set(fields) - self.RUN_FIELDS
        if bad:
            raise ProjectError(f"run: unknown field(s) {', '.join(sorted(bad))}")
        if "status" in fields:
            fields["status"] = RunStatus(fields["status"]).value
        if "config" in fields and not isinstance(fields["config"], str):
            fields["config"] = json.dumps(fields["config"], sort_keys=True)
        sets = ", ".join(f"{k} = ?" for k in fields)
        if fields.get("ended_at"):
            # a worker session ends: its length joins the run's training time (pauses between a stop and
            # a resume are not counted), once, since resumed_at is cleared with it
            sets += (", active_seconds = active_seconds + coalesce(max(0, (julianday(?) - julianday(resumed_at)) "
                     "* 86400), 0), resumed_at = NULL")
            values: tuple = (*fields.values(), fields["ended_at"])
        else:
            values = tuple(fields.values())
        with self.write() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values, run_id))

    def request_stop(self, run_id: int) -> None:
        """Ask a running worker to stop after its current step (it saves the adapter first)."""
        with self.write() as c:
            c.execute("UPDATE runs SET stop_requested = 1, status = CASE WHEN status = 'running' "
                      "THEN 'stopping' ELSE status END WHERE id = ?", (run_id,))

    def stop_requested(self, run_id: int) -> bool:
        return bool(self.scalar("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)))

    def log_metrics(self, run_id: int, rows: Iterable[tuple[int, str, float]], at: float | None = None) -> None:
        """Write a batch of (step, name, value) metric rows in one transaction."""
        t = time.time() if at is None else at
        batch = [(run_id, int(s), n, None if v is None else float(v), t) for s, n, v in rows]
        if not batch:
            return
        with self.write() as c:
            c.executemany("INSERT INTO metrics (run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)", batch)

    def metrics(self, run_id: int, since_id: int = 0, names: Sequence[str] | None = None) -> list[tuple]:
        """Metric rows (id, step, name, value, time) of a run with id > since_id, oldest first."""
        sql = "SELECT id, step, name, value, time FROM metrics WHERE run_id = ? AND id > ?"
        params: list[Any] = [run_id, since_id]
        if names:
            sql += f" AND name IN ({', '.join('?' * len(names))})"
            params += list(names)
        return self.conn.execute(sql + " ORDER BY id", params).fetchall()

    def metrics_since(self, run_id: int, after_id: int = 0, limit: int | None = None) -> list[tuple]:
        """Metric rows (id, step, value, time, name) of a run with id > after_id, oldest first, at most
        `limit` of them: the monitor reads a long run in chunks so the window stays responsive."""
        sql = "SELECT id, step, value, time, name FROM metrics WHERE run_id = ? AND id > ? ORDER BY id"
        params: list[Any] = [run_id, after_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return self.conn.execute(sql, params).fetchall()

    def metric_count(self, run_id: int) -> int:
        return int(self.scalar("SELECT count(*) FROM metrics WHERE run_id = ?", (run_id,)))

    def truncate_run_after(self, run_id: int, step: int) -> None:
        """Drop a run's metric and sample rows after `step`: a run resumed from an earlier checkpoint redoes
        those steps, and its curves continue from the checkpoint instead of doubling back."""
        with self.write() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))
            c.execute("DELETE FROM samples WHERE run_id = ? AND step > ?", (run_id, step))

    def active_run_count(self) -> int:
        """Runs queued, running or stopping (what closing the app asks about)."""
        return int(self.scalar("SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'stopping')"))

    def claim_run(self, run_id: int, allowed: Sequence[str], pid: int, host: str) -> bool:
        """Move a run in one of the `allowed` states to 'running' for the worker (pid, host), atomically, so
        two workers can never train the same run. False when the run was not in an allowed state."""
        ts = now_iso()
        with self.write() as c:
            cur = c.execute(
                f"UPDATE runs SET status = 'running', pid = ?, host = ?, started_at = coalesce(started_at, ?), "
                f"resumed_at = ?, ended_at = NULL, error = NULL, stop_requested = 0, heartbeat_at = ? "
                f"WHERE id = ? AND status IN ({', '.join('?' * len(allowed))})",
                (pid, host, ts, ts, ts, run_id, *allowed))
            return cur.rowcount == 1

    def add_samples(self, run_id: int, step: int, samples: Iterable[dict]) -> None:
        """Store generations: dicts with prompt_id, prompt_text, text and optional meta."""
        t = time.time()
        rows = [(run_id, step, s.get("prompt_id"), s.get("prompt_text"), s["text"],
                 json.dumps(s["meta"]) if s.get("meta") else None, t) for s in samples]
        with self.write() as c:
            c.executemany("INSERT INTO samples (run_id, step, prompt_id, prompt_text, text, meta, time) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def samples(self, run_id: int, since_id: int = 0) -> list[dict]:
        rows = self.query("SELECT * FROM samples WHERE run_id = ? AND id > ? ORDER BY id", (run_id, since_id))
        for r in rows:
            r["meta"] = json.loads(r["meta"]) if r["meta"] else {}
        return rows

    def add_checkpoint(self, run_id: int, step: int, path: str | Path) -> None:
        with self.write() as c:
            c.execute("INSERT INTO checkpoints (run_id, step, path, created_at) VALUES (?, ?, ?, ?)",
                      (run_id, step, str(path), now_iso()))

    def mark_dead_runs(self) -> list[int]:
        """Mark failed the runs that say they are running but whose worker process is gone (killed
        outright). Returns their ids. Only checks pids on this machine."""
        import socket

        host = socket.gethostname()
        dead = []
        for r in self.query("SELECT id, pid, host FROM runs WHERE status IN ('running', 'stopping', 'queued') "
                            "AND pid IS NOT NULL"):
            if r["host"] not in (None, host):
                continue
            if not pid_alive(r["pid"]):
                dead.append(r["id"])
        for run_id in dead:
            tail = _read_tail(paths.log_path(self.folder, run_id)) if self.folder else None
            with self.write() as c:
                # the session's training time runs up to the worker's last sign of life
                c.execute("UPDATE runs SET status = 'failed', ended_at = ?, error = coalesce(error, ?), "
                          "active_seconds = active_seconds + coalesce(max(0, (julianday(heartbeat_at) - "
                          "julianday(resumed_at)) * 86400), 0), resumed_at = NULL, "
                          "log_tail = coalesce(?, log_tail) WHERE id = ? AND status IN ('running', 'stopping', "
                          "'queued')",
                          (now_iso(), "the worker process ended without reporting (killed or crashed)", tail,
                           run_id))
        return dead

    def delete_run(self, run_id: int, files: bool = True) -> None:
        run = self.run(run_id)
        if RunStatus(run["status"]).active and run["pid"] and pid_alive(run["pid"]):
            raise ProjectError(f"run {run_id}: is still {run['status']}; stop it before deleting")
        with self.write() as c:
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        if files and self.folder is not None:
            shutil.rmtree(paths.run_dir(self.folder, run_id), ignore_errors=True)


def search_condition(search: str) -> tuple[str, list[str]]:
    """SQL (over `pairs p`) for pairs whose prompt or either response contains `search`, with its params."""
    like = f"%{search}%"
    return ("(p.prompt_id IN (SELECT id FROM prompts WHERE text LIKE ?) OR EXISTS (SELECT 1 FROM responses r "
            "WHERE r.id IN (p.response_a_id, p.response_b_id) AND r.text LIKE ?))", [like, like])


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


def _read_tail(path: Path, max_bytes: int = 8000) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None
