"""`studio rank` (the informative queue's order: which pair to label next) and `studio frontier` (reward against
KL to the reference for a set of runs).

Both measure with models already trained, in a job of their own (a run of method `rank` or `frontier`) that the
training worker carries out, in the foreground with a progress line or in the background with --detach. A
ranking from the labels alone needs no model and is made here at once. Torch is imported by the worker only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from studio.commands import CommandError, add_job_arguments


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "rank", help="Order the pairs for the labeling view's 'Informative first' queue (reward models, a DPO "
                     "policy, split labels).",
        description="Score pairs with reward runs (their margin: how unsure they are, how far apart two of them "
                    "are) and a DPO run (how far its implicit reward is from the reward model's), then rank every "
                    "pair: split votes first, then what the models are least sure about (see docs/labeling.md). "
                    "Without --reward or --policy the labels alone rank the pairs, at once. A rank job also starts "
                    "by itself after every reward or DPO run that finishes (--auto off stops that).")
    r.add_argument("project", help="project folder")
    r.add_argument("--reward", type=int, nargs="+", metavar="RUN", default=[],
                   help="finished reward runs; the first gives the uncertainty, two or more their disagreement")
    r.add_argument("--policy", type=int, metavar="RUN", help="a DPO run: its implicit reward against the reward "
                                                             "model's (alone, its uncertainty)")
    r.add_argument("--max-pairs", type=int, default=20_000, metavar="N",
                   help="score at most N pairs, drawn at random among those short of the overlap target (default "
                        "20000; 0: all); the others take the mean")
    r.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    r.add_argument("--batch-size", type=int, default=16, help="pairs scored at once (default 16)")
    add_job_arguments(r, "score", "with the pairs not scored yet")
    r.add_argument("--show", action="store_true", help="print the current ranking instead of making one")
    r.add_argument("--top", type=int, default=10, metavar="N", help="pairs listed from the top (default 10)")
    r.add_argument("--auto", choices=("on", "off"), help="rank after every finished reward or DPO run (default on)")
    r.add_argument("--json", action="store_true", help='print {"ranking", "top"} (see docs/labeling.md)')
    r.set_defaults(func=cmd_rank)

    f = sub.add_parser(
        "frontier", help="Reward against KL(policy || reference) for runs, on samples for the same prompts.",
        description="For the base model and each run (DPO, PPO, RLOO on one base model), sample responses to the "
                    "same prompts (seeded), score them with the reward model and measure KL(policy || reference) "
                    "on the same samples: one point per run and adapter step, the DPO paper's reward/KL frontier "
                    "on this project's data. Points already measured the same way are reused; Runs > Compare draws "
                    "them. See docs/runs.md.")
    f.add_argument("project", help="project folder")
    f.add_argument("--reward", required=False, metavar="RUN_OR_FOLDER",
                   help="a finished reward run of this project (same base model), or a sequence-classification "
                        "model folder")
    f.add_argument("--runs", type=int, nargs="+", metavar="ID", default=[], help="the runs to measure")
    f.add_argument("--split", default="eval", choices=("train", "eval"),
                   help="prompts of this split (default eval; the train split when eval has none)")
    f.add_argument("--prompts", type=int, default=32, metavar="N", help="prompts drawn at random (seeded; default 32)")
    f.add_argument("--samples", type=int, default=4, metavar="K", help="samples per prompt and policy (default 4)")
    f.add_argument("--max-new-tokens", type=int, default=128, help="longest sample in tokens (default 128)")
    f.add_argument("--seed", type=int, default=0, help="seed of the prompts and the sampling (default 0)")
    f.add_argument("--batch-size", type=int, default=32, help="samples scored and measured at once (default 32)")
    add_job_arguments(f, "measure", "with the policies not measured yet")
    f.add_argument("--json", action="store_true", help='print {"measure", "reward_model", "plan", "points"}')
    f.set_defaults(func=cmd_frontier)


# ---------------------------------------------------------------------------------------------- jobs


def _run_job(args: argparse.Namespace, project_folder: Path, run_id: int, resume: bool) -> str | None:
    """Run the job here with a progress line (its final status), or in the background with --detach (None)."""
    if args.detach:
        from studio.commands.train import spawn_detached

        spawn_detached(project_folder, run_id, resume=resume)
        return None
    return _foreground(project_folder, run_id, resume, sys.stderr if args.json else sys.stdout)


def _foreground(project_folder: Path, run_id: int, resume: bool, out=None) -> str:
    from studio.commands.train import run_with_progress
    from studio.store import Project

    def describe(done: int, total: int, values: dict) -> str:
        if "pairs_per_second" in values:
            return f"pairs {done}/{total}  {values['pairs_per_second']:.1f}/s"
        return f"policies {done}/{total}  reward {values['reward']:+.4f}  KL {values['kl']:.4f}"

    status = run_with_progress(project_folder, run_id, resume, describe, out)
    with Project.open(project_folder) as p:
        run = p.run(run_id)
    if status == "failed":
        raise CommandError(f"{run['method']} job {run_id} failed: {run['error']}", code=1)
    if status == "interrupted":
        print(f"{run['method']} job {run_id}: stopped; resume with: studio {run['method']} {project_folder} "
              f"--resume {run_id}", file=sys.stderr)
    return status


def run_job_foreground(project_folder: Path, run_id: int, resume: bool) -> int:
    """`studio train PROJECT --run ID` of a rank or frontier job: its progress, then its status."""
    _foreground(project_folder, run_id, resume)
    return 0


# ---------------------------------------------------------------------------------------------- rank


def cmd_rank(args: argparse.Namespace) -> int:
    from studio.core.informative import RANK, RankPlan
    from studio.store import Project
    from studio.store import informative as inf

    folder = Path(args.project)
    with Project.open(folder) as project:
        if args.auto:
            project.set_setting("auto_rank", args.auto)
            print(f"automatic ranking after reward and DPO runs: {args.auto}")
            return 0
        if args.show:
            return _print_ranking(project, args)
        if args.resume is not None:
            job = project.run(args.resume)
            if job["method"] != RANK:
                raise CommandError(f"run {args.resume}: is a {job['method']} run, not a rank job")
            run_id, resume = args.resume, True
        elif not args.reward and args.policy is None:
            inf.rebuild_ranking(project, [])
            print(f"{project.pair_count():,} pairs ranked from the labels alone (split votes first)")
            return _print_ranking(project, args)
        else:
            scorers = inf.check_scorer_runs(project, args.reward, args.policy)
            plan = RankPlan(project.run(scorers[0].run_id)["model"], scorers, max_pairs=args.max_pairs,
                            seed=args.seed, batch_size=args.batch_size)
            run_id, resume = inf.create_rank_job(project, plan, args.name), False
            print(f"rank job {run_id}: {plan.describe()}", file=sys.stderr if args.json else sys.stdout)
    status = _run_job(args, folder, run_id, resume)
    if status is None:
        return 0
    with Project.open(folder) as project:
        return _print_ranking(project, args)


def _print_ranking(project, args: argparse.Namespace) -> int:
    from studio.commands.project import _table
    from studio.store import informative as inf

    report = inf.ranking_report(project, args.top)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(inf.describe_ranking(inf.current_ranking(project)))
    if report["top"]:
        def cell(v):
            return "–" if v is None else f"{v:.3f}"

        print("\n" + _table([[r["rank"], r["pair_id"], f"{r['score']:.3f}", cell(r["uncertainty"]),
                              cell(r["checkpoints"]), cell(r["policy"]), cell(r["labels"]), r["n_labels"],
                              r["prompt"].replace("\n", " ")] for r in report["top"]],
                            ["rank", "pair", "score", "uncertainty", "checkpoints", "policy", "labels", "verdicts",
                             "prompt"]))
        print("\nscore = 3 × labels + (uncertainty + checkpoints + policy) / (1 + verdicts); – : no model gave it "
              "(or not scored: the mean is used)")
    return 0


# ---------------------------------------------------------------------------------------------- frontier


def cmd_frontier(args: argparse.Namespace) -> int:
    from studio.core.frontier import FRONTIER, FrontierPlan, policy_key
    from studio.store import Project
    from studio.store import frontier as fr

    folder = Path(args.project)
    with Project.open(folder) as project:
        if args.resume is not None:
            job = project.run(args.resume)
            if job["method"] != FRONTIER:
                raise CommandError(f"run {args.resume}: is a {job['method']} run, not a frontier job")
            run_id, plan = args.resume, FrontierPlan.from_dict(job["config"])
        else:
            plan = _frontier_plan(project, args)
            missing = [s for s in plan.sources if (policy_key(s), s.adapter_step or 0)
                       not in fr.measured(project, plan.measure())]
            run_id = fr.create_frontier_job(project, plan, args.name) if missing else None
            if run_id is not None:
                print(f"frontier job {run_id}: {len(missing)} of {len(plan.sources)} policies to measure; "
                      f"{plan.describe()}", file=sys.stderr if args.json else sys.stdout)
    if run_id is not None and _run_job(args, folder, run_id, args.resume is not None) is None:
        return 0
    with Project.open(folder) as project:
        points = fr.points(project, plan.measure(), [s.adapter_run for s in plan.sources if s.adapter_run])
    return _print_points(plan, points, args.json)


def _frontier_plan(project, args: argparse.Namespace):
    from studio.store import ProjectError
    from studio.store import frontier as fr
    from studio.store.generations import choose_prompts
    from studio.store.rlhf import reward_source

    if not args.reward:
        raise CommandError("--reward: which reward model scores the samples? a finished reward run of this project, "
                           "or a sequence-classification model folder")
    sources = fr.policy_sources(project, args.runs)
    reward = reward_source(project, args.reward, sources[0].model)
    try:
        prompts = choose_prompts(project, args.split, args.prompts, args.seed)
    except ProjectError:
        if args.split != "eval":
            raise
        prompts = choose_prompts(project, "train", args.prompts, args.seed)
        print("no eval prompts: the frontier is measured on train prompts", file=sys.stderr)
    from studio.core.frontier import FrontierPlan

    return FrontierPlan(reward.value, reward.description, sources, prompts, samples=args.samples,
                           max_new_tokens=args.max_new_tokens, seed=args.seed, batch_size=args.batch_size)


def _print_points(plan, points: list[dict], as_json: bool) -> int:
    from studio.commands.project import _table

    if as_json:
        keys = ("policy", "name", "run_id", "step", "samples", "reward", "reward_stderr", "kl", "kl_stderr", "kl_k1",
                "response_tokens", "finished", "on_frontier", "job_id", "created_at")
        print(json.dumps({"measure": plan.measure(), "reward_model": plan.reward_name,
                          "plan": {"prompts": len(plan.prompt_ids), "samples": plan.samples,
                                   "max_new_tokens": plan.max_new_tokens, "seed": plan.seed, "model": plan.model},
                          "points": [{k: p[k] for k in keys} for p in points]}, indent=2))
        return 0
    print(f"reward from {plan.describe()}; KL(policy || reference) per sample in nats")
    print("\n" + _table([[p["name"], p["step"], f"{p['reward']:+.4f} ± {p['reward_stderr']:.4f}",
                          f"{p['kl']:.4f} ± {p['kl_stderr']:.4f}", f"{p['kl_k1']:.4f}", f"{p['response_tokens']:.1f}",
                          f"{100 * p['finished']:.0f}%", "yes" if p["on_frontier"] else ""] for p in points],
                        ["policy", "step", "reward", "KL (k3)", "KL (k1)", "tokens", "ended", "frontier"]))
    return 0
