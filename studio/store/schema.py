"""Schema history of a project database: numbered migrations, each applied in its own transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

MIGRATION_SET = "studio"
MIGRATIONS_TABLE = "_sqlite_migrations"  # sqlite-utils' table of applied migrations

# (name, function) in order. sqlite-utils' Migrations set is built from this list only when a
# migration is pending: importing sqlite_utils also imports pandas where it is installed (~0.7 s),
# which an already-current project need not pay when the window opens.
_MIGRATIONS: list[tuple[str, Callable[[Database], None]]] = []


def migration(name: str) -> Callable[[Callable[[Database], None]], Callable[[Database], None]]:
    def register(fn: Callable[[Database], None]) -> Callable[[Database], None]:
        _MIGRATIONS.append((name, fn))
        return fn

    return register


def migration_set() -> Migrations:
    """The sqlite-utils migration set (each migration applied in its own transaction)."""
    from sqlite_utils.migrations import Migrations

    migrations = Migrations(MIGRATION_SET)
    for name, fn in _MIGRATIONS:
        migrations(name=name)(fn)
    return migrations


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations applied to this database, read without sqlite-utils."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (MIGRATIONS_TABLE,)).fetchone()
    if not exists:
        return []
    return [r[0] for r in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ? "
                                       "ORDER BY rowid", (MIGRATION_SET,))]

CHOICES = "('a','b','tie','both_bad','skip')"
STRENGTHS = "('slight','clear','decisive')"


def run_script(db: Database, script: str) -> None:
    """Run SQL statements one by one: `executescript` would COMMIT the migration's transaction first."""
    pending = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--") and not pending.strip():
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            db.conn.execute(pending)
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:80]}")


@migration("m001_initial")
def m001_initial(db: Database) -> None:
    run_script(db,
        f"""
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT);

        CREATE TABLE annotators (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );

        -- text: the prompt, or for a chat its turns as "role: content" lines (search, display);
        -- messages: the chat as JSON [{{"role", "content"}}], NULL for a plain prompt.
        CREATE TABLE prompts (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL,
            messages TEXT,
            split TEXT NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'eval')),
            source TEXT,
            hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );

        CREATE TABLE responses (
            id INTEGER PRIMARY KEY,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            text TEXT NOT NULL,
            model TEXT,
            hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (prompt_id, hash)
        );

        -- n_labels: current non-skip labels on the pair, kept by triggers for the overlap queue.
        CREATE TABLE pairs (
            id INTEGER PRIMARY KEY,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            response_a_id INTEGER NOT NULL REFERENCES responses(id),
            response_b_id INTEGER NOT NULL REFERENCES responses(id),
            source TEXT,
            meta TEXT,
            n_labels INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            CHECK (response_a_id != response_b_id)
        );
        -- the same two responses to one prompt, in either order, are one pair
        CREATE UNIQUE INDEX pairs_key ON pairs (
            prompt_id, min(response_a_id, response_b_id), max(response_a_id, response_b_id));
        CREATE INDEX pairs_n_labels ON pairs (n_labels, id);

        -- Every label ever made; state 'current' marks the one in force per annotator and pair,
        -- older ones are 'replaced' (relabelled) or 'undone', so history is never lost.
        -- choice is in terms of the pair's A and B; shown_left says which was on the left.
        CREATE TABLE labels (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL REFERENCES pairs(id),
            annotator_id INTEGER NOT NULL REFERENCES annotators(id),
            choice TEXT NOT NULL CHECK (choice IN {CHOICES}),
            strength TEXT CHECK (strength IS NULL OR strength IN {STRENGTHS}),
            rationale TEXT,
            shown_left TEXT NOT NULL CHECK (shown_left IN ('a', 'b')),
            seconds REAL,
            created_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'current' CHECK (state IN ('current', 'replaced', 'undone')),
            replaces_id INTEGER REFERENCES labels(id),
            ended_at TEXT
        );
        CREATE UNIQUE INDEX labels_current ON labels (pair_id, annotator_id) WHERE state = 'current';
        CREATE INDEX labels_by_annotator ON labels (annotator_id, pair_id) WHERE state = 'current';
        CREATE INDEX labels_by_pair ON labels (pair_id);

        CREATE TRIGGER labels_count_insert AFTER INSERT ON labels
        WHEN NEW.state = 'current' AND NEW.choice != 'skip'
        BEGIN UPDATE pairs SET n_labels = n_labels + 1 WHERE id = NEW.pair_id; END;

        CREATE TRIGGER labels_count_end AFTER UPDATE OF state ON labels
        WHEN OLD.state = 'current' AND NEW.state != 'current' AND OLD.choice != 'skip'
        BEGIN UPDATE pairs SET n_labels = n_labels - 1 WHERE id = OLD.pair_id; END;

        CREATE TRIGGER labels_count_restore AFTER UPDATE OF state ON labels
        WHEN OLD.state != 'current' AND NEW.state = 'current' AND NEW.choice != 'skip'
        BEGIN UPDATE pairs SET n_labels = n_labels + 1 WHERE id = NEW.pair_id; END;

        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            method TEXT NOT NULL,
            model TEXT NOT NULL,
            config TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'stopping', 'done', 'failed', 'interrupted')),
            device TEXT,
            pid INTEGER,
            host TEXT,
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER,
            created_at TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT,
            heartbeat_at TEXT,
            error TEXT,
            log_tail TEXT,
            stop_requested INTEGER NOT NULL DEFAULT 0,
            parent_id INTEGER REFERENCES runs(id) ON DELETE SET NULL
        );

        -- the frozen training data of a run: resolved preferences at launch time
        CREATE TABLE run_preferences (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            pair_id INTEGER NOT NULL REFERENCES pairs(id),
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            chosen_id INTEGER NOT NULL REFERENCES responses(id),
            rejected_id INTEGER NOT NULL REFERENCES responses(id),
            split TEXT NOT NULL,
            PRIMARY KEY (run_id, pair_id)
        );

        -- long format: one row per (run, step, name); readers poll by id
        CREATE TABLE metrics (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            name TEXT NOT NULL,
            value REAL,
            time REAL NOT NULL
        );
        CREATE INDEX metrics_by_run ON metrics (run_id, id);

        -- generations sampled from the policy at a step, for fixed eval prompts
        CREATE TABLE samples (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            prompt_id INTEGER REFERENCES prompts(id),
            prompt_text TEXT,
            text TEXT NOT NULL,
            meta TEXT,
            time REAL NOT NULL
        );
        CREATE INDEX samples_by_run ON samples (run_id, id);

        CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            path TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        """
    )


@migration("m002_labels_by_annotator_time")
def m002_labels_by_annotator_time(db: Database) -> None:
    # next_pair starts after the annotator's latest label: without this index, finding it for an
    # annotator with few or no labels scans the whole labels table (tens of ms at a million labels).
    run_script(db, "CREATE INDEX labels_by_annotator_time ON labels (annotator_id, id);")


@migration("m003_metrics_by_name")
def m003_metrics_by_name(db: Database) -> None:
    # reading one metric of a run (best eval accuracy in the runs list, compare charts) would otherwise
    # scan every row of the run: ~150 ms at 1.4M rows
    run_script(db, "CREATE INDEX metrics_by_name ON metrics (run_id, name, id);")


@migration("m004_run_active_time")
def m004_run_active_time(db: Database) -> None:
    # elapsed time must not count the pause between a stop and a resume: each worker session adds its
    # own length to active_seconds when it ends; resumed_at is when the current session began
    run_script(db, """
        ALTER TABLE runs ADD COLUMN active_seconds REAL NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN resumed_at TEXT;
    """)


@migration("m005_logratio_names")
def m005_logratio_names(db: Database) -> None:
    # kl/chosen and kl/rejected were per-token log-ratios on the dataset's responses, not a KL: renamed,
    # so old runs draw on the same charts as new ones
    run_script(db, """
        UPDATE metrics SET name = 'logratio/chosen' WHERE name = 'kl/chosen';
        UPDATE metrics SET name = 'logratio/rejected' WHERE name = 'kl/rejected';
        UPDATE metrics SET name = 'eval/logratio/chosen' WHERE name = 'eval/kl/chosen';
        UPDATE metrics SET name = 'eval/logratio/rejected' WHERE name = 'eval/kl/rejected';
    """)


@migration("m006_generations")
def m006_generations(db: Database) -> None:
    # Responses sampled by a generation job (a run of method 'generate' or 'arena') keep their provenance
    # here, not on the response or the pair: the labeling view reads pairs and responses, and must not
    # learn who wrote what before the choice (never, for an arena). A response text two sources both wrote
    # is one response with two generations.
    run_script(db, """
        CREATE TABLE generations (
            id INTEGER PRIMARY KEY,
            job_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            response_id INTEGER NOT NULL REFERENCES responses(id),
            source TEXT NOT NULL,                -- 'base', a run's name or a model's: what results call it
            model TEXT NOT NULL,                 -- the base model (folder or hub id)
            adapter_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            adapter_step INTEGER,                -- the adapter's run step when the job was created
            temperature REAL NOT NULL,
            top_k INTEGER NOT NULL,
            top_p REAL NOT NULL,
            max_new_tokens INTEGER NOT NULL,
            seed INTEGER NOT NULL,               -- the sampling seed of the batch it was drawn in
            sample_index INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            finished INTEGER NOT NULL,           -- 1: ended at EOS / end of turn; 0: cut at max_new_tokens
            created_at TEXT NOT NULL
        );
        CREATE INDEX generations_by_job ON generations (job_id, prompt_id);
        CREATE INDEX generations_by_response ON generations (response_id);

        -- a blind comparison of sources on the same prompts; its labels are ordinary labels on its pairs
        CREATE TABLE arenas (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            job_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            sources TEXT NOT NULL,               -- JSON list of source names, in the order given
            created_at TEXT NOT NULL
        );

        -- pairs made of generations: candidates to label (arena_id NULL), or an arena's blind pairs;
        -- generation_a/b are the generations behind the pair's response A/B
        CREATE TABLE generated_pairs (
            pair_id INTEGER NOT NULL REFERENCES pairs(id) ON DELETE CASCADE,
            job_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            arena_id INTEGER REFERENCES arenas(id) ON DELETE CASCADE,
            generation_a_id INTEGER NOT NULL REFERENCES generations(id),
            generation_b_id INTEGER NOT NULL REFERENCES generations(id),
            created_at TEXT NOT NULL,
            UNIQUE (pair_id, generation_a_id, generation_b_id)
        );
        CREATE INDEX generated_pairs_by_pair ON generated_pairs (pair_id);
        CREATE INDEX generated_pairs_by_arena ON generated_pairs (arena_id, pair_id);
    """)


@migration("m007_pair_flags")
def m007_pair_flags(db: Database) -> None:
    # "flag for review": an annotator marks a pair (a broken prompt, a guideline question) with a note; clearing
    # a flag keeps its row (cleared_at), so the review history stays
    run_script(db, """
        CREATE TABLE pair_flags (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL REFERENCES pairs(id),
            annotator_id INTEGER NOT NULL REFERENCES annotators(id),
            note TEXT,
            created_at TEXT NOT NULL,
            cleared_at TEXT
        );
        CREATE INDEX pair_flags_open ON pair_flags (pair_id) WHERE cleared_at IS NULL;
    """)


@migration("m008_run_groups")
def m008_run_groups(db: Database) -> None:
    # seed groups: runs created together from one config with different seeds, compared as one (mean and
    # band); queue_position orders the runs that wait to train one after another (NULL: not queued so)
    run_script(db, """
        CREATE TABLE run_groups (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        ALTER TABLE runs ADD COLUMN group_id INTEGER REFERENCES run_groups(id) ON DELETE SET NULL;
        ALTER TABLE runs ADD COLUMN queue_position INTEGER;
        CREATE INDEX runs_by_queue_position ON runs (queue_position) WHERE queue_position IS NOT NULL;
    """)


IMPORT_PREFIX = "import:"
"""Annotators named `import:...` hold imported labels: the dataset's verdict, not a person's."""


def person_sql(name: str) -> str:
    """SQL condition: the annotator name `name` (an SQL expression) is a person's, not an `import:` one."""
    return f"substr({name}, 1, {len(IMPORT_PREFIX)}) != '{IMPORT_PREFIX}'"


def _person(annotator_id: str) -> str:
    """SQL condition: the annotator with this id is a person."""
    return f"(SELECT {person_sql('name')} FROM annotators WHERE id = {annotator_id})"


@migration("m009_n_labels_counts_people")
def m009_n_labels_counts_people(db: Database) -> None:
    # An imported label is the dataset's verdict: it must not make a pair "labeled" for the queues and the
    # progress, nor count toward the overlap target ("needs another label"). n_labels now counts the
    # current non-skip labels of people only; the triggers check the annotator's name.
    run_script(db, f"""
        DROP TRIGGER labels_count_insert;
        DROP TRIGGER labels_count_end;
        DROP TRIGGER labels_count_restore;

        CREATE TRIGGER labels_count_insert AFTER INSERT ON labels
        WHEN NEW.state = 'current' AND NEW.choice != 'skip' AND {_person("NEW.annotator_id")}
        BEGIN UPDATE pairs SET n_labels = n_labels + 1 WHERE id = NEW.pair_id; END;

        CREATE TRIGGER labels_count_end AFTER UPDATE OF state ON labels
        WHEN OLD.state = 'current' AND NEW.state != 'current' AND OLD.choice != 'skip'
            AND {_person("OLD.annotator_id")}
        BEGIN UPDATE pairs SET n_labels = n_labels - 1 WHERE id = OLD.pair_id; END;

        CREATE TRIGGER labels_count_restore AFTER UPDATE OF state ON labels
        WHEN OLD.state != 'current' AND NEW.state = 'current' AND NEW.choice != 'skip'
            AND {_person("NEW.annotator_id")}
        BEGIN UPDATE pairs SET n_labels = n_labels + 1 WHERE id = NEW.pair_id; END;
    """)
    imported = (f"FROM labels l JOIN annotators a ON a.id = l.annotator_id WHERE l.state = 'current' "
                f"AND l.choice != 'skip' AND NOT {person_sql('a.name')}")
    db.conn.execute(f"UPDATE pairs SET n_labels = n_labels - (SELECT count(*) {imported} AND l.pair_id = pairs.id) "
                    f"WHERE id IN (SELECT l.pair_id {imported})")


@migration("m010_staged_imports")
def m010_staged_imports(db: Database) -> None:
    # An import writes in short transactions, so labeling and training never wait long behind it. Its rows
    # carry its id and stay invisible (`imports.visible_sql`) until the import is published; a failed or
    # killed one is deleted again. `import_labels` holds the labels it adds to pairs already in the
    # project, applied once its own pairs are visible.
    run_script(db, """
        CREATE TABLE imports (
            id INTEGER PRIMARY KEY,
            file TEXT NOT NULL,
            format TEXT,
            annotator TEXT,
            pid INTEGER,
            host TEXT,
            state TEXT NOT NULL DEFAULT 'writing' CHECK (state IN ('writing', 'labeling', 'done', 'failed')),
            started_at TEXT NOT NULL,
            ended_at TEXT,
            first_prompt_id INTEGER NOT NULL,
            first_response_id INTEGER NOT NULL,
            first_pair_id INTEGER NOT NULL
        );
        ALTER TABLE prompts ADD COLUMN import_id INTEGER;
        ALTER TABLE responses ADD COLUMN import_id INTEGER;
        ALTER TABLE pairs ADD COLUMN import_id INTEGER;

        CREATE TABLE import_labels (
            id INTEGER PRIMARY KEY,
            import_id INTEGER NOT NULL,
            pair_id INTEGER NOT NULL,
            annotator_id INTEGER NOT NULL,
            choice TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX import_labels_by_import ON import_labels (import_id, id);
    """)


@migration("m011_annotator_sessions")
def m011_annotator_sessions(db: Database) -> None:
    # One row per open labeling window (annotator, process): a second window for the same annotator is
    # warned. A row whose process is gone is stale and removed by the next window.
    run_script(db, """
        CREATE TABLE annotator_sessions (
            id INTEGER PRIMARY KEY,
            annotator TEXT NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started_at TEXT NOT NULL
        );
    """)


# After the last migration, so that it is plain that every migration above has registered itself by now.
@migration("m012_pair_scores")
def m012_pair_scores(db: Database) -> None:
    # The informative queue. pair_scores keeps what each model said about a pair (kept per model, so a ranking
    # can combine several and a finished run's scores are never computed twice); a ranking is the order all
    # pairs had when it was made, with each one's score and parts, so the next pair is one indexed lookup. A
    # new ranking is written beside the current one (in short transactions) and takes over when complete.
    run_script(db, """
        CREATE TABLE pair_scores (
            pair_id INTEGER NOT NULL REFERENCES pairs(id) ON DELETE CASCADE,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,  -- the model: a reward or DPO run
            step INTEGER NOT NULL,               -- the run's step its adapter was saved at
            kind TEXT NOT NULL CHECK (kind IN ('reward', 'policy')),
            value REAL NOT NULL,                 -- margin of A over B: r(A) - r(B), or the implicit reward's
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, step, pair_id)
        );
        CREATE INDEX pair_scores_by_pair ON pair_scores (pair_id);

        CREATE TABLE rankings (
            id INTEGER PRIMARY KEY,
            job_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            scorers TEXT NOT NULL,               -- JSON [{"run_id", "step", "kind"}]: the models behind it
            pairs INTEGER NOT NULL DEFAULT 0,
            max_pair_id INTEGER NOT NULL DEFAULT 0,  -- pairs added since (larger ids) follow it in id order
            complete INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );

        -- A ranking in rank order (the queue walks it), and each pair's rank in pair order (where the queue goes
        -- on after a pair; the Data view's column). Two tables, each written in the order of its own key: a
        -- second index on one table would be filled in random order, rewriting most of its pages at every chunk.
        -- parts: NULL where the pair had no score from the model behind that part.
        CREATE TABLE pair_ranks (
            ranking_id INTEGER NOT NULL REFERENCES rankings(id),
            rank INTEGER NOT NULL,
            pair_id INTEGER NOT NULL,
            score REAL NOT NULL,
            uncertainty REAL,
            checkpoints REAL,
            policy REAL,
            labels REAL NOT NULL,
            n_labels INTEGER NOT NULL,
            PRIMARY KEY (ranking_id, rank)
        ) WITHOUT ROWID;
        CREATE TABLE pair_rank_of (
            ranking_id INTEGER NOT NULL REFERENCES rankings(id),
            pair_id INTEGER NOT NULL,
            rank INTEGER NOT NULL,
            PRIMARY KEY (ranking_id, pair_id)
        ) WITHOUT ROWID;
    """)


@migration("m013_frontier_points")
def m013_frontier_points(db: Database) -> None:
    # The reward/KL frontier: one point per policy (a run's adapter at a step, or the base model) measured on
    # samples for fixed prompts. `measure` identifies what makes points comparable (reward model, prompts,
    # samples, sampling settings, seed), so a new job only measures the points still missing.
    run_script(db, """
        CREATE TABLE frontier_points (
            id INTEGER PRIMARY KEY,
            measure TEXT NOT NULL,
            job_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            reward_model TEXT NOT NULL,          -- the reward model in words
            policy TEXT NOT NULL,                -- 'base', or 'run N'
            run_id INTEGER REFERENCES runs(id) ON DELETE CASCADE,  -- NULL for the base model
            step INTEGER NOT NULL,
            name TEXT NOT NULL,
            samples INTEGER NOT NULL,
            reward REAL NOT NULL,                -- mean reward of the samples
            reward_stderr REAL NOT NULL,
            kl REAL NOT NULL,                    -- mean KL(policy || reference) per sample, k3, nats
            kl_stderr REAL NOT NULL,
            kl_k1 REAL NOT NULL,                 -- the same with the k1 estimator
            response_tokens REAL NOT NULL,       -- mean sampled tokens
            finished REAL NOT NULL,              -- share of samples that ended (EOS / end of turn)
            created_at TEXT NOT NULL,
            UNIQUE (measure, policy, step)
        );
        CREATE INDEX frontier_points_by_run ON frontier_points (run_id);
    """)


# After the last migration, so that it is plain that every migration above has registered itself by now.
def known_migrations() -> list[str]:
    """Names of every migration this version knows, in order (a project with others is from a newer one)."""
    return [name for name, _ in _MIGRATIONS]
