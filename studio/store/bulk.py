"""Bulk writes for large synthetic projects (the benchmarks): many rows in one transaction each.

`Project.add_*` hash every text, skip duplicates and look each new id up, which costs minutes at a
million pairs. These functions insert rows as given instead: ids are the caller's, so rows can refer to
each other without look-ups, and hashes are placeholders unique per row (bulk rows never meet the
de-duplication of an import). For made-up data only; user data goes through `Project` or `formats`.
"""

from __future__ import annotations

from collections.abc import Iterable

from studio.store.db import now_iso
from studio.store.project import Project


def add_prompts(project: Project, rows: Iterable[tuple[int, str, str, str | None]]) -> None:
    """Plain-text prompts as (id, text, split, source); the ids must be free."""
    ts = now_iso()
    with project._write() as c:
        c.executemany("INSERT INTO prompts (id, text, split, source, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                      ((i, text, split, source, f"p{i}", ts) for i, text, split, source in rows))


def add_responses(project: Project, rows: Iterable[tuple[int, int, str, str | None]]) -> None:
    """Responses as (id, prompt_id, text, model); the ids must be free."""
    ts = now_iso()
    with project._write() as c:
        c.executemany("INSERT INTO responses (id, prompt_id, text, model, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                      ((i, prompt_id, text, model, f"r{i}", ts) for i, prompt_id, text, model in rows))


def add_pairs(project: Project, rows: Iterable[tuple[int, int, int, str | None]]) -> None:
    """Pairs as (prompt_id, response_a_id, response_b_id, source), numbered on from the last pair."""
    ts = now_iso()
    with project._write() as c:
        c.executemany("INSERT INTO pairs (prompt_id, response_a_id, response_b_id, source, created_at) "
                      "VALUES (?, ?, ?, ?, ?)", ((*row, ts) for row in rows))


def add_labels(project: Project, rows: Iterable[tuple[int, str, str, str, float]]) -> int:
    """Current labels as (pair_id, annotator name, choice, shown_left, seconds), at most one per annotator
    and pair; annotators are created in the order they first appear. Returns how many were added."""
    rows = list(rows)
    annotator_ids: dict[str, int] = {}
    for row in rows:
        if row[1] not in annotator_ids:
            annotator_ids[row[1]] = project.annotator_id(row[1])
    ts = now_iso()
    with project._write() as c:
        c.executemany("INSERT INTO labels (pair_id, annotator_id, choice, shown_left, seconds, created_at) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      ((pair_id, annotator_ids[name], choice, shown_left, seconds, ts)
                       for pair_id, name, choice, shown_left, seconds in rows))
    return len(rows)
