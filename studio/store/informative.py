"""The informative queue in the store: models' scores of pairs, the ranking made from them, and the lookups the
labeling view (next pair) and the Data view (the score column, its parts, its order) make on it.

The score itself is `core.informative`; this module reads what it needs (verdict counts, margins), writes the
ranking in short transactions beside the current one, and switches over when it is complete. The next pair is
then one walk down an index of the current ranking: nothing is scored while someone labels.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: this module loads with the window, numpy is
    import numpy as np  # about 135 ms of its start (studio bench gui checks that the start loads none)

from studio.core.informative import (
    PARTS,
    POLICY,
    RANK,
    REWARD,
    InformativeScores,
    RankPlan,
    Scorer,
    informative_scores,
)
from studio.store.db import ProjectError, StoreBase, now_iso

if TYPE_CHECKING:
    from studio.store.pairs import PairFilter
    from studio.store.project import Project

CHUNK = 20_000
"""Rows written (or deleted) per transaction while a ranking is rebuilt: a label saved meanwhile waits for one such
transaction at most (about 0.1 s; 0.6 s at worst measured on a loaded 2-core machine), never for the whole
ranking."""


# ---------------------------------------------------------------------------------------------- scores


def write_scores(store: StoreBase, scorer: Scorer, pair_ids: Sequence[int], margins: Sequence[float]) -> None:
    """A model's margins (A over B) of pairs, in one transaction; a pair scored again by it is overwritten."""
    ts = now_iso()
    with store._write() as c:
        c.executemany("INSERT OR REPLACE INTO pair_scores (pair_id, run_id, step, kind, value, created_at) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      [(int(p), scorer.run_id, scorer.step, scorer.kind, float(m), ts)
                       for p, m in zip(pair_ids, margins, strict=True)])


def scored_pairs(store: StoreBase, scorer: Scorer) -> set[int]:
    """The pairs this model (run, step) has scored."""
    return {r[0] for r in store._conn.execute("SELECT pair_id FROM pair_scores WHERE run_id = ? AND step = ?",
                                              (scorer.run_id, scorer.step))}


def pair_margins(store: StoreBase, pair_id: int) -> list[dict[str, Any]]:
    """Every model's margin of one pair, newest first: [{"run_id", "step", "kind", "value", "created_at"}]."""
    return store._query("SELECT run_id, step, kind, value, created_at FROM pair_scores WHERE pair_id = ? "
                        "ORDER BY created_at DESC, run_id DESC", (pair_id,))


def pairs_to_score(store: StoreBase, plan: RankPlan) -> list[int]:
    """The pairs a rank job scores: those still short of the overlap target (the ones a queue can serve), at most
    `max_pairs` of them drawn at random with the plan's seed, in id order; a resumed job gets the same draw."""
    ids = [r[0] for r in store._conn.execute("SELECT id FROM pairs WHERE n_labels < ? ORDER BY id",
                                             (store.overlap_target,))]
    if plan.max_pairs and len(ids) > plan.max_pairs:
        ids = sorted(random.Random(plan.seed).sample(ids, plan.max_pairs))
    return ids


def pair_texts(store: StoreBase, pair_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The texts a model scores, per pair in the order given: {"pair_id", "prompt_id", "prompt", "messages",
    "a", "b"} (prompt and messages as a run's snapshot rows have them)."""
    if not pair_ids:
        return []
    marks = ", ".join("?" * len(pair_ids))
    rows = store._query(
        "SELECT p.id AS pair_id, pr.id AS prompt_id, pr.text AS prompt, pr.messages, ra.text AS a, rb.text AS b "
        "FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id JOIN responses ra ON ra.id = p.response_a_id "
        f"JOIN responses rb ON rb.id = p.response_b_id WHERE p.id IN ({marks})", list(pair_ids))
    by_id = {r["pair_id"]: r for r in rows}
    out = []
    for pid in pair_ids:
        r = by_id.get(int(pid))
        if r is not None:
            r["messages"] = json.loads(r["messages"]) if r["messages"] else None
            out.append(r)
    return out


# ---------------------------------------------------------------------------------------------- ranking


def _verdicts(store: StoreBase, ids: np.ndarray) -> np.ndarray:
    """[n, 4] current verdict counts (a, b, tie, both bad) of the pairs `ids` (sorted)."""
    import numpy as np
    counts = np.zeros((len(ids), 4))
    rows = store._conn.execute(
        "SELECT pair_id, sum(choice = 'a'), sum(choice = 'b'), sum(choice = 'tie'), sum(choice = 'both_bad') "
        "FROM labels WHERE state = 'current' AND choice != 'skip' GROUP BY pair_id").fetchall()
    if rows:
        table = np.array(rows, dtype=np.float64)
        at = np.searchsorted(ids, table[:, 0].astype(np.int64))
        keep = (at < len(ids)) & (ids[np.minimum(at, len(ids) - 1)] == table[:, 0])
        counts[at[keep]] = table[keep, 1:]
    return counts


def _margins(store: StoreBase, scorer: Scorer, ids: np.ndarray) -> np.ndarray:
    """The model's margin of each pair of `ids` (sorted), NaN where it has none."""
    import numpy as np
    out = np.full(len(ids), np.nan)
    rows = store._conn.execute("SELECT pair_id, value FROM pair_scores WHERE run_id = ? AND step = ?",
                               (scorer.run_id, scorer.step)).fetchall()
    if rows and len(ids):
        table = np.array(rows, dtype=np.float64)
        at = np.searchsorted(ids, table[:, 0].astype(np.int64))
        keep = (at < len(ids)) & (ids[np.minimum(at, len(ids) - 1)] == table[:, 0])
        out[at[keep]] = table[keep, 1]
    return out


def compute_ranking(store: StoreBase, scorers: Sequence[Scorer]) -> tuple[np.ndarray, np.ndarray, InformativeScores]:
    """Every pair's informative score from the scorers' stored margins and the labels now: (pair ids, verdict
    counts per pair, scores). Reads only."""
    import numpy as np
    ids = np.array([r[0] for r in store._conn.execute("SELECT id FROM pairs ORDER BY id")], dtype=np.int64)
    verdicts = _verdicts(store, ids)
    rewards = [s for s in scorers if s.kind == REWARD]
    policy = next((s for s in scorers if s.kind == POLICY), None)
    reward_margins = np.stack([_margins(store, s, ids) for s in rewards]) if rewards else None
    policy_margins = _margins(store, policy, ids) if policy is not None else None
    return ids, verdicts, informative_scores(len(ids), verdicts, reward_margins, policy_margins)


def rebuild_ranking(store: StoreBase, scorers: Sequence[Scorer], job_id: int | None = None,
                    on_chunk=None) -> int:
    """Rank every pair by its informative score and make that the current ranking. Written in chunks beside
    the current one (each chunk a short transaction), switched over at the end; older rankings are then
    removed, also in chunks. Returns the new ranking's id."""
    import numpy as np
    ids, verdicts, s = compute_ranking(store, scorers)
    with store._write() as c:
        ranking = int(c.execute("INSERT INTO rankings (job_id, scorers, pairs, max_pair_id, complete, created_at) "
                                "VALUES (?, ?, ?, ?, 0, ?)",
                                (job_id, json.dumps([{"run_id": x.run_id, "step": x.step, "kind": x.kind}
                                                     for x in scorers]), len(ids),
                                 int(ids[-1]) if len(ids) else 0, now_iso())).lastrowid)
    # the columns in rank order, as Python values (NaN parts as NULL), built by numpy rather than row by row
    order = s.order
    columns = [ids[order], s.score[order], _nullable(s.uncertainty[order]), _nullable(s.checkpoints[order]),
               _nullable(s.policy[order]), s.labels[order], verdicts.sum(axis=1).astype(np.int64)[order]]
    rank_of = np.empty(len(ids), dtype=np.int64)
    rank_of[order] = np.arange(1, len(ids) + 1)  # pair i's rank (ids are in pair order)
    for lo in range(0, len(ids), CHUNK):
        hi = min(len(ids), lo + CHUNK)
        ranked = zip(itertools.repeat(ranking), range(lo + 1, hi + 1), *(col[lo:hi].tolist() for col in columns))
        by_pair = zip(itertools.repeat(ranking), ids[lo:hi].tolist(), rank_of[lo:hi].tolist())
        with store._write() as c:
            c.executemany("INSERT INTO pair_ranks (ranking_id, rank, pair_id, score, uncertainty, checkpoints, "
                          "policy, labels, n_labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ranked)
            c.executemany("INSERT INTO pair_rank_of (ranking_id, pair_id, rank) VALUES (?, ?, ?)", by_pair)
        if on_chunk is not None:
            on_chunk(hi, len(ids))
    with store._write() as c:
        c.execute("UPDATE rankings SET complete = 1 WHERE id = ?", (ranking,))
    _drop_old_rankings(store)
    return ranking


def _nullable(x: np.ndarray) -> np.ndarray:
    """Floats with NaN as None (SQL NULL), as an object array whose `tolist` gives Python floats and None."""
    import numpy as np
    return np.where(np.isfinite(x), x, None).astype(object)


def _drop_old_rankings(store: StoreBase) -> None:
    """Remove the rankings older than the current one, a chunk of ranks at a time: complete ones, and incomplete
    ones no running job is still writing (a crash left them). A newer one still being written stays; so does an
    older one whose job still writes it (two rank jobs at once): it goes when that job ends."""
    current = store._scalar("SELECT max(id) FROM rankings WHERE complete = 1")
    old_ones = store._conn.execute(
        "SELECT k.id, k.pairs FROM rankings k LEFT JOIN runs j ON j.id = k.job_id WHERE k.id < ? AND (k.complete = 1 "
        "OR j.id IS NULL OR j.status NOT IN ('queued', 'running', 'stopping') OR j.pid IS NULL)", (current,)).fetchall()
    for (old, n) in old_ones:
        top = int(store._scalar("SELECT max(rank) FROM pair_ranks WHERE ranking_id = ?", (old,)) or 0)
        last = int(store._scalar("SELECT max(pair_id) FROM pair_rank_of WHERE ranking_id = ?", (old,)) or 0)
        for lo in range(0, max(top, n), CHUNK):
            with store._write() as c:
                c.execute("DELETE FROM pair_ranks WHERE ranking_id = ? AND rank > ? AND rank <= ?",
                          (old, lo, lo + CHUNK))
        for lo in range(0, last, CHUNK):  # pair ids are dense enough: a chunk of ids is at most a chunk of rows
            with store._write() as c:
                c.execute("DELETE FROM pair_rank_of WHERE ranking_id = ? AND pair_id > ? AND pair_id <= ?",
                          (old, lo, lo + CHUNK))
        with store._write() as c:
            c.execute("DELETE FROM pair_ranks WHERE ranking_id = ?", (old,))
            c.execute("DELETE FROM pair_rank_of WHERE ranking_id = ?", (old,))
            c.execute("DELETE FROM rankings WHERE id = ?", (old,))


def current_ranking(store: StoreBase) -> dict[str, Any] | None:
    """The ranking the queue follows: {"id", "job_id", "scorers" (Scorer list), "pairs", "max_pair_id",
    "created_at"}, or None before the first one."""
    rows = store._query("SELECT id, job_id, scorers, pairs, max_pair_id, created_at FROM rankings WHERE complete = 1 "
                        "ORDER BY id DESC LIMIT 1")
    if not rows:
        return None
    r = rows[0]
    r["scorers"] = [Scorer(**x) for x in json.loads(r["scorers"])]
    return r


def describe_ranking(ranking: dict[str, Any] | None) -> str:
    """One line: what the current ranking was made from, and when."""
    if ranking is None:
        return "no ranking yet: pairs come in id order (rank them with `studio rank PROJECT`)"
    models = ", ".join(s.describe() for s in ranking["scorers"]) or "the labels only"
    return f"ranked {ranking['created_at'][:16].replace('T', ' ')} UTC from {models}"


# ---------------------------------------------------------------------------------------------- lookups


def next_informative(store: StoreBase, flt: PairFilter, after: int | None) -> int | None:
    """The next pair of the 'informative' queue after pair `after` (None: from the top): the filter's pairs in
    the current ranking's order, then pairs added since in id order, wrapping around. Without a ranking, id
    order. Each step is one walk down an index, stopping at the first pair the filter keeps."""
    ranking = current_ranking(store)
    cond, params = flt.sql(store.overlap_target, scan=True)
    if ranking is None:
        return _first_by_id(store, cond, params, after or 0, None) or (
            _first_by_id(store, cond, params, 0, after) if after else None)
    rid, top = ranking["id"], ranking["max_pair_id"]
    rank = store._scalar("SELECT rank FROM pair_rank_of WHERE ranking_id = ? AND pair_id = ?", (rid, after)) \
        if after else None
    if after and rank is None and after > top:  # a pair added since the ranking: go on in id order, then wrap
        steps = [("id", after, None), ("rank", 0, None), ("id", top, after)]
    else:
        r = rank or 0
        steps = [("rank", r, None), ("id", top, None)] + ([("rank", 0, r)] if r else [])
    for kind, lo, hi in steps:
        found = (_first_by_rank(store, rid, cond, params, lo, hi) if kind == "rank"
                 else _first_by_id(store, cond, params, lo, hi))
        if found is not None:
            return found
    return None


def _first_by_rank(store: StoreBase, ranking: int, cond: str, params: list, lo: int, hi: int | None) -> int | None:
    # CROSS JOIN keeps SQLite walking the ranking in rank order, looking each pair up by id
    bound = " AND k.rank <= ?" if hi is not None else ""
    return store._scalar(f"SELECT k.pair_id FROM pair_ranks k CROSS JOIN pairs p WHERE k.ranking_id = ? "
                         f"AND k.rank > ?{bound} AND p.id = k.pair_id AND {cond} ORDER BY k.rank LIMIT 1",
                         [ranking, lo, *([hi] if hi is not None else []), *params])


def _first_by_id(store: StoreBase, cond: str, params: list, lo: int, hi: int | None) -> int | None:
    bound = " AND p.id <= ?" if hi is not None else ""
    return store._scalar(f"SELECT p.id FROM pairs p WHERE p.id > ?{bound} AND {cond} ORDER BY p.id LIMIT 1",
                         [lo, *([hi] if hi is not None else []), *params])


def informative_parts(store: StoreBase, pair_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The current ranking's score, rank and parts of these pairs (those it ranked): {pair_id: {"score", "rank",
    "n_labels", "uncertainty", "checkpoints", "policy", "labels"}}, parts None where not scored."""
    ranking = current_ranking(store)
    if ranking is None or not pair_ids:
        return {}
    marks = ", ".join("?" * len(pair_ids))
    rows = store._query(f"SELECT o.pair_id, k.rank, k.score, k.n_labels, {', '.join('k.' + p for p in PARTS)} "
                        f"FROM pair_rank_of o JOIN pair_ranks k ON k.ranking_id = o.ranking_id AND k.rank = o.rank "
                        f"WHERE o.ranking_id = ? AND o.pair_id IN ({marks})", [ranking["id"], *pair_ids])
    return {r.pop("pair_id"): r for r in rows}


def informative_order(store: StoreBase, flt: PairFilter, descending: bool = True) -> list[int]:
    """Every pair the filter keeps, most informative first (the current ranking's order; least first when not
    `descending`), then those it has not ranked (added since) in id order, last either way: the Data view pages
    through this list when sorted by the score."""
    cond, params = flt.sql(store.overlap_target)
    ranking = current_ranking(store)
    if ranking is None:
        return [r[0] for r in store._conn.execute(f"SELECT p.id FROM pairs p WHERE {cond} ORDER BY p.id", params)]
    ranked = [r[0] for r in store._conn.execute(
        f"SELECT k.pair_id FROM pair_ranks k CROSS JOIN pairs p WHERE k.ranking_id = ? AND p.id = k.pair_id "
        f"AND {cond} ORDER BY k.rank {'ASC' if descending else 'DESC'}", [ranking["id"], *params])]
    added = [r[0] for r in store._conn.execute(f"SELECT p.id FROM pairs p WHERE p.id > ? AND {cond} ORDER BY p.id",
                                               [ranking["max_pair_id"], *params])]
    return ranked + added


def check_scorer_runs(store: Project, reward_runs: Sequence[int], policy_run: int | None) -> list[Scorer]:
    """Scorers from run ids: finished reward runs and at most one DPO run, each with a saved adapter, all on one
    base model. Raises ProjectError naming the run and what to give instead."""
    from studio.core import paths
    from studio.core.types import RunStatus

    scorers: list[Scorer] = []
    models: dict[int, str] = {}
    for run_id, kind in [(r, REWARD) for r in reward_runs] + ([(policy_run, POLICY)] if policy_run else []):
        try:
            run = store.run(run_id)
        except ProjectError:
            raise ProjectError(f"run {run_id}: no such run in this project") from None
        want = "reward" if kind == REWARD else "dpo"
        flag = "--reward" if kind == REWARD else "--policy"
        if run["method"] != want:
            raise ProjectError(f"{flag} {run_id}: is a {run['method']} run; {flag} takes a "
                               f"{'reward model run' if kind == REWARD else 'DPO run'}")
        if kind == REWARD and run["status"] != RunStatus.DONE:
            raise ProjectError(f"{flag} {run_id}: the reward run is {run['status']}; score with a finished one")
        adapter = paths.adapter_dir(store.folder, run_id) if store.folder is not None else None
        if adapter is None or not (adapter / "adapter_config.json").is_file():
            raise ProjectError(f"{flag} {run_id}: has no saved adapter (status {run['status']}); a run saves it at "
                               f"checkpoints and when it ends")
        if any(s.run_id == run_id for s in scorers):
            raise ProjectError(f"{flag} {run_id}: given twice")
        models[run_id] = run["model"]
        scorers.append(Scorer(run_id, int(run["step"]), kind))
    if len(set(models.values())) > 1:
        listing = ", ".join(f"run {r} on {m}" for r, m in models.items())
        raise ProjectError(f"the scoring runs must share one base model (their adapters sit on it): {listing}")
    return scorers


# ---------------------------------------------------------------------------------------------- jobs


def create_rank_job(project: Project, plan: RankPlan, name: str | None = None) -> int:
    """A queued run (method 'rank') that scores pairs with the plan's models and ranks them; returns its id."""
    plan.validate()
    return project.create_run(RANK, plan.model, plan.to_dict(), name=name, snapshot=[])


def auto_scorers(project: Project, run_id: int) -> list[Scorer]:
    """The models a ranking after run `run_id` (a reward or DPO run just finished) scores with: the newest
    finished reward run on its base model and the one before it (their disagreement), and the newest DPO run
    with a saved adapter; the run itself among them. Empty for other methods."""
    from studio.core import paths
    from studio.core.types import RunStatus

    run = project.run(run_id)
    if run["method"] not in ("reward", "dpo") or project.folder is None:
        return []

    def usable(r: dict) -> bool:
        return (r["model"] == run["model"] and r["status"] == RunStatus.DONE
                and (paths.adapter_dir(project.folder, r["id"]) / "adapter_config.json").is_file())

    newest_first = [r for r in reversed(project.runs()) if r["id"] == run_id or usable(r)]
    rewards = [r for r in newest_first if r["method"] == "reward"]
    if run["method"] == "reward":
        rewards = [run, *[r for r in rewards if r["id"] < run_id][:1]]
    policy = run if run["method"] == "dpo" else next((r for r in newest_first if r["method"] == "dpo"), None)
    chosen = [(r, REWARD) for r in rewards[:2]] + ([(policy, POLICY)] if policy else [])
    return [Scorer(r["id"], int(r["step"]), kind) for r, kind in chosen]


def ranking_report(store: StoreBase, top: int = 10) -> dict[str, Any]:
    """The current ranking for `studio rank --json`: {"ranking": {"id", "job_id", "created_at", "pairs",
    "scorers", "terms"} or None, "top": the `top` highest-ranked pairs with their score, parts and prompt}."""
    from studio.core.informative import model_terms, scorer_rows

    ranking = current_ranking(store)
    if ranking is None:
        return {"ranking": None, "top": []}
    rows = store._query(f"SELECT k.rank, k.pair_id, k.score, k.n_labels, {', '.join('k.' + p for p in PARTS)}, "
                        "substr(pr.text, 1, 80) AS prompt FROM pair_ranks k JOIN pairs p ON p.id = k.pair_id "
                        "JOIN prompts pr ON pr.id = p.prompt_id WHERE k.ranking_id = ? ORDER BY k.rank LIMIT ?",
                        (ranking["id"], top))
    info = {k: ranking[k] for k in ("id", "job_id", "created_at", "pairs")}
    info["scorers"] = scorer_rows(ranking["scorers"])
    info["terms"] = sorted(model_terms(ranking["scorers"]))
    return {"ranking": info, "top": rows}
