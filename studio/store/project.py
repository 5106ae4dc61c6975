"""The Project: opens a project folder's database, migrates it once, and owns every write to it.

One facade over the store's parts: the connection and settings (`db.StoreBase`), the labeling half
(`pairs.PairsStore`: prompts, responses, pairs, labels, queues, resolution) and the training half
(`runs.RunsStore`: runs, metrics, samples, checkpoints).
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core import paths
from studio.store.db import (
    BUSY_TIMEOUT_MS,
    ProjectBusy,
    ProjectError,
    ProjectReadOnly,
    StorageError,
    connect,
    connect_read_only,
    now_iso,
    pid_alive,
    writable,
)
from studio.store.imports import ImportsStore, all_visible_or, visible_count_sql, visible_sql
from studio.store.pairs import QUEUES, LabelConflict, PairFilter, PairRow, PairsStore
from studio.store.runs import RunsStore
from studio.store.schema import applied_migrations, known_migrations, migration_set
from studio.store.sessions import SessionsStore

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["BUSY_TIMEOUT_MS", "QUEUES", "LabelConflict", "PairFilter", "PairRow", "Project", "ProjectBusy",
           "ProjectError", "ProjectReadOnly", "StorageError", "now_iso", "pid_alive"]


class Project(PairsStore, RunsStore, ImportsStore, SessionsStore):
    """A project folder: `studio.db` plus `runs/`. Use `Project.create` or `Project.open`.

    Opened where its files cannot be written, it is read-only (`read_only`): everything can be read, and
    every write raises ProjectReadOnly."""

    def __init__(self, folder: str | Path | None, conn: sqlite3.Connection, read_only: bool = False):
        super().__init__(folder, conn, read_only)
        self._db: Database | None = None
        self.found_dead_runs: list[int] = []
        """Runs this opening found dead (their worker process gone) and marked failed."""

    @property
    def _sqlite_utils(self) -> Database:
        """The sqlite-utils view of the connection, made on first use (it imports sqlite_utils)."""
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self._conn, execute_plugins=False)
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
        with contextlib.suppress(OSError):  # a read-only project has no runs/ to create
            (folder / paths.RUNS_DIR).mkdir(exist_ok=True)
        return cls._open_db(folder, db_file)

    @classmethod
    def memory(cls) -> Project:
        """An in-memory project, for tests of the schema and queries."""
        conn = connect(":memory:")
        return cls._from_conn(None, conn)

    @classmethod
    def _open_db(cls, folder: Path, db_file: Path) -> Project:
        read_only = not writable(db_file)
        try:
            conn = connect_read_only(db_file) if read_only else connect(db_file)
        except sqlite3.DatabaseError as e:
            raise ProjectError(f"{db_file}: not a readable project database ({e})") from None
        return cls._from_conn(folder, conn, read_only)

    @classmethod
    def _from_conn(cls, folder: Path | None, conn: sqlite3.Connection, read_only: bool = False) -> Project:
        project = cls(folder, conn, read_only)
        try:
            project._migrate()
            if not read_only:
                project._tidy_up()
        except sqlite3.DatabaseError as e:
            conn.close()
            where = folder / paths.DB_NAME if folder else ":memory:"
            raise ProjectError(f"{where}: not a readable project database ({e})") from None
        except ProjectError:
            conn.close()
            raise
        return project

    def _migrate(self) -> None:
        applied = applied_migrations(self._conn)
        unknown = [n for n in applied if n not in known_migrations()]
        if unknown:
            where = self.folder or ":memory:"
            raise ProjectError(
                f"{where}: this project was made by a newer version of Preference Studio "
                f"(schema step {unknown[-1]} is unknown here); upgrade Preference Studio to open it")
        if len(applied) < len(known_migrations()):
            if self.read_only:
                raise ProjectError(
                    f"{self.folder}: this project was made by an older version of Preference Studio and must be "
                    "upgraded before it can be read, but its files cannot be written here (read-only); open it "
                    "once where it can be written")
            migration_set().apply(self._sqlite_utils)
        if self.setting("salt") is None and not self.read_only:
            self.set_setting("salt", secrets.token_hex(8))

    def _tidy_up(self) -> None:
        """Wherever a project is opened (CLI, GUI, worker), what killed processes left is found first: a run
        whose worker is gone is marked failed, a killed import's invisible rows are deleted. On a full disk
        (or behind a long-held lock) this waits for the next opening; the project opens all the same."""
        with contextlib.suppress(StorageError):
            self.found_dead_runs = self.mark_dead_runs()
        with contextlib.suppress(StorageError):
            self.recover_imports()

    def close(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA optimize")
        self._conn.close()
        self.closed = True

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.setting("name") or (self.folder.name if self.folder else "memory")

    @property
    def schema_version(self) -> int:
        return len(applied_migrations(self._conn))

    def integrity_check(self) -> str:
        """SQLite's own check of the file: 'ok', or what is damaged."""
        return str(self._scalar("PRAGMA integrity_check"))

    def counts(self) -> dict[str, int]:
        """Headline numbers for the window title bar and `studio stats`. `labeled_pairs` counts pairs
        labeled by people (imported labels are the dataset's verdict); `annotators` counts those with a
        label in force, imported ones included."""
        # plain counts while no import is unpublished (see visible_count_sql): checking each row's import
        # was ~17 ms of the window's start on 100k pairs
        labels, p = "FROM labels l WHERE l.state = 'current'", visible_sql("p")
        checked = f"FROM labels l JOIN pairs p ON p.id = l.pair_id WHERE l.state = 'current' AND {p}"
        people = "SELECT count(DISTINCT l.annotator_id) "
        row = self._conn.execute(
            f"SELECT {visible_count_sql('prompts', 'pr')}, {visible_count_sql('responses', 'r')}, "
            f"{visible_count_sql('pairs', 'p')}, {visible_count_sql('pairs', 'p', 'n_labels > 0')}, "
            f"{all_visible_or(f'SELECT count(*) {labels}', f'SELECT count(*) {checked}')}, "
            f"{all_visible_or(people + labels, people + checked)}, "
            "(SELECT count(*) FROM runs)").fetchone()
        keys = ("prompts", "responses", "pairs", "labeled_pairs", "labels", "annotators", "runs")
        return dict(zip(keys, (int(v) for v in row), strict=True))
