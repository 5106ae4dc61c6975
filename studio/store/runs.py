"""Runs and what they write: frozen snapshots, status, metrics, samples, checkpoints."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core import metrics as M
from studio.core import paths
from studio.core.types import Preference, RunStatus
from studio.store.db import ProjectError, StoreBase, hostname, now_iso, pid_alive


@dataclass(frozen=True)
class RunPace:
    """How fast a run trained, for estimating another: its median tokens/s and wall seconds per optimizer step
    (evaluations included; None with a single logged step), with its name and config."""

    run: str
    config: dict
    tokens_per_second: float
    seconds_per_step: float | None


class RunsStore(StoreBase):
    """The training half of a project. A run's snapshot is taken from the labeling half's
    `resolved_preferences` (PairsStore), both joined in the Project facade."""

    def create_run(self, method: str, model: str, config: dict, name: str | None = None,
                   parent_id: int | None = None, snapshot: Iterable[Preference] | None = None) -> int:
        """Create a queued run with its frozen snapshot of resolved preferences (taken now unless given)."""
        prefs = list(snapshot) if snapshot is not None else self.resolved_preferences()
        if Path(model).expanduser().is_dir():
            # A local folder is kept absolute: relative to this process's working directory it would name
            # another folder (or none) when the run is resumed or retried from elsewhere.
            model = str(Path(model).expanduser().resolve())
        with self._write() as c:
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
        rows = self._query(sql, (run_id, split) if split else (run_id,))
        for r in rows:
            r["messages"] = json.loads(r["messages"]) if r["messages"] else None
        return rows

    def run(self, run_id: int) -> dict:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise ProjectError(f"run {run_id}: no such run")
        r = rows[0]
        r["config"] = json.loads(r["config"])
        return r

    def runs(self) -> list[dict]:
        rows = self._query("SELECT * FROM runs ORDER BY id")
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
        with self._write() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values, run_id))

    def request_stop(self, run_id: int) -> None:
        """Ask a running worker to stop after its current step (it saves the adapter first)."""
        with self._write() as c:
            c.execute("UPDATE runs SET stop_requested = 1, status = CASE WHEN status = 'running' "
                      "THEN 'stopping' ELSE status END WHERE id = ?", (run_id,))

    def stop_requested(self, run_id: int) -> bool:
        return bool(self._scalar("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)))

    def log_metrics(self, run_id: int, rows: Iterable[tuple[int, str, float]], at: float | None = None) -> None:
        """Write a batch of (step, name, value) metric rows in one transaction."""
        t = time.time() if at is None else at
        batch = [(run_id, int(s), n, None if v is None else float(v), t) for s, n, v in rows]
        if not batch:
            return
        with self._write() as c:
            c.executemany("INSERT INTO metrics (run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)", batch)

    def metrics(self, run_id: int, since_id: int = 0, names: Sequence[str] | None = None) -> list[tuple]:
        """Metric rows (id, step, name, value, time) of a run with id > since_id, oldest first."""
        sql = "SELECT id, step, name, value, time FROM metrics WHERE run_id = ? AND id > ?"
        params: list[Any] = [run_id, since_id]
        if names:
            sql += f" AND name IN ({', '.join('?' * len(names))})"
            params += list(names)
        return self._conn.execute(sql + " ORDER BY id", params).fetchall()

    def metrics_since(self, run_id: int, after_id: int = 0, limit: int | None = None,
                      names: Sequence[str] | None = None) -> list[tuple]:
        """Metric rows (id, step, value, time, name) of a run with id > after_id, oldest first, at most
        `limit` of them, only those of the metrics `names` when given: the monitor reads a long run in
        chunks so the window stays responsive. With names, the (run_id, id) index is walked in id order
        and filtered: no sort, and the rows of other metrics never become Python objects."""
        sql = "SELECT id, step, value, time, name FROM metrics WHERE run_id = ? AND id > ?"
        params: list[Any] = [run_id, after_id]
        if names:
            sql += f" AND name IN ({', '.join('?' * len(names))})"
            params += list(names)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return self._conn.execute(sql, params).fetchall()

    def metric_count(self, run_id: int) -> int:
        return int(self._scalar("SELECT count(*) FROM metrics WHERE run_id = ?", (run_id,)))

    def truncate_run_after(self, run_id: int, step: int) -> None:
        """Drop a run's metric and sample rows after `step`: a run resumed from an earlier checkpoint redoes
        those steps, and its curves continue from the checkpoint instead of doubling back."""
        with self._write() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))
            c.execute("DELETE FROM samples WHERE run_id = ? AND step > ?", (run_id, step))

    def active_run_count(self) -> int:
        """Runs queued, running or stopping (what closing the app asks about)."""
        return int(self._scalar("SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'stopping')"))

    def recent_pace(self, model: str | None = None, last: int = 20) -> RunPace | None:
        """How fast the newest run that logged throughput went over its last `last` logged steps, preferring
        runs of `model`. None when no run has logged throughput yet."""
        sql = ("SELECT r.id, r.name, r.config FROM runs r WHERE {where} EXISTS (SELECT 1 FROM metrics m "
               "WHERE m.run_id = r.id AND m.name = ?) ORDER BY r.id DESC LIMIT 1")
        found = None
        if model:
            found = self._conn.execute(sql.format(where="r.model = ? AND"), (model, M.TOKENS_PER_SECOND)).fetchone()
        found = found or self._conn.execute(sql.format(where=""), (M.TOKENS_PER_SECOND,)).fetchone()
        if found is None:
            return None
        rows = self._conn.execute(
            "SELECT step, value, time FROM metrics WHERE run_id = ? AND name = ? AND value IS NOT NULL "
            "ORDER BY id DESC LIMIT ?", (found[0], M.TOKENS_PER_SECOND, int(last))).fetchall()
        if not rows:
            return None
        values = sorted(r[1] for r in rows)
        (last_step, _, last_time), (first_step, _, first_time) = rows[0], rows[-1]
        per_step = (last_time - first_time) / (last_step - first_step) if last_step > first_step else None
        return RunPace(str(found[1]), json.loads(found[2] or "{}"), float(values[len(values) // 2]), per_step)

    def claim_run(self, run_id: int, allowed: Sequence[str], pid: int, host: str) -> bool:
        """Move a run in one of the `allowed` states to 'running' for the worker (pid, host), atomically, so
        two workers can never train the same run. False when the run was not in an allowed state. A stop asked
        of a queued run before its worker got to it is kept (the worker stops at once); a resumed run's old
        stop request is cleared."""
        ts = now_iso()
        with self._write() as c:
            cur = c.execute(
                f"UPDATE runs SET status = 'running', pid = ?, host = ?, started_at = coalesce(started_at, ?), "
                f"resumed_at = ?, ended_at = NULL, error = NULL, heartbeat_at = ?, "
                f"stop_requested = CASE WHEN status = 'queued' THEN stop_requested ELSE 0 END "
                f"WHERE id = ? AND status IN ({', '.join('?' * len(allowed))})",
                (pid, host, ts, ts, ts, run_id, *allowed))
            return cur.rowcount == 1

    def add_samples(self, run_id: int, step: int, samples: Iterable[dict]) -> None:
        """Store generations: dicts with prompt_id, prompt_text, text and optional meta."""
        t = time.time()
        rows = [(run_id, step, s.get("prompt_id"), s.get("prompt_text"), s["text"],
                 json.dumps(s["meta"]) if s.get("meta") else None, t) for s in samples]
        with self._write() as c:
            c.executemany("INSERT INTO samples (run_id, step, prompt_id, prompt_text, text, meta, time) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def samples(self, run_id: int, since_id: int = 0, step: int | None = None) -> list[dict]:
        """A run's samples with id > since_id (only those of `step` when given), oldest first, meta decoded."""
        sql, params = "SELECT * FROM samples WHERE run_id = ? AND id > ?", [run_id, since_id]
        if step is not None:
            sql, params = sql + " AND step = ?", [*params, step]
        rows = self._query(sql + " ORDER BY id", tuple(params))
        for r in rows:
            r["meta"] = json.loads(r["meta"]) if r["meta"] else {}
        return rows

    def sample_steps(self, run_id: int) -> list[int]:
        """The steps at which a run stored samples, in order."""
        return [r[0] for r in self._conn.execute(
            "SELECT DISTINCT step FROM samples WHERE run_id = ? ORDER BY step", (run_id,))]

    def add_checkpoint(self, run_id: int, step: int, path: str | Path) -> None:
        with self._write() as c:
            c.execute("INSERT INTO checkpoints (run_id, step, path, created_at) VALUES (?, ?, ?, ?)",
                      (run_id, step, str(path), now_iso()))

    def mark_dead_runs(self) -> list[int]:
        """Mark failed the runs that say they are running but whose worker process is gone (killed
        outright). Returns their ids. Only checks pids on this machine; a read-only project is left as it is."""
        if self.read_only:
            return []
        host = hostname()
        dead = []
        for r in self._query("SELECT id, pid, host FROM runs WHERE status IN ('running', 'stopping', 'queued') "
                            "AND pid IS NOT NULL"):
            if r["host"] not in (None, host):
                continue
            if not pid_alive(r["pid"]):
                dead.append((r["id"], r["pid"]))
        for run_id, pid in dead:
            tail = paths.log_tail(self.folder, run_id) if self.folder else None
            error = f"the worker process (pid {pid}) ended without reporting (killed or crashed)"
            with self._write() as c:
                # the session's training time runs up to the worker's last sign of life
                c.execute("UPDATE runs SET status = 'failed', ended_at = ?, error = coalesce(error, ?), "
                          "active_seconds = active_seconds + coalesce(max(0, (julianday(heartbeat_at) - "
                          "julianday(resumed_at)) * 86400), 0), resumed_at = NULL, "
                          "log_tail = coalesce(?, log_tail) WHERE id = ? AND status IN ('running', 'stopping', "
                          "'queued')",
                          (now_iso(), error, tail, run_id))
        return [run_id for run_id, _pid in dead]

    def delete_run(self, run_id: int, files: bool = True) -> None:
        run = self.run(run_id)
        if RunStatus(run["status"]).active and run["pid"] and pid_alive(run["pid"]):
            raise ProjectError(f"run {run_id}: is still {run['status']}; stop it before deleting")
        with self._write() as c:
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        if files and self.folder is not None:
            shutil.rmtree(paths.run_dir(self.folder, run_id), ignore_errors=True)

