"""`studio compare` and `studio report`: final metrics and cost of runs side by side, and the HTML report."""

from __future__ import annotations

import argparse
import sys

from studio.commands import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="Final metrics and cost of runs side by side (seed groups as mean ± std).",
                       description="Print each run's final metrics and its cost (wall, training and GPU time, "
                                   "tokens, tokens/s, peak memory, samples generated, money at a price per "
                                   "GPU-hour); the runs of a seed group compared together are also summarised as "
                                   "mean ± std over their finished runs.")
    p.add_argument("project", help="project folder")
    p.add_argument("runs", type=int, nargs="+", metavar="RUN", help="run ids")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON (see docs/runs.md)")
    _price_argument(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="Write a self-contained HTML report comparing runs.",
                       description="Write one HTML file that opens anywhere without a network: charts (inline SVG), "
                                   "the settings that differ, final metrics, costs, arena results and a few samples "
                                   "per run; seed groups drawn as their mean with a band of ±1 std.")
    p.add_argument("project", help="project folder")
    p.add_argument("--runs", type=int, nargs="+", required=True, metavar="ID", help="run ids to compare")
    p.add_argument("--out", required=True, metavar="FILE.html", help="the file to write")
    _price_argument(p)
    p.set_defaults(func=cmd_report)


def _price_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--price-per-gpu-hour", metavar="PRICE",
                   help="price of one GPU-hour for the money figure, 0 or more (default: the project's setting, "
                        "made in the app's Compare view)")


def _price(project, text: str | None) -> float | None:
    """The price given on the command line, else the project's own (None: no money figure)."""
    from studio.core.costs import parse_price
    from studio.store.comparison import price_per_gpu_hour

    if text is None:
        return price_per_gpu_hour(project)
    try:
        return parse_price(text, "--price-per-gpu-hour")
    except ValueError as e:
        raise CommandError(str(e)) from None


TEXT_METRICS_NOTE = "(every metric's final value: --json)"


def cmd_compare(args: argparse.Namespace) -> int:
    from studio.core import metrics as M
    from studio.core.comparison import cell_text, dumps
    from studio.core.costs import COST_ROWS
    from studio.store import Project
    from studio.store.comparison import gather

    with Project.open(args.project) as project:
        c = gather(project, args.runs, _price(project, args.price_per_gpu_hour))
    if args.json:
        print(dumps(c))
        return 0
    from studio.commands.project import _table

    # the table shows the charted metrics; --json has them all
    metrics = [m for m in c.charted_metrics() if m not in (M.NUM_TOKENS, M.SAMPLES_GENERATED)]
    rows = [["status", *[s.run["status"] for s in c.runs]], ["step", *[s.run["step"] for s in c.runs]]]
    rows += [[m, *[cell_text(s.final.get(m)) for s in c.runs]] for m in metrics]
    rows += [[label, *[cell_text(getattr(s.cost, f), f) for s in c.runs]] for f, label in COST_ROWS]
    print(_table(rows, [TEXT_METRICS_NOTE, *[s.run["name"] for s in c.runs]]))
    groups = [e for e in c.entries if e.is_group]
    if groups:
        rows = [[m, *[cell_text(c.final(e, m), of=len(e.run_ids)) for e in groups]] for m in metrics]
        rows += [[label, *[cell_text(c.cost(e, f), f, of=len(e.run_ids)) for e in groups]] for f, label in COST_ROWS]
        print("\n" + _table(rows, ["seed groups: mean ± std of finished runs", *[e.label for e in groups]]))
    if c.price_per_gpu_hour is None:
        print("\nno price per GPU-hour set: give --price-per-gpu-hour for the cost in money", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from studio.store import Project
    from studio.store.comparison import write_report

    with Project.open(args.project) as project:
        out = write_report(project, args.runs, args.out, _price(project, args.price_per_gpu_hour))
    print(f"wrote {out}")
    return 0
