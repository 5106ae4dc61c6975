"""`studio generate` (candidates to label, from a model or a run's adapter) and `studio arena` (blind pairs of
several sources, and their results).

Both create a run of their own (method `generate` or `arena`) that the training worker carries out, in the
foreground with a progress line, or in the background with --detach (the app starts the same job). Torch is
imported inside the command functions only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from studio.commands import CommandError, add_job_arguments


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1: the policy's "
                                                                  "own distribution)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling cut (default 1: none)")
    p.add_argument("--top-k", type=int, default=0, help="top-k cut (default 0: none)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest response in tokens (default 256)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    add_job_arguments(p, "generate", "with the prompts not done yet")


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "generate", help="Sample candidate responses from a model or a run's adapter and pair them for labeling.",
        description="Sample responses for the project's prompts and pair them for labeling: two samples of one "
                    "source, or one from each of two sources (--vs). Each response keeps its provenance (model, "
                    "adapter, sampling settings, seed); the labeling view shows it after the choice, never before. "
                    "The pairs' source is `candidates JOB`.")
    g.add_argument("project", help="project folder")
    g.add_argument("--model", help="base model: a local folder or a cached hub id (default: the --adapter run's)")
    g.add_argument("--adapter", type=int, metavar="RUN", help="sample with this run's LoRA adapter on its base model")
    g.add_argument("--vs", metavar="MODEL_OR_RUN",
                   help="pair with one sample of this source instead: a run id, 'base', or another model")
    g.add_argument("--split", default="train", choices=("train", "eval"), help="prompts of this split (default train)")
    g.add_argument("--n", type=int, default=2, metavar="N",
                   help="samples per prompt and source (default 2; one source pairs them two by two)")
    g.add_argument("--prompts", type=int, metavar="N", help="at most N prompts, drawn at random (seeded)")
    _sampling_args(g)
    g.set_defaults(func=cmd_generate)

    a = sub.add_parser(
        "arena", help="Blind comparison of sources (base, runs) on the same prompts; --results for who wins.",
        description="Generate one response from each source for the same prompts and queue every two sources' "
                    "answers as a blind pair in the labeling view (which source wrote what is never shown; sides "
                    "are random). `--results` reports win/tie/loss with 95% intervals, a length-controlled win "
                    "rate, Bradley-Terry scores (more than two sources) and the same per annotator.")
    a.add_argument("project", help="project folder")
    a.add_argument("--sources", nargs="+", metavar="SOURCE",
                   help="'base' and/or run ids (their adapters), or model folders; at least two")
    a.add_argument("--model", help="the base model 'base' stands for (default: the runs' base model)")
    a.add_argument("--split", default="eval", choices=("train", "eval"), help="prompts of this split (default eval)")
    a.add_argument("--n", type=int, metavar="PROMPTS", help="at most this many prompts, drawn at random (seeded)")
    a.add_argument("--results", action="store_true", help="report an arena's results instead of starting one")
    a.add_argument("--arena", type=int, metavar="ID", help="with --results: which arena (default the newest)")
    a.add_argument("--json", action="store_true", help="with --results: the JSON object (see docs/arena.md)")
    a.add_argument("--rounds", type=int, default=1000, help="with --results: bootstrap rounds (default 1000)")
    _sampling_args(a)
    a.set_defaults(func=cmd_arena)


# ---------------------------------------------------------------------------------------------- starting a job


def _check_models(sources) -> None:
    from studio.core.models import ModelNotFound, resolve_model
    from studio.store import ProjectError
    from studio.train import preflight

    for s in sources:
        try:
            preflight.check_model_folder(resolve_model(s.model))
        except (ModelNotFound, preflight.TrainingError) as e:
            raise ProjectError(f"source {s.name}: {e}") from None


def _plan(project, kind: str, sources, args: argparse.Namespace, split: str, limit: int | None, samples: int):
    from studio.core.generations import GenerationPlan
    from studio.store import generations

    prompts = generations.choose_prompts(project, split, limit, args.seed)
    return GenerationPlan(kind, sources, prompts, samples=samples, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed, split=split)


def _start(args: argparse.Namespace, make_plan) -> int:
    """Create the job from `make_plan(project)` (or take --resume's), then run it here or in the background."""
    from studio.store import Project

    with Project.open(args.project) as project:
        if args.resume is not None:
            job = project.run(args.resume)
            if job["method"] != args.command:
                raise CommandError(f"run {args.resume}: is a {job['method']} run, not a {args.command} job")
            run_id, resume = args.resume, True
        else:
            plan = make_plan(project)
            _check_models(plan.sources)
            from studio.store import generations

            run_id, resume = generations.create_job(project, plan, args.name), False
            print(f"{args.command} job {run_id}: {len(plan.prompt_ids)} prompts x {len(plan.sources)} source(s): "
                  + ", ".join(s.describe() for s in plan.sources))
    if args.detach:
        from studio.commands.train import spawn_detached

        return spawn_detached(Path(args.project), run_id, resume=resume)
    return _run_foreground(Path(args.project), run_id, resume)


def _run_foreground(project_folder: Path, run_id: int, resume: bool) -> int:
    from studio.commands.train import run_with_progress
    from studio.store import Project
    from studio.store import generations as gen_store

    def describe(done: int, total: int, values: dict) -> str:
        return (f"prompts {done}/{total}  generations {values['generations']}  pairs {values['pairs']}  "
                f"identical {values['identical']}  {values['generations_per_second']:.1f}/s")

    status = run_with_progress(project_folder, run_id, resume, describe)
    with Project.open(project_folder) as p:
        run, counts = p.run(run_id), gen_store.job_counts(p, run_id)
        arena_id = gen_store.job_arena(p, run_id)
    where = gen_store.pair_source(run_id, arena_id)
    print(f"{run['method']} job {run_id}: {status} at {run['step']}/{run['total_steps']} prompts; "
          f"{counts['generations']} generations ({counts['hit_max_new_tokens']} cut at --max-new-tokens), "
          f"{counts['pairs']} pairs to label (source '{where}')")
    if status == "failed":
        print(f"studio: error: {run['error']}", file=sys.stderr)
        return 1
    if status == "interrupted":
        print(f"resume with: studio {run['method']} {project_folder} --resume {run_id}")
    elif arena_id is not None:
        print(f"label them in the app (Label, source '{where}'), then: studio arena {project_folder} --results")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from studio.store import ProjectError

    def make_plan(project):
        from studio.store import generations

        if args.adapter is None and not args.model:
            raise ProjectError("--model: give the model to sample from (or --adapter RUN for a run's adapter)")
        if args.adapter is not None and args.model:
            trained = project.run(args.adapter)["model"]
            given = Path(args.model).expanduser()
            if args.model != trained and not (given.is_dir() and str(given.resolve()) == trained):
                raise ProjectError(f"--model {args.model}: run {args.adapter}'s adapter was trained on {trained}; "
                                   f"leave --model out to use it")
        specs: list[str] = [str(args.adapter) if args.adapter is not None else "base"]
        if args.vs:
            specs.append(args.vs)
        sources = generations.resolve_sources(project, specs, args.model)
        return _plan(project, "generate", sources, args, args.split, args.prompts, args.n)

    return _start(args, make_plan)


# ---------------------------------------------------------------------------------------------- arena


def cmd_arena(args: argparse.Namespace) -> int:
    if args.results:
        return _print_results(args)
    if len(args.sources or ()) < 2 and args.resume is None:
        raise CommandError("--sources: an arena needs at least two sources (base, run ids) to compare; or give "
                           "--results to see an arena's results")

    def make_plan(project):
        from studio.store import generations

        sources = generations.resolve_sources(project, args.sources, args.model)
        return _plan(project, "arena", sources, args, args.split, args.n, 1)

    return _start(args, make_plan)


def _print_results(args: argparse.Namespace) -> int:
    from studio.commands.project import _table
    from studio.core.arena import matchup_cells, score_cells
    from studio.store import Project
    from studio.store.arena import arena_results

    with Project.open(args.project) as project:
        r = arena_results(project, args.arena, rounds=args.rounds)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    a = r["arena"]
    status = f"{a['prompts_done']}/{a['prompts']} prompts, job {a['job_status']}" if a["job_status"] else "job deleted"
    print(f"arena {a['id']} ({a['name']}): {', '.join(a['sources'])}; {status}; {r['pairs']} pairs, "
          f"{r['labeled_pairs']} labeled, {r['judgements']} judgements")
    print("\n" + _table([matchup_cells(m) for m in r["matchups"]],
                        ["matchup", "W", "T", "L", "win rate", "95% interval", "length-controlled", "95% interval",
                         "identical"]))
    if r["bradley_terry"]:
        print("\nBradley-Terry scores (Elo scale, 95% bootstrap interval over prompts)")
        print(_table([score_cells(b) for b in r["bradley_terry"]], ["source", "score", "95% interval", "judgements"]))
    for ann in r["annotators"]:
        print(f"\n{ann['name']} ({ann['judgements']} judgements)")
        print(_table([matchup_cells(m) for m in ann["matchups"]],
                     ["matchup", "W", "T", "L", "win rate", "95% interval"]))
    if not r["judgements"]:
        print(f"\nno labels on this arena's pairs yet: label them in the app (Label, source 'arena {a['id']}')")
    return 0
