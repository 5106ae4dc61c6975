"""The comparison report: one self-contained HTML file (inline CSS, charts as inline SVG, nothing fetched)
with the comparison's charts, the settings that differ, final metrics, costs, arena results and samples."""

from __future__ import annotations

from html import escape

from studio.core import metrics as M
from studio.core.comparison import Comparison, Entry, cell_text
from studio.core.costs import COST_ROWS
from studio.core.seed_bands import MeanStd, seed_band
from studio.core.series import ema
from studio.core.svg_chart import PALETTE, ChartLine, line_chart_svg

SMOOTHING = 0.6
"""EMA weight of the train curves in a report (the Compare view's default); eval curves are drawn raw."""
SAMPLE_CHARS = 600

TITLES = {M.REWARDS_MARGINS: "Reward margin", M.eval_name(M.REWARDS_MARGINS): "Eval reward margin",
          M.REWARDS_ACCURACIES: "Accuracy", M.eval_name(M.REWARDS_ACCURACIES): "Eval accuracy", M.LOSS: "Loss",
          M.LOGPS_CHOSEN: "Log-prob chosen", M.LOGPS_REJECTED: "Log-prob rejected", M.EVAL_KL: "Sampled KL (eval)",
          M.OBJECTIVE_KL: "KL (PPO objective)", M.OBJECTIVE_ENTROPY: "Entropy (PPO objective)"}

CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif; color: #222; margin: 24px auto;
       max-width: 1280px; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.meta, .note { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 8px; }
.legend span { margin-right: 16px; white-space: nowrap; } .swatch { display: inline-block; width: 18px; height: 4px;
       vertical-align: middle; margin-right: 4px; }
.sample { border: 1px solid #e3e3e3; border-radius: 4px; padding: 6px 8px; margin: 6px 0; background: #fafafa; }
.sample .prompt { color: #555; font-size: 12px; } pre { white-space: pre-wrap; margin: 4px 0 0; font-size: 12px; }
"""


def _cell(value) -> str:
    return cell_text(value) if value is None or isinstance(value, float | MeanStd) else str(value)


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{escape(c)}</td>" if i >= numeric_from else f"<th>{escape(c)}</th>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _entry_line(c: Comparison, entry: Entry, metric: str, color: str) -> ChartLine | None:
    """A run's curve (smoothed unless the metric is logged at evaluations only), or a group's mean with its band."""
    curves = [c.series[metric][i] for i in entry.run_ids if i in c.series.get(metric, {})]
    if not curves:
        return None
    sparse = metric.startswith(M.EVAL_PREFIX)
    if not sparse:
        curves = [(x, ema(y, SMOOTHING)) for x, y in curves]
    if not entry.is_group:
        x, y = curves[0]
        return ChartLine(entry.label, color, x, y, markers=sparse)
    band = seed_band(curves)
    return ChartLine(entry.label, color, band.steps, band.mean, band.lower, band.upper, markers=sparse)


def _charts(c: Comparison, colors: list[str]) -> str:
    svgs = []
    for metric in c.charted_metrics():
        lines = [ln for e, col in zip(c.entries, colors, strict=True) if (ln := _entry_line(c, e, metric, col))]
        svgs.append(f"<figure style='margin:0'>{line_chart_svg(TITLES.get(metric, metric), lines)}</figure>")
    if not svgs:
        return "<p class='note'>None of these runs has logged metrics yet.</p>"
    legend = "".join(f"<span><span class='swatch' style='background:{col}'></span>{escape(e.label)}</span>"
                     for e, col in zip(c.entries, colors, strict=True))
    groups = any(e.is_group for e in c.entries)
    note = (f"Train curves are smoothed (EMA {SMOOTHING}); evaluation curves (markers) are not."
            + (" A seed group is drawn as the mean of its runs at each step with a band of ±1 standard deviation "
               "(sample std, over the runs that logged that step)." if groups else ""))
    return f"<p class='legend'>{legend}</p><p class='note'>{escape(note)}</p><div class='charts'>{''.join(svgs)}</div>"


def _runs_table(c: Comparison) -> str:
    rows = []
    for s in c.runs:
        r = s.run
        total = f"/{r['total_steps']}" if r.get("total_steps") else ""
        loss = r["config"].get("loss_type")
        method = f"{r['method']} ({loss})" if loss and loss != "sigmoid" else r["method"]
        group = c.group_names.get(r.get("group_id") or -1, "")
        rows.append([r["name"], str(r["id"]), method, r["model"].rsplit("/", 1)[-1], r["status"],
                     f"{r['step']}{total}", str(r["config"].get("seed", "–")), group, r.get("device") or "–"])
    return _table(["run", "id", "method", "model", "status", "step", "seed", "seed group", "device"], rows,
                  numeric_from=99)


def _settings(c: Comparison, labels: list[str]) -> str:
    fields = c.differing_fields()
    if len(c.entries) < 2:
        return "<p class='note'>One run (or one seed group): nothing to compare settings with.</p>"
    if not fields:
        return "<p class='note'>All settings are the same.</p>"
    configs = c.entry_configs()
    return _table(["setting", *labels], [[f, *[_cell(cfg.get(f)) for cfg in configs]] for f in fields])


def _final(c: Comparison, labels: list[str]) -> str:
    metrics = [m for m in c.series if any(m in s.final for s in c.runs)]
    rows = [[key, *[", ".join(dict.fromkeys(str(s.run[key]) for s in c.entry_runs(e))) for e in c.entries]]
            for key in ("status", "step")]
    rows += [[m, *[cell_text(c.final(e, m), of=len(e.run_ids)) for e in c.entries]] for m in metrics]
    note = ("A seed group's cell is the mean ± sample standard deviation over its finished runs (n: how many, "
            "when not all of them)."
            if any(e.is_group for e in c.entries) else "")
    return _table(["metric", *labels], rows) + (f"<p class='note'>{escape(note)}</p>" if note else "")


def _cost(c: Comparison, labels: list[str]) -> str:
    rows = [[label, *[cell_text(c.cost(e, f), f, of=len(e.run_ids)) for e in c.entries]] for f, label in COST_ROWS]
    price = ("no price per GPU-hour set, so no money figure" if c.price_per_gpu_hour is None
             else f"cost = GPU hours × {c.price_per_gpu_hour:g} per GPU-hour")
    note = (f"Wall time runs from a run's creation to its end (queue wait included); training time leaves out the "
            f"pauses between a stop and a resume; GPU time is training time × CUDA GPUs (0 on CPU); tokens are "
            f"those of the training batches, tokens/s is over the whole training time; peak memory is GPU memory "
            f"on a GPU, the process's peak RSS on CPU; {price}.")
    return _table(["", *labels], rows) + f"<p class='note'>{escape(note)}</p>"


def _arena(c: Comparison) -> str:
    if c.arena is None:
        return "<p class='note'>No arena results for these runs.</p>"
    rows = [[_cell(v) for v in row] for row in c.arena.rows]
    note = f"<p class='note'>{escape(c.arena.note)}</p>" if c.arena.note else ""
    return _table(list(c.arena.columns), rows, numeric_from=1) + note


def _samples(c: Comparison) -> str:
    parts = []
    for s in c.runs:
        parts.append(f"<h3>{escape(s.run['name'])}</h3>")
        if not s.samples:
            parts.append("<p class='note'>No samples yet.</p>")
            continue
        parts.append(f"<p class='note'>At step {s.samples[0]['step']}.</p>")
        for row in s.samples:
            text = row["text"] if len(row["text"]) <= SAMPLE_CHARS else row["text"][:SAMPLE_CHARS] + " …"
            prompt = (row.get("prompt_text") or "")[:300]
            parts.append(f"<div class='sample'><div class='prompt'>{escape(prompt)}</div>"
                         f"<pre>{escape(text)}</pre></div>")
    return "".join(parts)


def render_html(c: Comparison) -> str:
    """The report as one HTML document."""
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(c.entries))]
    labels = [e.label for e in c.entries]
    names = ", ".join(s.run["name"] for s in c.runs)
    sections = [
        ("Runs", _runs_table(c)), ("Charts", _charts(c, colors)), ("Settings that differ", _settings(c, labels)),
        ("Final metrics", _final(c, labels)), ("Cost", _cost(c, labels)), ("Arena", _arena(c)),
        ("Samples", _samples(c)),
    ]
    body = "".join(f"<h2>{escape(title)}</h2>{html}" for title, html in sections)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(c.project)}: {escape(names)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(c.project)}: comparison of {len(c.runs)} run{'s' if len(c.runs) != 1 else ''}</h1>"
            f"<p class='meta'>{escape(names)} · written {escape(c.created_at)} by Preference Studio</p>"
            f"{body}</body></html>\n")
