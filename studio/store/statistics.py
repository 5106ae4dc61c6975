"""Gathers label statistics from a project with SQL aggregation and returns `studio stats --json`'s dict."""

from __future__ import annotations

import statistics as _statistics
from typing import Any

import numpy as np

from studio.core import stats as core
from studio.store.project import Project

SCHEMA_VERSION = 1
IMPORT_PREFIX = "import:"
"""Annotators named `import:...` hold imported labels: they had no screen sides and took no time, so
they are left out of position bias and timing, and they are the dataset's verdict rather than a person's,
so they are left out of inter-annotator agreement. Their labels count everywhere else (resolution,
label distribution, length bias)."""


def _split_clause(split: str | None, alias: str = "p") -> tuple[str, tuple]:
    if not split:
        return "", ()
    return f" AND {alias}.prompt_id IN (SELECT id FROM prompts WHERE split = ?)", (split,)


def project_stats(project: Project, split: str | None = None) -> dict[str, Any]:
    """Every statistic of `studio stats`, as a JSON-able dict (schema documented in docs/store.md)."""
    c = project._conn
    where, params = _split_clause(split)
    overlap = project.overlap_target

    pairs_total, labeled, needs_more, done = c.execute(
        "SELECT count(*), coalesce(sum(n_labels > 0), 0), coalesce(sum(n_labels > 0 AND n_labels < ?), 0), "
        f"coalesce(sum(n_labels >= ?), 0) FROM pairs p WHERE 1{where}", (overlap, overlap, *params)).fetchone()
    prompts = c.execute("SELECT count(*) FROM prompts" + (" WHERE split = ?" if split else ""),
                        (split,) if split else ()).fetchone()[0]
    label_states = dict.fromkeys(("current", "replaced", "undone"), 0)
    label_states.update(c.execute(
        f"SELECT l.state, count(*) FROM labels l JOIN pairs p ON p.id = l.pair_id WHERE 1{where} GROUP BY l.state",
        params).fetchall())
    only_skipped = c.execute(
        "SELECT count(*) FROM pairs p WHERE n_labels = 0 AND EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = p.id "
        f"AND l.state = 'current'){where}", params).fetchone()[0]

    choice_counts = dict(c.execute(
        f"SELECT l.choice, count(*) FROM labels l JOIN pairs p ON p.id = l.pair_id WHERE l.state = 'current'{where} "
        "GROUP BY l.choice", params).fetchall())

    left_won, decided = c.execute(
        "SELECT coalesce(sum(l.choice = l.shown_left), 0), count(*) FROM labels l JOIN pairs p ON p.id = l.pair_id "
        "JOIN annotators a ON a.id = l.annotator_id WHERE l.state = 'current' AND l.choice IN ('a', 'b') "
        f"AND a.name NOT LIKE '{IMPORT_PREFIX}%'{where}", params).fetchone()

    # One row per labeled pair with its votes and both lengths, resolved by the one majority rule
    rows = c.execute(
        "SELECT v.na, v.nb, v.nt, v.nbb, length(ra.text), length(rb.text) FROM (SELECT l.pair_id, "
        "sum(l.choice = 'a') AS na, sum(l.choice = 'b') AS nb, sum(l.choice = 'tie') AS nt, "
        "sum(l.choice = 'both_bad') AS nbb FROM labels l JOIN pairs p ON p.id = l.pair_id "
        f"WHERE l.state = 'current'{where} GROUP BY l.pair_id) v JOIN pairs p ON p.id = v.pair_id "
        "JOIN responses ra ON ra.id = p.response_a_id JOIN responses rb ON rb.id = p.response_b_id",
        params).fetchall()
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
    winner = core.resolve_votes(arr[:, :4])
    len_a, len_b = arr[:, 4], arr[:, 5]
    a_wins, b_wins = winner == 0, winner == 1
    resolved = {"preferences": int(a_wins.sum() + b_wins.sum()), "tie": int((winner == 2).sum()),
                "both_bad": int((winner == 3).sum()), "no_majority": int((winner == core.SPLIT_VOTE).sum()),
                "skipped": int((winner == core.NO_VOTES).sum())}
    chosen_len = np.concatenate([len_a[a_wins], len_b[b_wins]])
    rejected_len = np.concatenate([len_b[a_wins], len_a[b_wins]])

    # agreement is between people: an imported label is the dataset's verdict, not a second annotator's
    ratings = c.execute(
        "SELECT l.pair_id, l.annotator_id, l.choice FROM labels l JOIN pairs p ON p.id = l.pair_id "
        "JOIN annotators a ON a.id = l.annotator_id "
        f"WHERE p.n_labels >= 2 AND l.state = 'current' AND l.choice != 'skip' AND a.name NOT LIKE ?{where}",
        (IMPORT_PREFIX + "%", *params)).fetchall()

    annotators = []
    per_annotator = c.execute(
        "SELECT a.name, count(l.id) FROM annotators a JOIN labels l ON l.annotator_id = a.id JOIN pairs p "
        f"ON p.id = l.pair_id WHERE l.state = 'current'{where} GROUP BY a.id ORDER BY a.name", params).fetchall()
    for name, n in per_annotator:
        seconds = [s for (s,) in c.execute(
            "SELECT l.seconds FROM labels l JOIN annotators a ON a.id = l.annotator_id JOIN pairs p "
            f"ON p.id = l.pair_id WHERE a.name = ? AND l.state = 'current' AND l.seconds IS NOT NULL{where}",
            (name, *params))]
        annotators.append({"name": name, "labels": int(n), "imported": name.startswith(IMPORT_PREFIX),
                           "median_seconds": float(_statistics.median(seconds)) if seconds else None})

    # every current label as numbers, with its pair's two lengths, for the per-annotator audit
    choice_code = "CASE l.choice " + " ".join(f"WHEN '{k}' THEN {i}" for k, i in core.CHOICE_CODES.items()) + " END"
    label_columns = np.array(c.execute(
        f"SELECT l.annotator_id, l.pair_id, {choice_code}, l.choice = l.shown_left, l.seconds, length(ra.text), "
        "length(rb.text) FROM labels l JOIN pairs p ON p.id = l.pair_id "
        "JOIN responses ra ON ra.id = p.response_a_id JOIN responses rb ON rb.id = p.response_b_id "
        f"WHERE l.state = 'current'{where}", params).fetchall(), dtype=float)  # a NULL second becomes NaN
    annotator_names = dict(c.execute("SELECT id, name FROM annotators").fetchall())

    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "project": project.name,
        "split": split,
        "counts": {
            "prompts": int(prompts),
            "pairs": int(pairs_total),
            "unlabeled_pairs": int(pairs_total - labeled - only_skipped),
            "labeled_pairs": int(labeled),
            "only_skipped_pairs": int(only_skipped),
            "needs_more_pairs": int(needs_more),
            "fully_labeled_pairs": int(done),
            "overlap_target": overlap,
            "labels": {k: int(v) for k, v in label_states.items()},
        },
        "resolved": resolved,
        "label_distribution": core.label_distribution(choice_counts),
        "position_bias": core.position_bias(int(left_won), int(decided)),
        "length_bias": core.length_bias(chosen_len, rejected_len),
        "agreement": core.agreement(ratings),
        "annotators": annotators,
        "annotator_audit": core.annotator_audit(core.LabelTable.from_columns(annotator_names, label_columns),
                                                IMPORT_PREFIX),
    }
    result["warnings"] = core.bias_warnings(result)
    return result


def bias_warnings(project: Project, split: str | None = None) -> list[str]:
    """The warnings in words for a project (what the runs view shows before a launch)."""
    return project_stats(project, split)["warnings"]
