"""`studio bench store|import-wait|dpo|startup|ppo|gui|monitor`: the benchmarks, which print figures.

Only the parsers are built here; each command imports its benchmark from studio.bench (and with it the
store, Qt or torch) inside its function, so `studio --help` and the other commands load no benchmark code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from studio.commands import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="Benchmarks that print figures (store, import-wait, dpo, startup, ppo, gui, "
                                         "monitor).")
    what = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)

    p = what.add_parser("store", help="Import, stats, export and next-pair timings on synthetic pairs.")
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated pair counts (default 100000,1000000)")
    p.add_argument("--out", help="folder for the benchmark projects (default a temporary folder, removed after)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.set_defaults(func=cmd_store)

    p = what.add_parser("import-wait", help="How long another writer waits while a large file is imported.",
                        description="Import N synthetic pairs while a second process saves a label every "
                                    "~50 ms; print the import's time and the longest wait of a label save.")
    p.add_argument("--pairs", type=int, default=400_000, help="pairs in the imported file (default 400000)")
    p.add_argument("--out", help="folder for the files (default a temporary folder, removed after)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.set_defaults(func=cmd_import_wait)

    p = what.add_parser("dpo", help="Tokens/s and peak memory of our DPO engine against TRL's DPOTrainer.")
    p.add_argument("--model-shape", default="tiny", choices=("tiny", "small", "qwen2.5-0.5b"),
                   help="random-weight model shape")
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps (after 2 warmup steps)")
    p.add_argument("--batch", type=int, default=8, help="preference pairs per step")
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--completion-len", type=int, default=256)
    p.add_argument("--only", choices=("ours", "trl"), help="run one side only")
    p.add_argument("--checkpointing", choices=("off", "on", "both"), default="both",
                   help="TRL with gradient checkpointing on (its default) and/or off, ours the same and with "
                        "'auto' (default both)")
    p.add_argument("--layout", choices=("auto", "packed", "padded", "both"), default="auto",
                   help="our batch layout: auto (packed where the model allows), packed, padded, or both "
                        "(auto and padded)")
    p.add_argument("--compile", action="store_true", help="add a case of ours with torch.compile'd decoder layers")
    p.add_argument("--trl-head", choices=("gpu-path", "cpu"), default="gpu-path",
                   help="off a GPU: gpu-path makes TRL score completion rows only, as its GPU code path does "
                        "(default); cpu keeps its own CPU choice (every position)")
    p.add_argument("--no-head-memory", dest="head_memory", action="store_false",
                   help="skip the lm_head memory measurement at a 152k vocabulary")
    p.add_argument("--head-hidden", type=int, default=64,
                   help="hidden size of the measured lm_head (its tiles do not depend on it; default 64)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per case (0: torch's default). On a shared CPU use 1: spinning threads "
                        "of an oversubscribed machine make the figures swing tenfold")
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    p.set_defaults(func=cmd_dpo)

    p = what.add_parser("startup", help="Launch to first optimizer step, peak memory and stop latency of "
                                        "`studio train` on a large snapshot.",
                        description="Fills a project with PAIRS labeled plain pairs, then times `studio train "
                                    "PROJECT --run ID` (the tiny model) from launch to its first optimizer step "
                                    "with its peak RSS, and how long a stop asked while it prepares takes.")
    p.add_argument("--pairs", type=int, default=300_000, help="pairs in the snapshot (default 300000)")
    p.add_argument("--max-steps", type=int, default=1500, help="the run's max_steps (default 1500)")
    p.add_argument("--batch", type=int, default=4, help="the run's batch_size (default 4)")
    p.add_argument("--stop-after", type=float, default=15.0, metavar="SECONDS",
                   help="ask a second run to stop this long after launch (0: skip; default 15)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the worker (default 1)")
    p.add_argument("--out", help="keep the project and model here (default a temporary folder)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.set_defaults(func=cmd_startup)

    p = what.add_parser("ppo", help="Where a PPO/RLOO step's time goes, tokens/s and peak memory, next to DPO.",
                        description="A step of each method on the same synthetic prompts and random-weight model "
                                    "shape, each in its own process: seconds per step split into generation, the "
                                    "no-grad forwards, scoring and optimisation, tokens/s and peak memory (GPU "
                                    "when there is one, else process RSS).")
    p.add_argument("--model-shape", default="tiny", choices=("tiny", "small", "qwen2.5-0.5b"),
                   help="random-weight model shape")
    p.add_argument("--methods", default="dpo,ppo,rloo", help="comma-separated cases (default dpo,ppo,rloo)")
    p.add_argument("--steps", type=int, default=4, help="timed steps (after 2 warmup steps)")
    p.add_argument("--batch", type=int, default=8, help="prompts (DPO: pairs) per step; RLOO: a multiple of 4")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--completion-len", type=int, default=128, help="response tokens (PPO/RLOO: max_new_tokens)")
    p.add_argument("--checkpointing", choices=("off", "on"), default="off", help="gradient checkpointing")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per case (0: torch's default; on a shared CPU use 1)")
    p.add_argument("--dir", help="build the project here and keep it (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    p.set_defaults(func=cmd_ppo)

    p = what.add_parser("gui", help="Window start time, next-pair latency and memory at 100k/1M pairs.",
                        description="Start-to-interactive time of the main window against a bare PySide6 "
                                    "window (median of N fresh processes), next-pair latency (p50/p95) and "
                                    "memory (RSS) on generated projects, then next-pair latency onto long texts.")
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated pair counts (default 100000,1000000)")
    p.add_argument("--starts", type=int, default=5, help="fresh processes per start measurement (default 5)")
    p.add_argument("--labels", type=int, default=200, help="pairs labeled per latency measurement (default 200)")
    p.add_argument("--long-repeats", type=int, default=5,
                   help="pairs labeled per long-text shape (default 5; 0 leaves the long texts out)")
    p.add_argument("--dir", help="keep the generated projects here and reuse them (default: a temp folder)")
    p.set_defaults(func=cmd_gui)

    p = what.add_parser("monitor", help="Live monitor redraw and paint time at 100k points per series, and "
                                        "labeling latency while a run writes metrics.",
                        description="Redraw/paint time of the run monitor with POINTS steps per series, and "
                                    "the labeling view's next-pair latency idle vs while a fake run writes 20 "
                                    "metrics at 10 steps/s.")
    p.add_argument("--points", type=int, default=100_000, help="steps per series (default 100000)")
    p.add_argument("--seconds", type=float, default=6.0, help="how long to label while the fake run writes")
    p.set_defaults(func=cmd_monitor)


def _sizes(text: str) -> list[int]:
    """--sizes '100000,1000000' (underscores allowed) as pair counts."""
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CommandError(f"--sizes {text!r}: expected comma-separated integers such as 100000,1000000") \
            from None
    if not sizes or min(sizes) < 1:
        raise CommandError("--sizes: give at least one positive pair count")
    return sizes


def _progress(msg: str) -> None:
    """A benchmark's progress lines go to stderr, so stdout holds only its figures."""
    print(msg, file=sys.stderr, flush=True)


def _report(text: str, result, as_json: bool) -> int:
    """A benchmark's figures as text, then as JSON with --json."""
    print(text)
    if as_json:
        print(json.dumps(result, indent=2))
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    sizes = _sizes(args.sizes)
    from studio.bench.store import format_table, run_store_bench

    results = run_store_bench(sizes, args.out, log=_progress)
    return _report(format_table(results), results, args.json)


def cmd_import_wait(args: argparse.Namespace) -> int:
    if args.pairs < 1:
        raise CommandError("--pairs: give a positive number of pairs")
    from studio.bench.import_wait import format_result, run

    result = run(args.pairs, args.out, log=_progress)
    return _report(format_result(result), result, args.json)


def cmd_dpo(args: argparse.Namespace) -> int:
    from studio.bench import dpo

    return dpo.main(args)


def cmd_startup(args: argparse.Namespace) -> int:
    if args.pairs < 1 or args.max_steps < 1 or args.batch < 1:
        raise CommandError("--pairs, --max-steps, --batch: give positive numbers")
    from studio.bench.startup import format_result, run_bench

    result = run_bench(args.pairs, args.max_steps, args.batch, args.stop_after, args.threads, args.out,
                       log=_progress)
    return _report(format_result(result), result, args.json)


def cmd_ppo(args: argparse.Namespace) -> int:
    from studio.bench import ppo

    return ppo.main(args)


def cmd_gui(args: argparse.Namespace) -> int:
    sizes = _sizes(args.sizes)
    from studio.bench import gui

    gui.run(sizes, starts=args.starts, labels=args.labels, keep_dir=Path(args.dir) if args.dir else None,
            long_repeats=args.long_repeats)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from studio.bench import monitor

    return monitor.run_bench(points=args.points, seconds=args.seconds)
