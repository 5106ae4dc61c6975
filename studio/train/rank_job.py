"""The recipe of a rank job (a run of method `rank`): score pairs with reward models and a DPO policy, then rank
every pair by its informative score (core.informative) for the labeling view's 'Informative first' queue.

Each model's margin of A over B is stored per pair as it is computed, a batch of pairs per transaction, so a
stop (the Stop button, `studio stop`, SIGTERM) keeps what was scored and a resume scores only the rest; a
stopped job still ranks with what it has (pairs not scored take the mean). The models share one base: each
run's adapter is loaded next to the others and switched on in turn; the reference is the base alone.

After a reward or DPO run ends 'done', the worker starts a rank job of its own (`rank_after_run`), so the queue
follows the newest models without anyone asking.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from studio.core import paths
from studio.core.generations import BASE, Source
from studio.core.informative import REWARD, RankPlan, Scorer
from studio.store import Project
from studio.store import informative as store
from studio.store.project import now_iso
from studio.train.runtime import RunContext

log = logging.getLogger("studio.train")

AUTO_RANK_ENV = "STUDIO_AUTO_RANK"
"""Set to 0 to keep workers from starting a rank job after a reward or DPO run (the project setting
`auto_rank` = off does the same for one project)."""


def train(ctx: RunContext) -> str:
    """Score the pairs the plan selects with each model (those not scored yet), then rank every pair. Returns
    'done', or 'interrupted' after a stop (the ranking is made with what was scored)."""
    plan: RankPlan = ctx.config  # type: ignore[assignment]
    project, job_id = ctx.project, ctx.run_id
    selection = store.pairs_to_score(project, plan)
    todo = {s: set(selection) - store.scored_pairs(project, s) for s in plan.scorers}
    pending = sorted(set().union(*todo.values()))
    project.update_run(job_id, total_steps=len(selection), step=len(selection) - len(pending), heartbeat_at=now_iso())
    log.info("rank job %d: %s; %d pairs selected, %d to score", job_id, plan.describe(), len(selection), len(pending))
    status = _score(ctx, plan, todo, pending, len(selection)) if pending else "done"
    started = time.monotonic()
    ranking = store.rebuild_ranking(project, plan.scorers, job_id)
    log.info("ranking %d: %d pairs ranked in %.1f s", ranking, project.pair_count(), time.monotonic() - started)
    return status


def _score(ctx: RunContext, plan: RankPlan, todo: dict[Scorer, set[int]], pending: list[int], total: int) -> str:
    import torch

    from studio.core.configs import config_for, from_dict
    from studio.train import data
    from studio.train.generation_job import Policies, pick_device
    from studio.train.reward_model import load_head
    from studio.train.runtime import device_name
    from studio.train.score import score_examples

    project, job_id = ctx.project, ctx.run_id
    device = pick_device()
    project.update_run(job_id, device=device_name(device))
    sources = {s: Source(f"run {s.run_id}", plan.model, s.run_id, s.step) for s in plan.scorers}
    policies = Policies(list(sources.values()), project.folder, device)
    tokenizer = policies.models[plan.model][0]
    pad = tokenizer.pad_token_id
    runs = {s: project.run(s.run_id) for s in plan.scorers}
    configs = {s: from_dict(config_for(r["method"]), r["config"]) for s, r in runs.items()}
    heads = {s: load_head(paths.adapter_dir(project.folder, s.run_id)).to(device) for s in plan.reward_scorers}
    base = Source(BASE, plan.model)
    done, start = total - len(pending), time.monotonic()
    for lo in range(0, len(pending), plan.batch_size):
        if ctx.should_stop():
            log.info("stopped after %d of %d pairs", done, total)
            return "interrupted"
        batch = pending[lo:lo + plan.batch_size]
        rows = store.pair_texts(project, batch)
        for scorer, source in sources.items():
            need = [r for r in rows if r["pair_id"] in todo[scorer]]
            if not need:
                continue
            config = configs[scorer]
            examples = data.tokenize_rows([{**r, "chosen": r["a"], "rejected": r["b"]} for r in need], tokenizer,
                                          max_length=config.max_length, max_prompt_length=config.max_prompt_length,
                                          truncation=config.truncation)
            with torch.no_grad():
                if scorer.kind == REWARD:
                    with policies.use(source) as (_, model):
                        a, b = score_examples(model, heads[scorer], examples, pad, device, plan.batch_size)
                    margins = [x - y for x, y in zip(a, b, strict=True)]
                else:
                    margins = implicit_margins(policies, source, base, examples, config, pad, device)
            store.write_scores(project, scorer, [r["pair_id"] for r in need], margins)
        done += len(batch)
        project.update_run(job_id, step=done, heartbeat_at=now_iso())
        rate = (done - (total - len(pending))) / max(time.monotonic() - start, 1e-9)
        if ctx.on_progress is not None:
            ctx.on_progress(done, total, {"pairs_per_second": rate})
    return "done"


def implicit_margins(policies, policy: Source, base: Source, examples, config, pad_id: int, device) -> list[float]:
    """The DPO policy's implicit reward margin of A over B for each example (A as chosen): its own loss's
    implicit rewards (beta * log-ratio to the reference; SimPO: beta * the per-token log-prob), A minus B."""
    import torch

    from studio.train import data
    from studio.train.logps import sequence_logps
    from studio.train.losses import LossSettings, PairLogps, needs_reference, preference_loss

    settings = LossSettings(beta=config.beta, label_smoothing=config.label_smoothing, simpo_gamma=config.simpo_gamma)
    out: list[float] = []
    for lo in range(0, len(examples), 16):
        batch = data.collate(examples[lo:lo + 16], pad_id).to(device)
        n = batch.n_pairs
        with torch.no_grad():
            with policies.use(policy) as (_, model):
                pol = sequence_logps(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
            ref = None
            if needs_reference(config.loss_type):
                with policies.use(base) as (_, model):
                    ref = sequence_logps(model, batch.input_ids, batch.attention_mask, batch.completion_mask).logps
            p = PairLogps(pol.logps[:n], pol.logps[n:], None if ref is None else ref[:n],
                          None if ref is None else ref[n:], pol.tokens[:n], pol.tokens[n:])
            rewards = preference_loss(config.loss_type, p, settings)
        out += (rewards.chosen_rewards - rewards.rejected_rewards).float().tolist()
    return out


# ---------------------------------------------------------------------------------------------- after a run


def auto_rank_enabled(project: Project) -> bool:
    return os.environ.get(AUTO_RANK_ENV, "1") != "0" and project.setting("auto_rank", "on") != "off"


def rank_after_run(project_folder: Path, run_id: int) -> int | None:
    """Start a rank job in the background after run `run_id` finished (a reward or DPO run), with the newest
    models on its base (`store.informative.auto_scorers`). Returns the job's id, or None when there is nothing
    to rank with or automatic ranking is off. Never raises: the run it follows is done either way."""
    try:
        with Project.open(project_folder) as project:
            if not auto_rank_enabled(project):
                return None
            scorers = store.auto_scorers(project, run_id)
            if not scorers:
                return None
            plan = RankPlan(project.run(run_id)["model"], scorers,
                            max_pairs=int(project.setting("rank_max_pairs", "20000") or 0))
            job_id = store.create_rank_job(project, plan, name=f"rank-after-{run_id}")
            from studio.train.worker import spawn_worker

            pid = spawn_worker(project_folder, job_id)
            project.update_run(job_id, pid=pid)
        log.info("rank job %d started (pid %d) to rank the pairs with %s", job_id, pid, plan.describe())
        return job_id
    except Exception as e:  # a failure here must not turn a finished run into a failed one
        log.warning("could not start a rank job after run %d: %s", run_id, e)
        return None
