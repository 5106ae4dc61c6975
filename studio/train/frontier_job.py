"""The recipe of a frontier job (a run of method `frontier`): for each policy of the plan (the base model, runs'
adapters), sample responses to the plan's prompts, score them with the reward model and measure KL(policy ||
reference) on the same samples; one point per policy (core.frontier).

Points already measured the same way (same measure: reward, prompts, samples, sampling, seed) are not measured
again. A stop ends the job after the current policy; what was measured stays and `--resume` measures the rest.
The policies and a reward run's adapter share one copy of the base weights; the reference is the base alone.
"""

from __future__ import annotations

import logging
import time

import torch

from studio.core import paths
from studio.core.frontier import TEMPERATURE, FrontierPlan, policy_key, summarize_point
from studio.core.generations import BASE, Source
from studio.store import frontier as store
from studio.store.project import now_iso
from studio.store.rlhf import RULE_PREFIX, reward_source
from studio.train.generation import SamplingSettings, generate, pack
from studio.train.generation_job import Policies, pick_device, prompt_ids_for
from studio.train.logps import sequence_logps
from studio.train.preflight import TrainingError
from studio.train.reward_model import ClassifierReward, Responses, RuleReward, last_token_scores, load_head
from studio.train.runtime import RunContext, device_name
from studio.train.sampling import k3

log = logging.getLogger("studio.train")


class RunReward:
    """A reward run's adapter and score head on the policies' base (loaded with them, switched on to score)."""

    def __init__(self, policies: Policies, source: Source, folder, device: torch.device):
        self.policies, self.source = policies, source
        self.head = load_head(folder).to(device)

    @torch.no_grad()
    def __call__(self, responses: Responses) -> torch.Tensor:
        with self.policies.use(self.source) as (_, model):
            return last_token_scores(model, self.head, responses.input_ids, responses.attention_mask).float()


def train(ctx: RunContext) -> str:
    """Measure every point of the plan not measured yet; returns 'done', or 'interrupted' after a stop."""
    plan: FrontierPlan = ctx.config  # type: ignore[assignment]
    project, job_id = ctx.project, ctx.run_id
    have = store.measured(project, plan.measure())
    todo = [s for s in plan.sources if (policy_key(s), 0 if s.adapter_run is None else s.adapter_step) not in have]
    device = pick_device()
    project.update_run(job_id, device=device_name(device), total_steps=len(plan.sources),
                       step=len(plan.sources) - len(todo), heartbeat_at=now_iso())
    log.info("frontier job %d: %s; %d policies, %d to measure", job_id, plan.describe(), len(plan.sources), len(todo))
    if not todo:
        return "done"
    try:
        source = reward_source(project, plan.reward_model, plan.model)
    except Exception as e:  # a ProjectError from the store: the same words, as a training error
        raise TrainingError(str(e)) from None
    reward_src = Source("reward", plan.model, source.run_id) if source.kind == "run" else None
    policies = Policies(plan.sources + ([reward_src] if reward_src else []), project.folder, device)
    tokenizer = policies.models[plan.model][0]
    if source.kind == "run":
        reward = RunReward(policies, reward_src, paths.adapter_dir(project.folder, source.run_id), device)
    elif source.kind == "folder":
        reward = ClassifierReward(source.path, device)
    else:
        reward = RuleReward(source.value[len(RULE_PREFIX):], device)
    prompt_rows = [project.prompt(pid) for pid in plan.prompt_ids]
    prompt_tokens = prompt_ids_for(tokenizer, project, plan.prompt_ids, plan.max_prompt_tokens)
    base = Source(BASE, plan.model)
    done = len(plan.sources) - len(todo)
    for policy in todo:
        if ctx.should_stop():
            log.info("stopped with %d of %d policies measured", done, len(plan.sources))
            return "interrupted"
        started = time.monotonic()
        values = measure_policy(policies, policy, base, reward, tokenizer, prompt_rows, prompt_tokens, plan, device)
        store.add_point(project, job_id, plan, policy, values)
        done += 1
        project.update_run(job_id, step=done, heartbeat_at=now_iso())
        log.info("%s: reward %.4f ± %.4f, KL %.4f ± %.4f nats (k1 %.4f), %.1f tokens, %.0f%% ended, %.1f s",
                 policy.describe(), values["reward"], values["reward_stderr"], values["kl"], values["kl_stderr"],
                 values["kl_k1"], values["response_tokens"], 100 * values["finished"], time.monotonic() - started)
        if ctx.on_progress is not None:
            ctx.on_progress(done, len(plan.sources), values)
    return "done"


@torch.no_grad()
def measure_policy(policies: Policies, policy: Source, base: Source, reward, tokenizer, prompts, prompt_tokens,
                   plan: FrontierPlan, device) -> dict[str, float]:
    """One point: `plan.samples` responses per prompt from `policy` (seeded, the same seed for every policy), their
    rewards, and KL(policy || base) per response (k3 and k1, summed over its tokens)."""
    settings = SamplingSettings(max_new_tokens=plan.max_new_tokens, temperature=TEMPERATURE)
    with policies.use(policy) as (_, model):
        gens = generate(model, tokenizer, prompt_tokens, settings, plan.seed, device, num_samples=plan.samples,
                        batch_size=plan.batch_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rewards, kl_k3, kl_k1 = [], [], []
    for lo in range(0, len(gens), plan.batch_size):
        rows = range(lo, min(len(gens), lo + plan.batch_size))
        ids, attn, comp = pack([gens.prompt_ids[i] for i in rows], [gens.completion_ids[i] for i in rows], pad, device)
        with policies.use(policy) as (_, model):
            pol = sequence_logps(model, ids, attn, comp, per_token=True)
        with policies.use(base) as (_, model):
            ref = sequence_logps(model, ids, attn, comp, per_token=True)
        counts = pol.tokens.long().tolist()
        kl_k3 += [float(x.sum()) for x in torch.split(k3(pol.token_logps, ref.token_logps), counts)]
        kl_k1 += [float(x.sum()) for x in torch.split(pol.token_logps - ref.token_logps, counts)]
        prompt_rows = [prompts[gens.prompt_index[i]] for i in rows]
        texts = [tokenizer.decode(gens.completion_ids[i], skip_special_tokens=True) for i in rows]
        rewards += reward(Responses(ids, attn, [p.text for p in prompt_rows], [p.messages for p in prompt_rows],
                                    texts)).float().tolist()
    return summarize_point(rewards, kl_k3, kl_k1, [len(c) for c in gens.completion_ids], gens.finished)
