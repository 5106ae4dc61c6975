"""`studio train`, `studio score`, `studio stop`, `studio export-model` and `studio tiny-model`.

The GUI process imports this module to build the parser, so torch and friends are imported only inside
the command functions. User errors are raised as ProjectError / ConfigError, which `studio` prints as
`studio: error: ...` (commands may not import studio.cli: see the layer contract).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from studio.commands import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="Fine-tune a model on the project's preferences with LoRA (DPO, reward model, PPO, RLOO).",
        description="Start a run on a frozen snapshot of the resolved preferences. In the foreground it shows a "
                    "progress line; --detach trains in the background and prints the run id; --queue only creates "
                    "the run and prints its id. `--run ID` starts a queued run (what the app does, and what "
                    "`accelerate launch -m studio train PROJECT --run ID` runs on several GPUs); `--resume ID` "
                    "continues an interrupted or failed run. `--seeds N` creates N runs of the config (seeds SEED, "
                    "SEED+1, ...) as a seed group and trains them one after another in the project's queue; "
                    "`--next` runs the queue. PPO and RLOO need a reward: --reward RUN (a finished reward run of "
                    "the project, same model) or the folder of a sequence-classification model.")
    p.add_argument("project", help="project folder")
    p.add_argument("--method", default="dpo", choices=("dpo", "reward", "ppo", "rloo"),
                   help="training method: dpo (and its variants), reward (a reward model), ppo, rloo")
    p.add_argument("--reward", metavar="RUN_OR_FOLDER",
                   help="ppo/rloo: the reward run's id, or a sequence-classification model folder "
                        "(the setting reward_model)")
    p.add_argument("--model", help="local model folder or a Hugging Face hub id in the local cache")
    p.add_argument("--config", metavar="FILE.json", help="settings as JSON (dotted or nested names)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="one setting, e.g. --set beta=0.2 --set lora.r=8 (see `--list-settings`)")
    p.add_argument("--name", help="run name (default: METHOD-ID)")
    p.add_argument("--detach", action="store_true", help="train in a background process; print the run id")
    p.add_argument("--queue", action="store_true",
                   help="create the run (snapshot and settings) and print its id without starting it, for a "
                        "launcher to start with --run ID (e.g. under accelerate launch); it does not join the "
                        "project's queue (--next)")
    p.add_argument("--run", type=int, metavar="ID", help="start the queued run ID")
    p.add_argument("--resume", type=int, metavar="ID", help="continue run ID from its last checkpoint")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="create N runs of this config with seeds SEED..SEED+N-1 (SEED: the `seed` setting) as a "
                        "seed group, queued to train one after another; with --detach in the background")
    p.add_argument("--next", action="store_true",
                   help="run the project's queue: train its queued runs one after another until none waits "
                        "(with --detach in the background, logging to runs/queue.log)")
    p.add_argument("--list-settings", action="store_true", help="print every setting with its default and help")
    p.set_defaults(func=cmd_train)

    sc = sub.add_parser("score", help="A reward model's scores of the chosen and rejected responses of a file.",
                        description="Score each row of a preference file (any import format with chosen and "
                                    "rejected) with a reward run of the project, or a sequence-classification "
                                    "model folder: the reward of the chosen and of the rejected response, and the "
                                    "accuracy over the file (the share of rows whose chosen response scores "
                                    "higher).")
    sc.add_argument("project", help="project folder")
    sc.add_argument("run", metavar="RUN_OR_FOLDER", help="a reward run id, or a sequence-classification model folder")
    sc.add_argument("file", help="preference file (JSONL, JSON or CSV; formats as `studio import`)")
    sc.add_argument("--format", default="auto", choices=("auto", "trl", "trl-chat", "hh", "ultrafeedback"),
                    help="input format; auto tells it from the fields (default)")
    sc.add_argument("--json", action="store_true", help='print {"scorer", "file", "rows", "accuracy"}')
    sc.set_defaults(func=cmd_score)

    e = sub.add_parser("export-model", help="Write a run's adapter, or the merged model, with its tokenizer.")
    e.add_argument("project", help="project folder")
    e.add_argument("run", type=int, help="run id")
    e.add_argument("out", help="output folder (new or empty)")
    e.add_argument("--merged", action="store_true", help="merge the adapter into the base model (safetensors); of a "
                   "reward run, a sequence-classification model")
    e.set_defaults(func=cmd_export)

    st = sub.add_parser("stop", help="Ask a running training run to stop after its current step.",
                        description="Ask the worker of RUN to stop after its current optimizer step: it saves the "
                                    "adapter and a checkpoint and ends 'interrupted' (resume it with `studio "
                                    "train PROJECT --resume RUN`). Works for runs started from the app or with "
                                    "--detach.")
    st.add_argument("project", help="project folder")
    st.add_argument("run", type=int, help="run id")
    st.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                    help="wait up to this long for the run to stop, then say how it ended")
    st.set_defaults(func=cmd_stop)

    t = sub.add_parser("tiny-model", help="Write a tiny random-weight model + tokenizer (for demos and tests).",
                       description="Write a tiny causal LM with random weights and a tokenizer trained on a small "
                                   "built-in text to OUT, loadable with from_pretrained: for trying runs and tests "
                                   "without downloading anything. Its generations are gibberish.")
    t.add_argument("out", help="output folder")
    t.set_defaults(func=cmd_tiny)


# ---------------------------------------------------------------------------------------------- train


def _load_config(args: argparse.Namespace):
    from studio.core.configs import ConfigError, apply_overrides, config_for, from_dict, parse_set_args

    cls = config_for(args.method)
    config = cls()
    if args.config:
        path = Path(args.config)
        try:
            raw = json.loads(path.read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings")
        try:
            config = from_dict(cls, raw)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    config = apply_overrides(config, parse_set_args(args.sets))
    if getattr(args, "reward", None) is not None:
        if args.method not in ("ppo", "rloo"):
            raise ConfigError(f"--reward: only ppo and rloo runs take a reward model, not {args.method}")
        config = apply_overrides(config, {"reward_model": args.reward})
    return config


def _print_settings(method: str) -> None:
    from studio.core.configs import config_fields, config_for

    for f in config_fields(config_for(method)):
        choices = f" ({'|'.join(map(str, f.choices))})" if f.choices else ""
        print(f"{f.name} = {f.default!r}{choices}\n    {f.help}")


def cmd_train(args: argparse.Namespace) -> int:
    from studio.core.configs import to_dict
    from studio.core.jobs import JOB_METHODS, MEASURE_METHODS
    from studio.core.models import ModelNotFound, resolve_model
    from studio.store import Project, ProjectError

    if args.list_settings:
        _print_settings(args.method)
        return 0
    if sum(x for x in (args.run is not None, args.resume is not None, args.next)) > 1:
        raise ProjectError("--run, --resume and --next: give one of them")
    if args.queue and (args.detach or args.run is not None or args.resume is not None or args.next
                       or args.seeds is not None):
        raise ProjectError("--queue: creates a run without starting it, so it takes neither --detach, --run, "
                           "--resume, --next nor --seeds")
    if args.next:
        given = [flag for flag, value in (("--model", args.model), ("--config", args.config), ("--set", args.sets),
                                          ("--name", args.name), ("--seeds", args.seeds)) if value]
        if given:
            raise ProjectError(f"{', '.join(given)}: not taken with --next, which trains the runs already queued")
        return _run_queue(Path(args.project), args.detach)
    if args.seeds is not None and (args.run is not None or args.resume is not None):
        raise ProjectError("--seeds: creates new runs; it is not taken with --run or --resume")
    if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
        raise ProjectError(f"--seeds: give between 1 and {MAX_SEEDS} runs, got {args.seeds}")
    if args.run is not None or args.resume is not None:
        # a run keeps the settings it was created with (its checkpoint depends on them): refuse, don't ignore
        given = [flag for flag, value in (("--model", args.model), ("--config", args.config), ("--set", args.sets),
                                          ("--name", args.name), ("--reward", args.reward)) if value]
        if given:
            flag = "--run" if args.run is not None else "--resume"
            raise ProjectError(f"{', '.join(given)}: not taken with {flag}; a run keeps the model and settings it "
                               f"was created with. Start a new run with them instead")
    project = Project.open(args.project)
    try:
        if args.run is not None or args.resume is not None:
            run_id = args.run if args.run is not None else args.resume
            run = project.run(run_id)  # names a missing run clearly
            method = run["method"]
            if run_id in project.found_dead_runs:
                print(f"run {run_id}: marked failed: {run['error']}", file=sys.stderr)
        else:
            if not args.model:
                raise ProjectError("--model: required to create a run (a local folder or a cached hub id)")
            try:
                model_path = resolve_model(args.model)
            except ModelNotFound as e:
                raise ProjectError(str(e)) from None
            config = _load_config(args)
            from studio.train import preflight

            if args.method in ("ppo", "rloo"):
                # the reward is checked before the run exists: a finished reward run of this project on the same
                # model, or a classifier folder; the run stores it as resolved (an absolute folder)
                from dataclasses import replace

                from studio.store.rlhf import reward_source

                config = replace(config, reward_model=reward_source(project, config.reward_model, args.model).value)
            try:
                preflight.check_model_folder(model_path)
                preflight.check_settings(config)
            except preflight.TrainingError as e:
                raise ProjectError(str(e)) from None
            for warning in preflight.settings_warnings(config):
                print(f"studio: warning: {warning}", file=sys.stderr)
            if args.seeds is not None:
                return _create_seed_group(project, args, config)
            run_id = project.create_run(args.method, args.model, to_dict(config), name=args.name)
            method = args.method
            if not project.run_snapshot(run_id, split="train"):
                project.delete_run(run_id)
                raise ProjectError(f"{args.project}: no resolved train preferences to train on; label some pairs "
                                   f"first (`studio stats {args.project}` shows what is labeled)")
            # with --queue stdout is the id alone, for a script to read
            print(f"run {run_id}: created ({len(project.run_snapshot(run_id))} preferences in the snapshot)",
                  file=sys.stderr if args.queue else sys.stdout)
    finally:
        project.close()
    if args.queue:
        print(run_id)
        print(f"start it with: studio train {args.project} --run {run_id}  (several GPUs: accelerate launch "
              f"-m studio train {args.project} --run {run_id})", file=sys.stderr)
        return 0
    if args.detach:
        return spawn_detached(Path(args.project), run_id, resume=args.resume is not None)
    if method in MEASURE_METHODS:  # the worker runs any run; a job reports its own progress
        from studio.commands.measure import run_job_foreground

        return run_job_foreground(Path(args.project), run_id, resume=args.resume is not None)
    if method in JOB_METHODS:
        from studio.commands.generate import _run_foreground

        return _run_foreground(Path(args.project), run_id, resume=args.resume is not None)
    return _train_foreground(Path(args.project), run_id, resume=args.resume is not None)


MAX_SEEDS = 100


def _create_seed_group(project, args: argparse.Namespace, config) -> int:
    """Queue N runs of one config, one per seed, as a group; train them (foreground) or start the queue."""
    from studio.core.configs import to_dict
    from studio.store import ProjectError
    from studio.store.run_queue import create_seed_group

    if not any(p.split == "train" for p in project.resolved_preferences()):
        raise ProjectError(f"{args.project}: no resolved train preferences to train on; label some pairs first "
                           f"(`studio stats {args.project}` shows what is labeled)")
    seeds = [config.seed + i for i in range(args.seeds)]
    group_id, run_ids = create_seed_group(project, args.method, args.model, to_dict(config), seeds, name=args.name)
    size = len(project.run_snapshot(run_ids[0]))
    print(f"seed group {group_id}: runs {', '.join(map(str, run_ids))} (seeds {', '.join(map(str, seeds))}) "
          f"queued, {size} preferences in their snapshot", file=sys.stderr if args.detach else sys.stdout)
    project.close()
    if args.detach:
        for run_id in run_ids:
            print(run_id)
    return _run_queue(Path(args.project), args.detach)


def _run_queue(project: Path, detach: bool) -> int:
    """Train the queued runs one after another: here, or in a background runner."""
    from studio.train import queue

    if detach:
        proc = queue.spawn_runner(project)
        print(f"the queue trains in the background (runner pid {proc.pid}); log: {queue.queue_log(project)}",
              file=sys.stderr)
        return 0
    return queue.run_queue(project)


def spawn_detached(project: Path, run_id: int, resume: bool) -> int:
    from studio.core import paths
    from studio.train.worker import spawn_worker

    pid = spawn_worker(project, run_id, resume)  # its own session: survives the terminal closing
    print(run_id)
    print(f"running in the background (pid {pid}); log: {paths.log_path(project, run_id)}", file=sys.stderr)
    return 0


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _progress_values(values: dict) -> str:
    """The few numbers of a step that say how a run goes, by what the method logs."""
    from studio.core import metrics as M

    nan = float("nan")
    if M.OBJECTIVE_SCORES in values:  # PPO, RLOO
        return (f"score {values[M.OBJECTIVE_SCORES]:+.3f}  kl {values.get(M.OBJECTIVE_KL, nan):.3f}  "
                f"length {values.get(M.RESPONSE_LENGTH, nan):.0f}")
    if M.ACCURACY in values:  # reward model
        return (f"loss {values.get(M.LOSS, nan):.4f}  accuracy {values[M.ACCURACY]:.2f}  "
                f"margin {values.get(M.MARGIN, nan):+.3f}")
    return f"loss {values.get(M.LOSS, nan):.4f}  margin {values.get(M.REWARDS_MARGINS, nan):+.3f}"


def run_with_progress(project: Path, run_id: int, resume: bool, describe: Callable[[int, int, dict], str],
                      out=None) -> str:
    """Run the worker of `run_id` in this process, printing `describe(step, total, values)` and an ETA at each
    progress report and the worker's status lines while it prepares to `out` (stdout by default; one line
    rewritten on a terminal, a line each otherwise; under `accelerate launch` the main process alone prints);
    returns the final status."""
    from studio.store import ProjectError
    from studio.train.worker import ClaimError, process_rank, run_worker

    start = time.monotonic()
    first: list[int] = []
    out = out or sys.stdout
    # under `accelerate launch` every process runs this; the main one speaks for all of them
    main = process_rank() == 0
    tty = out.isatty() and main

    def status(line: str) -> None:
        if main:
            print(("\r\033[K" + line) if tty else line, end="" if tty else "\n", flush=True, file=out)

    def progress(step: int, total: int, values: dict) -> None:
        if not main:
            return
        if not first:
            first.append(step - 1)
        eta = (time.monotonic() - start) / max(step - first[0], 1) * (total - step)
        status(f"{describe(step, total, values)}  eta {_fmt_time(eta)}")

    try:
        result = run_worker(project, run_id, resume=resume, on_progress=progress, on_status=status)
    except ClaimError as e:
        raise ProjectError(str(e)) from None
    if tty:
        print(file=out)
    return result


def _train_foreground(project: Path, run_id: int, resume: bool) -> int:
    from studio.core import metrics as M
    from studio.core.configs import config_for, from_dict

    def describe(step: int, total: int, values: dict) -> str:
        return f"step {step}/{total}  {_progress_values(values)}  {values.get(M.TOKENS_PER_SECOND, 0):,.0f} tok/s"

    from studio.train.worker import process_rank

    result = run_with_progress(project, run_id, resume, describe)
    if process_rank() != 0:  # the main process reports for all of them
        return 0 if result in ("done", "interrupted") else 1
    from studio.store import Project

    with Project.open(project) as p:
        run = p.run(run_id)
        sampling = [v for _i, _s, _n, v, _t in p.metrics(run_id, names=[M.EVAL_SAMPLING_SECONDS]) if v is not None]
    print(f"run {run_id}: {result} at step {run['step']}/{run['total_steps']}")
    wall = run.get("active_seconds") or 0.0
    if sampling and wall > 0:
        # the lens's cost: what sampling the probe prompts at evaluations took of the run's wall time
        # the budget the worker ran with: a stored config without the field (an older run) means the default
        budget = from_dict(config_for(run["method"]), run["config"]).sample_budget
        print(f"sampling: {len(sampling)} evaluations took {sum(sampling):.1f}s, {sum(sampling) / wall:.1%} of the "
              f"run's {_fmt_time(wall)} (sample_budget {budget:.0%})")
    if result == "failed":
        print(f"studio: error: {run['error']}", file=sys.stderr)
        return 1
    if result == "interrupted":
        print(f"resume with: studio train {project} --resume {run_id}")
    return 0


# ---------------------------------------------------------------------------------------------- export, tiny


def cmd_export(args: argparse.Namespace) -> int:
    from studio.core import paths
    from studio.core.models import ModelNotFound, resolve_model
    from studio.store import Project, ProjectError

    with Project.open(args.project) as project:
        run = project.run(args.run)
    adapter = paths.adapter_dir(args.project, args.run)
    if not (adapter / "adapter_config.json").is_file():
        raise ProjectError(f"run {args.run}: no adapter at {adapter} (status {run['status']}; a run saves its "
                           f"adapter at checkpoints and when it ends)")
    from studio.train import export

    out = Path(args.out)
    try:
        if args.merged:
            try:
                base = resolve_model(run["model"])
            except ModelNotFound as e:
                raise ProjectError(str(e)) from None
            if run["method"] == "reward":
                export.export_reward_classifier(base, adapter, out)
                print(f"sequence-classification model written to {out}")
                return 0
            export.export_merged(base, adapter, out)
        else:
            export.export_adapter(adapter, out)
    except FileExistsError as e:
        raise ProjectError(str(e)) from None
    print(f"{'merged model' if args.merged else 'adapter'} written to {out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from studio.store import Project, ProjectError
    from studio.store.formats import parse_file
    from studio.store.rlhf import reward_source

    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    parsed = parse_file(path, args.format)
    if parsed.errors:
        for err in parsed.errors:
            print(err, file=sys.stderr)
        raise CommandError(f"{path}: {len(parsed.errors)} invalid row(s) of {parsed.total}; nothing was scored", code=1)
    unlabeled = [r.line for r in parsed.rows if not r.labeled]
    if unlabeled:
        raise CommandError(f"{path}: line {unlabeled[0]}: the file holds {parsed.format} rows without a preference; "
                           f"scoring needs chosen and rejected responses ({len(unlabeled)} such rows)")
    with Project.open(args.project) as project:
        source = reward_source(project, args.run)
        if source.kind == "rule":
            raise ProjectError(f"{args.run}: give a reward run id or a sequence-classification model folder")
        run = project.run(source.run_id) if source.kind == "run" else None
    from studio.train.score import score_pairs

    chosen, rejected = score_pairs(source, run, parsed.rows)
    wins = [c > r for c, r in zip(chosen, rejected, strict=True)]
    accuracy = sum(wins) / len(wins) if wins else None
    rows = [{"line": r.line, "chosen": c, "rejected": j} for r, c, j in zip(parsed.rows, chosen, rejected, strict=True)]
    if args.json:
        print(json.dumps({"scorer": source.description, "file": str(path), "rows": rows, "accuracy": accuracy},
                         indent=2))
        return 0
    from studio.commands.project import _table

    print(_table([[r["line"], f"{r['chosen']:+.4f}", f"{r['rejected']:+.4f}", f"{r['chosen'] - r['rejected']:+.4f}"]
                  for r in rows], ["line", "chosen", "rejected", "margin"]))
    print(f"\naccuracy: {accuracy:.1%} of {len(rows)} rows (chosen scored above rejected; {source.description})"
          if accuracy is not None else "\nno rows to score")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from studio.core.types import RunStatus
    from studio.store import Project
    from studio.store.project import pid_alive
    from studio.store.run_queue import cancel_queued

    with Project.open(args.project) as project:
        run = project.run(args.run)
        if args.run in project.found_dead_runs:
            # killed outright: opening the project found it, and there is nothing left to stop
            print(f"run {args.run}: stopped already: {run['error']}; marked failed at step {run['step']} "
                  f"(resume it with `studio train {args.project} --resume {args.run}`)")
            return 0
        if cancel_queued(project, args.run):
            print(f"run {args.run}: taken out of the queue before it started (it ends interrupted, untrained)")
            return 0
        if not RunStatus(run["status"]).active or not pid_alive(run["pid"]):
            raise CommandError(f"run {args.run}: is {run['status']} and no worker is training it; nothing to stop")
        project.request_stop(args.run)
        print(f"run {args.run}: asked to stop after its current step")
        deadline = time.monotonic() + args.wait
        while args.wait and time.monotonic() < deadline:
            project.mark_dead_runs()
            run = project.run(args.run)
            if not RunStatus(run["status"]).active:
                print(f"run {args.run}: {run['status']} at step {run['step']}")
                return 0
            time.sleep(0.5)
        if args.wait:
            raise CommandError(f"run {args.run}: still {run['status']} after {args.wait:g} s "
                               f"(pid {run['pid']}); it stops after its current step", code=1)
    return 0


def cmd_tiny(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from studio.train.tiny import write_tiny_model

    out = write_tiny_model(args.out)
    print(f"tiny model written to {out}")
    return 0
