"""Reads a comparison of runs from a project: last values, what each run logged about its cost, chart series,
a few samples, and the price per GPU-hour setting; writes the self-contained HTML report."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from studio.core import metrics as M
from studio.core.comparison import ArenaSection, Comparison, RunSummary, comparison_entries
from studio.core.costs import RunUsage, parse_price, run_cost
from studio.store.db import ProjectError
from studio.store.project import Project
from studio.store.run_metrics import read_run_series
from studio.store.run_queue import group_names

PRICE_KEY = "price_per_gpu_hour"
REPORT_METRICS = (*M.COMPARE_METRICS, M.OBJECTIVE_KL, M.OBJECTIVE_ENTROPY)
"""Metrics a report charts when some compared run logged them: Compare's, and PPO's KL and entropy."""
SAMPLES_PER_RUN = 3


def price_per_gpu_hour(project: Project) -> float | None:
    """The project's price per GPU-hour (None until someone sets one)."""
    try:
        return parse_price(project.setting(PRICE_KEY))
    except ValueError:
        return None  # a hand-edited setting that is not a number: as if unset


def set_price_per_gpu_hour(project: Project, price: float | None) -> None:
    """Keep a price per GPU-hour with the project (None: no price, so no money figure)."""
    project.set_setting(PRICE_KEY, "" if price is None else repr(float(price)))


def metric_names(project: Project, run_id: int) -> list[str]:
    """The names of the metrics a run logged, sorted; a skip-scan of the (run_id, name, id) index, one seek per
    name, so a run of a million rows answers as fast as a short one."""
    rows = project._conn.execute(
        "WITH RECURSIVE n(name) AS (SELECT min(name) FROM metrics WHERE run_id = ?1 UNION ALL "
        "SELECT (SELECT min(name) FROM metrics WHERE run_id = ?1 AND name > n.name) FROM n WHERE n.name IS NOT NULL) "
        "SELECT name FROM n WHERE name IS NOT NULL", (run_id,)).fetchall()
    return [r[0] for r in rows]


def last_values(project: Project, run_id: int, names: Sequence[str] | None = None) -> dict[str, float | None]:
    """The last value logged for each metric of a run (NaN where that value was not finite)."""
    out: dict[str, float | None] = {}
    for name in names if names is not None else metric_names(project, run_id):
        row = project._conn.execute("SELECT value FROM metrics WHERE run_id = ? AND name = ? ORDER BY id DESC "
                                    "LIMIT 1", (run_id, name)).fetchone()
        if row is not None:
            out[name] = float("nan") if row[0] is None else float(row[0])
    return out


def run_usage(project: Project, run_id: int) -> RunUsage:
    """What a run logged about its own work, read with a few index seeks."""
    last = last_values(project, run_id, (M.NUM_TOKENS, M.SAMPLES_GENERATED))
    peak = project._scalar("SELECT max(value) FROM metrics WHERE run_id = ? AND name = ?", (run_id, M.MEMORY))
    stored = project._scalar("SELECT count(*) FROM samples WHERE run_id = ?", (run_id,))
    return RunUsage(num_tokens=last.get(M.NUM_TOKENS), samples_generated=last.get(M.SAMPLES_GENERATED),
                    samples_stored=int(stored or 0), peak_memory_gib=None if peak is None else float(peak))


def latest_samples(project: Project, run_id: int, limit: int = SAMPLES_PER_RUN) -> list[dict]:
    """Up to `limit` generations of the run's latest evaluation."""
    return project._query("SELECT step, prompt_text, text FROM samples WHERE run_id = ?1 AND step = "
                          "(SELECT max(step) FROM samples WHERE run_id = ?1) ORDER BY id LIMIT ?2", (run_id, limit))


def arena_section(project: Project, run_ids: Sequence[int]) -> ArenaSection | None:
    """The head-to-head results among these runs (and the base model) from the newest arena that pitted at
    least one of them against another source, for a report; None when no arena did."""
    from studio.core.arena import MATCHUP_COLUMNS, matchup_cells
    from studio.store import arena as arena_store

    names = {r["name"] for r in project.runs() if r["id"] in set(run_ids)} | {"base"}
    for info in arena_store.arenas(project):
        if len(names & set(info["sources"])) < 2 or not names & set(info["sources"]) - {"base"}:
            continue
        results = arena_store.arena_results(project, info["id"], rounds=200)
        rows = tuple(tuple(matchup_cells(m)) for m in results["matchups"]
                     if m["source"] in names and m["against"] in names)
        note = (f"Arena {info['id']} ({info['name']}): {results['judgements']} judgements on "
                f"{results['labeled_pairs']} of {results['pairs']} blind pairs; ties count half; "
                "95% intervals from 200 bootstrap rounds over prompts.")
        return ArenaSection(MATCHUP_COLUMNS, rows, note)
    return None


def gather(project: Project, run_ids: Sequence[int], price: float | None = None, by_group: bool = True,
           metrics: Sequence[str] | None = None) -> Comparison:
    """The comparison of `run_ids` (in the order given): runs, seed groups as one entry each (`by_group`),
    final values, costs at `price` per GPU-hour (default: the project's setting), series of `metrics`
    (default: REPORT_METRICS, with a reward model's or PPO/RLOO's own in place of DPO's for runs of those)."""
    if not run_ids:
        raise ProjectError("runs: name at least one run to compare")
    rows = {r["id"]: r for r in project.runs()}
    missing = [i for i in run_ids if i not in rows]
    if missing:
        raise ProjectError(f"run {missing[0]}: no such run in {project.folder or 'this project'}")
    price = price_per_gpu_hour(project) if price is None else price
    runs = [rows[i] for i in dict.fromkeys(run_ids)]
    if metrics is None:
        extras = REPORT_METRICS[len(M.COMPARE_METRICS):]
        metrics = tuple(dict.fromkeys((*M.compare_metrics_for([r["method"] for r in runs]), *extras)))
    summaries = [RunSummary(r, last_values(project, r["id"]), run_cost(r, run_usage(project, r["id"]), price),
                            latest_samples(project, r["id"])) for r in runs]
    series: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {m: {} for m in metrics}
    for r in runs:
        rs = read_run_series(project, r["id"], list(metrics))
        for m in metrics:
            s = rs.series.get(m)
            if s is not None and len(s):
                series[m][r["id"]] = (s.step[: s.n].copy(), s.y.copy())
    names = group_names(project)
    return Comparison(project=project.name, created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                      runs=summaries, entries=comparison_entries(runs, names, by_group), series=series,
                      price_per_gpu_hour=price, arena=arena_section(project, [r["id"] for r in runs]),
                      group_names=names)


def write_report(project: Project, run_ids: Sequence[int], out: str | Path, price: float | None = None,
                 by_group: bool = True) -> Path:
    """Write the self-contained HTML report of the comparison of `run_ids` to `out`."""
    from studio.core.report import render_html

    out = Path(out)
    if out.is_dir():
        raise ProjectError(f"{out}: is a folder; give a file name such as report.html")
    text = render_html(gather(project, run_ids, price, by_group))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ProjectError(f"{out}: cannot write the report ({e.strerror})") from None
    return out
