"""`studio` subcommands for projects: init, import, export, stats, runs, metrics, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from studio.commands import CommandError

IMPORT_CHOICES = ("auto", "trl", "trl-chat", "hh", "ultrafeedback", "pairs", "prompts")
EXPORT_CHOICES = ("trl", "trl-chat", "labels", "csv")
PROGRESS_MIN_ROWS = 20_000
"""Files with at least this many rows get a progress line on stderr."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="Create a new, empty project folder.")
    p.add_argument("project", help="folder to create (holds studio.db and runs/)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("import", help="Import preference pairs or prompts from JSONL, JSON or CSV.",
                       description="Import a file into a project (created if the folder has none). The whole "
                                   "file is checked first; by default one bad row means nothing is imported.")
    p.add_argument("project")
    p.add_argument("file")
    p.add_argument("--format", default="auto", choices=IMPORT_CHOICES,
                   help="input format; auto tells it from the fields (default)")
    p.add_argument("--split", default="train", choices=("train", "eval"), help="split of new prompts")
    p.add_argument("--annotator", help="annotator of imported labels (default import:<file name>)")
    p.add_argument("--skip-invalid", action="store_true", help="import the valid rows and list the others")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="Export resolved preferences (TRL-ready) or every raw label.")
    p.add_argument("project")
    p.add_argument("out", help="output file (.jsonl, .json or .csv)")
    p.add_argument("--format", default="trl", choices=EXPORT_CHOICES,
                   help="trl: prompt/chosen/rejected strings; trl-chat: message lists; labels: every raw "
                        "label; csv: prompt/chosen/rejected columns")
    p.add_argument("--split", choices=("train", "eval"), help="only this split (default both)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("stats", help="Label counts, biases and inter-annotator agreement.")
    p.add_argument("project")
    p.add_argument("--split", choices=("train", "eval"))
    p.add_argument("--json", action="store_true", help="print the stable JSON object (see docs/store.md)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("runs", help="List training runs and their health warnings.")
    p.add_argument("project")
    p.add_argument("--json", action="store_true", help="print the runs as JSON, each with its warnings")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("metrics", help="Every metric row of a run (step, name, value) and its health warnings.")
    p.add_argument("project")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true", help='print {"run", "metrics", "warnings"} (see docs/runs.md)')
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("samples", help="A run's samples on its probe prompts at an evaluation, with per-sample "
                                       "measures (length, hit the cap, repetition, KL, entropy).")
    p.add_argument("project")
    p.add_argument("run", type=int)
    p.add_argument("--step", type=int, help="the evaluation step (default: the latest with samples)")
    p.add_argument("--json", action="store_true",
                   help='print {"run", "step", "steps", "metrics", "samples"} (see docs/runs.md)')
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("demo", help="Create a demo project with sample prompts, pairs and labels.")
    p.add_argument("project", help="folder to create")
    p.add_argument("--no-model", action="store_true",
                   help="skip writing the tiny demo model to PROJECT/models/tiny-demo")
    p.add_argument("--no-open", action="store_true",
                   help="only build the project, never open a window (for scripts and tests; imports no Qt)")
    p.set_defaults(func=cmd_demo)


def _open(folder: str):
    from studio.store import Project

    return Project.open(folder)


def cmd_init(args: argparse.Namespace) -> int:
    from studio.store import Project

    Project.create(args.project).close()
    print(f"created project {args.project}")
    return 0


class _ProgressLine:
    """Prints `importing FILE: 40%` on stderr every 10%, for files big enough to take a while."""

    def __init__(self, name: str):
        self.name = name
        self.shown = 0  # first line at 10%

    def __call__(self, done: int, total: int) -> None:
        if total < 2 * PROGRESS_MIN_ROWS:
            return
        pct = 100 * done // total
        if pct // 10 > self.shown:
            self.shown = pct // 10
            print(f"importing {self.name}: {pct}%", file=sys.stderr, flush=True)


EXIT_INVALID_ROWS = 1
"""`studio import`: rows of the file are invalid (each printed as FILE:LINE: field: message); nothing imported."""
EXIT_FILE_REJECTED = 3
"""`studio import`: the file as a whole cannot be imported (missing, a folder, empty, not text, compressed
other than gzip, a JSON array named .jsonl, fields that fit no format, a labels export)."""


def _remove_new_project(folder: Path, folder_existed: bool) -> None:
    """Take back a project this command created, so a failed import leaves no project behind."""
    import shutil

    from studio.core import paths

    for name in (paths.DB_NAME, f"{paths.DB_NAME}-wal", f"{paths.DB_NAME}-shm"):
        (folder / name).unlink(missing_ok=True)
    runs = folder / paths.RUNS_DIR
    if runs.is_dir() and not any(runs.iterdir()):
        runs.rmdir()
    if not folder_existed and folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


def cmd_import(args: argparse.Namespace) -> int:
    from studio.core import paths
    from studio.store import Project
    from studio.store.formats import FileRejected, ImportErrors, parse_file
    from studio.store.import_writing import write_parsed

    path = Path(args.file)
    progress = _ProgressLine(path.name)
    # Check the file before touching the project, so a bad file does not even create the folder.
    try:
        parsed = parse_file(path, args.format, progress=progress)
    except FileRejected as e:
        raise CommandError(f"{e}; nothing was imported", code=EXIT_FILE_REJECTED) from None
    except ImportErrors as e:  # not one record of the file's start could be read
        errors, total = e.errors, None
    else:
        errors, total = parsed.errors, parsed.total
        if errors and args.skip_invalid and parsed.rows:
            errors = []
    if errors:
        for err in errors:
            print(err, file=sys.stderr)
        if total is None:
            what = "its first records are all invalid"
        elif args.skip_invalid:
            what = f"none of its {total} rows is valid"
        else:
            what = f"{len(errors)} invalid row(s) of {total}"
        hint = "" if args.skip_invalid else " (fix them, or use --skip-invalid to import the valid rows)"
        raise CommandError(f"{path}: {what}; nothing was imported{hint}", code=EXIT_INVALID_ROWS)
    folder = Path(args.project)
    folder_existed, created = folder.exists(), not paths.db_path(folder).exists()
    try:
        with Project.open(folder, create=True) as project:
            report = write_parsed(project, parsed, args.split, args.annotator, args.skip_invalid, progress)
    except BaseException:
        if created:
            _remove_new_project(folder, folder_existed)
        raise
    for err in report.invalid:
        print(f"skipped: {err}", file=sys.stderr)
    what = "prompts" if report.format == "prompts" else "pairs"
    added = report.prompts_added if report.format == "prompts" else report.pairs_added
    line = (f"imported {path.name} as {report.format}: {report.rows} rows, {added} {what} added, "
            f"{report.duplicates} duplicates skipped")
    if report.format != "prompts":
        line += f", {report.prompts_added} new prompts"
    if report.labels_added:
        line += f", {report.labels_added} labels by {report.annotator}"
    if report.invalid:
        line += f", {len(report.invalid)} invalid rows skipped"
    print(line)
    return 0


def _left_out_text(left_out: dict[str, int]) -> str:
    names = {"tie": "ties", "both_bad": "both bad", "no_majority": "without a majority", "skipped": "only skipped"}
    return ", ".join(f"{left_out.get(k, 0)} {v}" for k, v in names.items())


def cmd_export(args: argparse.Namespace) -> int:
    from studio.store.export import export_file

    with _open(args.project) as project:
        report = export_file(project, args.out, args.format, args.split)
    if args.format == "labels":
        print(f"wrote {report.rows} labels to {report.file}")
    else:
        print(f"wrote {report.rows} preferences to {report.file} (left out: {_left_out_text(report.left_out)})")
    return 0


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "-"
    if pct:
        return f"{100 * x:.1f}%"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _print_warnings(warnings: list[str], prefix: str = "") -> None:
    """Each warning after a blank line, as `warning: PREFIX...`."""
    for w in warnings:
        print(f"\nwarning: {prefix}{w}")


def cmd_stats(args: argparse.Namespace) -> int:
    from studio.store.statistics import project_stats

    with _open(args.project) as project:
        s = project_stats(project, args.split)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    c = s["counts"]
    print(f"project {s['project']}" + (f" (split {s['split']})" if s["split"] else ""))
    print(_table([
        ["prompts", c["prompts"]], ["pairs", c["pairs"]], ["  unlabeled", c["unlabeled_pairs"]],
        ["  labeled", c["labeled_pairs"]], [f"  needing more (target {c['overlap_target']})", c["needs_more_pairs"]],
        ["  only skipped", c["only_skipped_pairs"]],
        ["labels current / replaced / undone",
         f"{c['labels']['current']} / {c['labels']['replaced']} / {c['labels']['undone']}"],
    ], ["", "count"]))
    r = s["resolved"]
    print(f"\nresolved preferences: {r['preferences']} (left out: {_left_out_text(r)})")
    print("\n" + _table([[k, v["count"], _fmt(v["share"], True)] for k, v in s["label_distribution"].items()],
                        ["label", "count", "share"]))
    pb, lb, ag = s["position_bias"], s["length_bias"], s["agreement"]
    ci = pb["ci95"]
    lci = lb["ci95"]
    print("\n" + _table([
        ["position: left response won", _fmt(pb["share"], True),
         f"95% {_fmt(ci[0], True)}-{_fmt(ci[1], True)}" if ci else "", f"n={pb['decided']}"],
        ["length: chosen is longer", _fmt(lb["share"], True),
         f"95% {_fmt(lci[0], True)}-{_fmt(lci[1], True)}" if lci else "", f"n={lb['decided_pairs']}"],
        ["length: median ratio chosen/rejected", _fmt(lb["median_ratio"]), "", ""],
        ["agreement: all annotators agree", _fmt(ag["percent"], True), "", f"pairs={ag['pairs']}"],
        ["agreement: Cohen's kappa", _fmt(ag["cohens_kappa"]), "", f"annotators={ag['annotators']}"],
        ["agreement: Krippendorff's alpha", _fmt(ag["krippendorff_alpha"]), "", ""],
    ], ["bias / agreement", "value", "interval", "of"]))
    audit = s["annotator_audit"]

    def share(entry: dict | None) -> str:
        if not entry or entry["share"] is None:
            return "-"
        lo, hi = entry["ci95"]
        return f"{100 * entry['share']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f}, n={entry['n']})"

    if audit["people"]:
        print("\n" + _table([[a["name"], a["labels"], share(a["left"]), share(a["longer"]),
                              _fmt(a["length_coefficient"]), _fmt(a["median_seconds"]),
                              share(a["fast_labels"]), share(a["majority_agreement"])] for a in audit["people"]],
                            ["annotator", "labels", "chose left (95%)", "chose longer (95%)", "length coef.",
                             "median s", f"under {audit['time_floor_seconds']:g} s", "agrees with majority"]))
    if audit["imported"]:
        print("\nimported labels (no screen sides, no timing; not part of any majority):")
        print(_table([[a["name"], a["labels"], share(a["longer"]), _fmt(a["length_coefficient"]),
                       share(a["majority_agreement"])] for a in audit["imported"]],
                     ["source", "labels", "chose longer (95%)", "length coef.", "agrees with people's majority"]))
    _print_warnings(s["warnings"])
    return 0


RUN_KEYS = ("id", "name", "method", "status", "model", "step", "total_steps", "created_at", "started_at", "ended_at",
            "error", "group_id")


def say_dead_runs(project) -> None:
    """Name on stderr the runs that opening the project found dead (worker gone) and marked failed."""
    for run_id in project.found_dead_runs:
        print(f"run {run_id}: marked failed: {project.run(run_id)['error']}", file=sys.stderr)


def cmd_runs(args: argparse.Namespace) -> int:
    from studio.core.health import HEALTH_METRICS, run_warnings
    from studio.store.run_metrics import read_run_series
    from studio.store.run_queue import queue_places, status_with_place

    with _open(args.project) as project:
        say_dead_runs(project)
        rows = project.runs()
        places = queue_places(rows)
        # reward_model: a PPO/RLOO run's reward (a reward run id or a classifier folder), None for other methods
        runs = [{**{k: r[k] for k in RUN_KEYS}, "queue_place": places.get(r["id"]),
                 "reward_model": r["config"].get("reward_model")} for r in rows]
        for r in runs:  # only the rows the rules read: a long run has over a million
            r["warnings"] = run_warnings(read_run_series(project, r["id"], HEALTH_METRICS))
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    if not runs:
        print("no runs yet")
        return 0
    print(_table([[r["id"], r["name"], r["method"], status_with_place(r["status"], r["queue_place"]), r["model"],
                   f"{r['step']}/{r['total_steps'] or '?'}", r["created_at"] or "", r["started_at"] or "",
                   r["ended_at"] or ""] for r in runs],
                 ["id", "name", "method", "status", "model", "steps", "created", "started", "ended"]))
    for r in runs:
        _print_warnings(r["warnings"], f"run {r['id']} ({r['name']}): ")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from studio.core.health import run_warnings
    from studio.core.series import RunSeries
    from studio.store.run_metrics import metric_chunks

    rs = RunSeries()
    rows: list[dict] = []
    with _open(args.project) as project:
        project.run(args.run)  # a clear error for an unknown run
        for chunk in metric_chunks(project, args.run):
            rs.add_rows(chunk)
            rows += [{"step": s, "name": n, "value": v, "time": t} for _id, s, v, t, n in chunk]
    warnings = run_warnings(rs)
    if args.json:
        print(json.dumps({"run": args.run, "metrics": rows, "warnings": warnings}, indent=2))
        return 0
    if not rows:
        print(f"run {args.run}: no metrics yet")
        return 0
    print(_table([[r["step"], r["name"], _fmt(r["value"])] for r in rows], ["step", "name", "value"]))
    _print_warnings(warnings)
    return 0


SAMPLE_MEASURES = ("tokens", "hit_cap", "repetition", "kl_seq", "kl_k1_seq", "entropy")
"""The per-sample measures `studio samples` prints (all of `meta` is in its JSON)."""


def cmd_samples(args: argparse.Namespace) -> int:
    from studio.core import metrics as M

    with _open(args.project) as project:
        project.run(args.run)  # a clear error for an unknown run
        steps = project.sample_steps(args.run)
        if not steps:
            raise CommandError(f"run {args.run}: no samples yet (they are taken at evaluations)", code=1)
        step = steps[-1] if args.step is None else args.step
        if step not in steps:
            raise CommandError(f"--step {step}: run {args.run} has samples at steps {', '.join(map(str, steps))}")
        samples = project.samples(args.run, step=step)
        metrics = {name: value for _id, s, name, value, _t in project.metrics(args.run, names=M.SAMPLE_METRICS)
                   if s == step}
    if args.json:
        print(json.dumps({"run": args.run, "step": step, "steps": steps, "metrics": metrics, "samples": [
            {"prompt_id": s["prompt_id"], "prompt": s["prompt_text"], "text": s["text"], **s["meta"]}
            for s in samples]}, indent=2))
        return 0
    prompts = list(dict.fromkeys(s["prompt_id"] for s in samples))
    print(f"run {args.run}, step {step}: {len(samples)} samples of {len(prompts)} prompts"
          f" (steps with samples: {', '.join(map(str, steps))})")
    shown = [(n, metrics[n]) for n in (M.EVAL_SAMPLE_LENGTH, M.EVAL_SAMPLE_HIT_CAP, M.EVAL_DISTINCT_1,
                                        M.EVAL_DISTINCT_2, M.EVAL_SELF_SIMILARITY, M.EVAL_REPETITION,
                                        M.EVAL_SAMPLE_ENTROPY, M.EVAL_KL, M.EVAL_KL_K1) if n in metrics]
    if shown:
        print("  ".join(f"{n.removeprefix(M.EVAL_PREFIX)} {_fmt(v)}" for n, v in shown))
    for pid in prompts:
        group = [s for s in samples if s["prompt_id"] == pid]
        print(f"\n== prompt {pid}: {' '.join((group[0]['prompt_text'] or '').split())[:200]}")
        for s in group:
            meta = s["meta"]
            measures = "  ".join(f"{k} {'yes' if meta[k] is True else 'no' if meta[k] is False else _fmt(meta[k])}"
                                 for k in SAMPLE_MEASURES if k in meta)
            print(f"-- sample {meta.get('sample', '?')}  {measures}")
            print("   " + s["text"].replace("\n", "\n   "))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from studio.store.demo import create_demo

    # building the demo never opens a window: --no-open says so for scripts and tests, and keeps saying so
    # should `studio demo PROJECT` ever open the app on what it built
    project = create_demo(args.project)
    counts = project.counts()
    project.close()
    print(f"created demo project {args.project}: {counts['prompts']} prompts, {counts['pairs']} pairs, "
          f"{counts['labels']} labels by {counts['annotators']} annotators")
    if not args.no_model:
        # A tiny random-weight model inside the project, so a DPO run can be launched from the demo on
        # any machine without downloading anything (the Runs launcher lists PROJECT/models/*).
        from pathlib import Path

        from studio.train.tiny import write_tiny_model

        out = write_tiny_model(Path(args.project) / "models" / "tiny-demo")
        print(f"wrote a tiny random-weight model to {out} (for trying runs; its text is gibberish)")
    return 0
