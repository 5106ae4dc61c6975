"""A comparison of runs as plain data: its columns (a run, or a seed group summarised as one), the settings
that differ between them, final metrics (mean +- std for a group) and costs; what `studio compare --json`
prints and what a report is rendered from. The store fills a `Comparison` (studio.store.comparison)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from studio.core.configs import diff_configs, flatten
from studio.core.costs import COST_ROWS, RunCost, fmt_cost_field
from studio.core.seed_bands import MeanStd, fmt_number, mean_std
from studio.core.types import RunStatus

SCHEMA = 1
"""Version of `studio compare --json`'s object; bumped when a field changes meaning."""


def comparable_config(run: dict) -> dict:
    """A run's config plus its model, so a different base model shows up as a differing field."""
    return {**run["config"], "model": run["model"]}


@dataclass(frozen=True)
class Entry:
    """One column of a comparison: a run, or the runs of a seed group drawn and summarised as one."""

    label: str
    run_ids: tuple[int, ...]
    group_id: int | None = None

    @property
    def is_group(self) -> bool:
        return len(self.run_ids) > 1


def comparison_entries(runs: Sequence[dict], group_names: Mapping[int, str], by_group: bool = True) -> list[Entry]:
    """The columns for `runs` (in the order given): with `by_group`, the runs of one seed group that are
    compared together (two or more) become one entry at the place of the first; the others stay runs."""
    members: dict[int, list[dict]] = {}
    if by_group:
        for r in runs:
            if r.get("group_id") is not None:
                members.setdefault(r["group_id"], []).append(r)
    entries: list[Entry] = []
    placed: set[int] = set()
    for r in runs:
        gid = r.get("group_id")
        group = members.get(gid) if gid is not None else None
        if group is not None and len(group) >= 2:
            if gid not in placed:
                placed.add(gid)
                name = group_names.get(gid) or f"group {gid}"
                entries.append(Entry(f"{name} ({len(group)} seeds)", tuple(m["id"] for m in group), gid))
        else:
            entries.append(Entry(r["name"], (r["id"],), gid))
    return entries


def entry_config(runs: Sequence[dict]) -> dict:
    """The flat config of an entry: a run's own, or for a group the fields on which its runs differ (the
    seed) as their distinct values joined ('0, 1, 2')."""
    flats = [flatten(comparable_config(r)) for r in runs]
    if len(flats) == 1:
        return flats[0]
    out = dict(flats[0])
    for key in diff_configs(flats):
        values: list = []
        for f in flats:
            if f.get(key) not in values:
                values.append(f.get(key))
        out[key] = ", ".join("–" if v is None else str(v) for v in values)
    return out


def finished(run: dict) -> bool:
    """A run no longer queued or training: its last values are final."""
    return not RunStatus(run["status"]).active


def group_values(runs: Sequence[dict], value_of) -> MeanStd | None:
    """Mean +- std of `value_of(run)` over a group's finished runs (runs still training would pull the mean
    towards their early values)."""
    return mean_std(value_of(r) for r in runs if finished(r))


@dataclass
class RunSummary:
    """One run in a comparison: its row, the last value of every metric it logged, its cost, a few samples."""

    run: dict
    final: dict[str, float | None]
    cost: RunCost
    samples: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class ArenaSection:
    """Head-to-head results of the compared runs (the arena), as a table for a report."""

    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    note: str = ""


@dataclass
class Comparison:
    """Everything a comparison of runs shows, read once from a project."""

    project: str
    created_at: str
    runs: list[RunSummary]
    entries: list[Entry]
    series: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]
    """metric -> run id -> (steps, values) for the charted metrics."""
    price_per_gpu_hour: float | None = None
    arena: ArenaSection | None = None
    group_names: dict[int, str] = field(default_factory=dict)

    def run(self, run_id: int) -> RunSummary:
        return next(s for s in self.runs if s.run["id"] == run_id)

    def entry_runs(self, entry: Entry) -> list[RunSummary]:
        return [self.run(i) for i in entry.run_ids]

    def entry_configs(self) -> list[dict]:
        return [entry_config([s.run for s in self.entry_runs(e)]) for e in self.entries]

    def differing_fields(self) -> list[str]:
        configs = self.entry_configs()
        return diff_configs(configs) if len(configs) > 1 else []

    def final(self, entry: Entry, metric: str) -> float | MeanStd | None:
        """An entry's final value of `metric`: the run's last value, or mean +- std over a group's finished runs."""
        summaries = self.entry_runs(entry)
        if not entry.is_group:
            return summaries[0].final.get(metric)
        by_id = {s.run["id"]: s for s in summaries}
        return group_values([s.run for s in summaries], lambda r: by_id[r["id"]].final.get(metric))

    def cost(self, entry: Entry, name: str) -> float | MeanStd | None:
        """An entry's cost field `name` (see RunCost): the run's, or mean +- std over a group's finished runs."""
        summaries = self.entry_runs(entry)
        if not entry.is_group:
            return getattr(summaries[0].cost, name)
        by_id = {s.run["id"]: s for s in summaries}
        return group_values([s.run for s in summaries], lambda r: getattr(by_id[r["id"]].cost, name))

    def charted_metrics(self) -> list[str]:
        """The charted metrics some compared run logged, in chart order."""
        return [m for m, by_run in self.series.items() if any(len(s) for s, _ in by_run.values())]

    def metric_names(self) -> list[str]:
        """Every metric some compared run logged, charted ones first."""
        names = list(self.series)
        for s in self.runs:
            names += [n for n in s.final if n not in names]
        return [n for n in names if any(n in s.final for s in self.runs)]


def cell_text(value: float | MeanStd | None, field: str | None = None, of: int | None = None,
              digits: int = 4) -> str:
    """A table cell: a metric's value (`digits` significant digits), or the cost `field` as costs are shown; a
    group's mean ± std, with n unless it is `of` (every run of the group)."""
    if value is None:
        return "–"
    if isinstance(value, MeanStd):
        if field is None:
            return value.text(digits, of)
        std = "" if value.std is None else f" ± {fmt_cost_field(field, value.std)}"
        return f"{fmt_cost_field(field, value.mean)}{std}" + ("" if of == value.n else f" (n={value.n})")
    return fmt_cost_field(field, value) if field else fmt_number(value, digits)


RUN_KEYS = ("id", "name", "method", "model", "status", "step", "total_steps", "group_id", "created_at",
            "started_at", "ended_at")


def _plain(x):
    return x.as_dict() if isinstance(x, MeanStd) else x


def comparison_json(c: Comparison) -> dict:
    """The object `studio compare --json` prints (documented in docs/runs.md)."""
    runs = []
    for s in c.runs:
        row = {k: s.run.get(k) for k in RUN_KEYS}
        row["seed"] = s.run["config"].get("seed")
        row["final"] = s.final
        row["cost"] = s.cost.as_dict()
        runs.append(row)
    groups = []
    for e in c.entries:
        if not e.is_group:
            continue
        names = sorted({n for s in c.entry_runs(e) for n in s.final})
        groups.append({
            "id": e.group_id, "name": c.group_names.get(e.group_id or -1, e.label), "runs": list(e.run_ids),
            "finished_runs": sum(finished(s.run) for s in c.entry_runs(e)),
            "final": {n: _plain(c.final(e, n)) for n in names},
            "cost": {f: _plain(c.cost(e, f)) for f, _label in COST_ROWS},
        })
    return {"schema": SCHEMA, "project": c.project, "price_per_gpu_hour": c.price_per_gpu_hour, "runs": runs,
            "groups": groups}


def dumps(c: Comparison) -> str:
    """comparison_json as text; NaN or inf (a diverged loss) becomes null, so the output is strict JSON."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(comparison_json(c)), indent=2)
