"""Arenas in the store: listing them, their labels as judgements between sources, and `studio arena --results`'s
object (the statistics themselves are pure functions in core.arena)."""

from __future__ import annotations

import json
from typing import Any

from studio.core import arena as core
from studio.store.db import ProjectError
from studio.store.project import Project

SCHEMA_VERSION = 1


def arenas(project: Project) -> list[dict[str, Any]]:
    """Every arena, newest first, with its job's status and how far labeling has got."""
    rows = project._query(
        "SELECT a.id, a.name, a.job_id, a.sources, a.created_at, r.status AS job_status, r.step AS prompts_done, "
        "r.total_steps AS prompts, "
        "(SELECT count(DISTINCT gp.pair_id) FROM generated_pairs gp WHERE gp.arena_id = a.id) AS pairs, "
        "(SELECT count(DISTINCT gp.pair_id) FROM generated_pairs gp JOIN pairs p ON p.id = gp.pair_id "
        " WHERE gp.arena_id = a.id AND p.n_labels > 0) AS labeled_pairs "
        "FROM arenas a LEFT JOIN runs r ON r.id = a.job_id ORDER BY a.id DESC")
    for r in rows:
        r["sources"] = json.loads(r["sources"])
    return rows


def arena(project: Project, arena_id: int | None = None) -> dict[str, Any]:
    """One arena (the newest when no id is given)."""
    found = arenas(project)
    if not found:
        raise ProjectError("arena: this project has none yet; start one with `studio arena PROJECT --sources base RUN`")
    if arena_id is None:
        return found[0]
    for a in found:
        if a["id"] == arena_id:
            return a
    raise ProjectError(f"arena {arena_id}: no such arena (arenas: {', '.join(str(a['id']) for a in found)})")


def judgements(project: Project, arena_id: int) -> list[core.Judgement]:
    """Every current label on the arena's pairs (skips left out) as a judgement between the two sources."""
    rows = project._conn.execute(
        "SELECT l.choice, ga.source, gb.source, length(ra.text), length(rb.text), an.name, p.prompt_id "
        "FROM generated_pairs gp JOIN pairs p ON p.id = gp.pair_id "
        "JOIN labels l ON l.pair_id = p.id AND l.state = 'current' JOIN annotators an ON an.id = l.annotator_id "
        "JOIN generations ga ON ga.id = gp.generation_a_id JOIN generations gb ON gb.id = gp.generation_b_id "
        "JOIN responses ra ON ra.id = p.response_a_id JOIN responses rb ON rb.id = p.response_b_id "
        "WHERE gp.arena_id = ? ORDER BY l.id", (arena_id,)).fetchall()
    out = [core.judgement(*row) for row in rows]
    return [j for j in out if j is not None]


def identical_outputs(project: Project, arena_id: int) -> dict[tuple[str, str], int]:
    """Per two sources, the prompts on which both wrote the very same text (no pair to label there)."""
    rows = project._conn.execute(
        "SELECT g1.source, g2.source, count(*) FROM arenas a JOIN generations g1 ON g1.job_id = a.job_id "
        "JOIN generations g2 ON g2.job_id = g1.job_id AND g2.prompt_id = g1.prompt_id "
        "AND g2.response_id = g1.response_id AND g2.id > g1.id WHERE a.id = ? GROUP BY g1.source, g2.source",
        (arena_id,)).fetchall()
    out: dict[tuple[str, str], int] = {}
    for s1, s2, n in rows:
        key = (s1, s2) if s1 < s2 else (s2, s1)
        out[key] = out.get(key, 0) + int(n)
    return out


def arena_results(project: Project, arena_id: int | None = None, rounds: int = core.BOOTSTRAP_ROUNDS,
                  seed: int = 0) -> dict[str, Any]:
    """`studio arena --results --json`'s object (documented in docs/arena.md)."""
    info = arena(project, arena_id)
    results = core.arena_results(judgements(project, info["id"]), info["sources"], rounds=rounds, seed=seed)
    same = identical_outputs(project, info["id"])
    for m in results["matchups"]:
        m["identical"] = same.get(tuple(sorted((m["source"], m["against"]))), 0)  # type: ignore[arg-type]
    return {"schema": SCHEMA_VERSION, "arena": {k: info[k] for k in ("id", "name", "job_id", "sources", "created_at",
                                                                    "job_status", "prompts", "prompts_done")},
            "pairs": info["pairs"], "labeled_pairs": info["labeled_pairs"], **results}
