"""`studio gui`, `studio screenshot` and `studio bench gui`: the desktop app and looking at it headless.

Qt is imported inside the command functions only: `studio` loads every command module at start.
User errors are raised as CommandError or ProjectError (printed by the CLI with exit status 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="Open the app (what `studio` does without a subcommand).",
                       description="Open the desktop app, on PROJECT when given (else the start page with "
                                   "recent projects).")
    p.add_argument("project", nargs="?", help="project folder to open")
    p.add_argument("--annotator", help="who is labeling (default: the last name used here, else the OS user)")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("screenshot", help="Render a view of a project offscreen to a PNG.",
                       description="Open PROJECT offscreen at the given size, show a view (label, data, or a "
                                   "Runs view such as runs, monitor, compare) and save it as a PNG.")
    p.add_argument("project", help="project folder")
    p.add_argument("--view", required=True, help="label, data, review, or a view the Runs section registers")
    # README and the usage line say `--run ID ...`: take `--run 1 2` as well as `--run 1 --run 2`
    p.add_argument("--run", type=int, action="extend", nargs="+", dest="runs", metavar="ID", default=[],
                   help="run id(s) for run views: --run 1 2 (or --run 1 --run 2) for compare")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--size", default="1280x800", help="window size WIDTHxHEIGHT (default 1280x800)")
    p.add_argument("--annotator", help="annotator whose queue the label view shows")
    p.set_defaults(func=cmd_screenshot)


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser("gui", help="Window start time, next-pair latency and memory at 100k/1M pairs.",
                             description="Start-to-interactive time of the main window against a bare PySide6 "
                                         "window (median of N fresh processes), next-pair latency (p50/p95) and "
                                         "memory (RSS) on generated projects.")
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated pair counts (default 100000,1000000)")
    p.add_argument("--starts", type=int, default=5, help="fresh processes per start measurement (default 5)")
    p.add_argument("--labels", type=int, default=200, help="pairs labeled per latency measurement (default 200)")
    p.add_argument("--dir", help="keep the generated projects here and reuse them (default: a temp folder)")
    p.set_defaults(func=cmd_bench_gui)

    p = bench_sub.add_parser("monitor", help="Live monitor redraw and paint time at 100k points per series, and "
                                             "labeling latency while a run writes metrics.",
                             description="Redraw/paint time of the run monitor with POINTS steps per series, and "
                                         "the labeling view's next-pair latency idle vs while a fake run writes 20 "
                                         "metrics at 10 steps/s.")
    p.add_argument("--points", type=int, default=100_000, help="steps per series (default 100000)")
    p.add_argument("--seconds", type=float, default=6.0, help="how long to label while the fake run writes")
    p.set_defaults(func=cmd_bench_monitor)


def _project_error(message: str) -> Exception:
    from studio.commands import CommandError

    return CommandError(message)


def cmd_gui(args: argparse.Namespace) -> int:
    if args.project is not None:
        from studio.store import Project

        Project.open(args.project).close()  # a clear error on the terminal before any window opens
    from studio.ui.app import run_gui

    return run_gui(args.project, annotator=args.annotator)


def cmd_screenshot(args: argparse.Namespace) -> int:
    from studio.store import Project

    Project.open(args.project).close()
    from studio.ui import screenshot

    try:
        size = screenshot.parse_size(args.size)
        out = screenshot.take_screenshot(args.project, args.view, args.out, size, args)
    except (ValueError, OSError) as e:
        raise _project_error(str(e)) from None
    print(f"wrote {out} ({size[0]}x{size[1]}, view {args.view})")
    return 0


def cmd_bench_gui(args: argparse.Namespace) -> int:
    from studio.ui import bench

    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise _project_error(f"--sizes: expected comma-separated integers, got {args.sizes!r}") from None
    bench.run(sizes, starts=args.starts, labels=args.labels, keep_dir=Path(args.dir) if args.dir else None)
    return 0


def cmd_bench_monitor(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from studio.ui.runs import bench

    return int(bench.run_bench(points=args.points, seconds=args.seconds) or 0)
