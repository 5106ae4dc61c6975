"""The PPO and RLOO recipe: rollouts sampled from the policy on the project's prompts, scored by a reward model,
a KL penalty to the reference, then several epochs of clipped updates on each rollout batch.

One copy of the base weights serves four models (see shared_base.py): the policy (adapter 'default', trained),
PPO's value function (adapter 'value' plus a value head, trained; initialised from the reward run's adapter and
head when the reward is a run), the reward model (a reward run's adapter 'reward' plus its score head, frozen),
and the reference (every adapter disabled). A sequence-classification folder as the reward is the one
exception: it has its own weights.

Each step (one rollout batch):
1. generate: `batch_size` prompts (x `rloo_k` for RLOO), sampled with the KV cache at `temperature`, the model
   folder's own generation config set aside, stopping at EOS or end of turn;
2. forward (no grad): the rollout policy's per-token log-probs of the tempered distribution, the reference's,
   PPO's values; score: the reward model at each response's last token, minus `missing_eos_penalty` for
   responses that never ended;
3. advantages: PPO: per-token reward -kl_coef * KL plus the score at the last token, GAE, whitened; RLOO: each
   response's score - kl_coef * its summed KL, minus the mean of the other k - 1 responses to its prompt;
4. optimise: `ppo_epochs` passes over the batch in `num_mini_batches` shuffled minibatches, one optimizer step
   each: PPO's clipped policy loss per token plus vf_coef x the clipped value loss; RLOO's clipped loss on
   each response's ratio; then the KL coefficient adapts (kl_target > 0) and the schedule steps.
LoRA dropout is 0 and the base's dropout off, so the rollout log-probs and the first update's are the same
function: the first ratio is exactly 1. `train()` at the bottom reads top to bottom.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import torch

from studio.core import collapse, paths
from studio.core import metrics as M
from studio.core.configs import PPOConfig, RLConfig, planned_steps
from studio.store import ProjectError
from studio.store.rlhf import RULE_PREFIX, reward_source
from studio.train import checkpoint, data, generation, runtime, sampling
from studio.train import rl_losses as R
from studio.train.logps import sequence_logps
from studio.train.metrics_writer import metric_sink
from studio.train.model import disable_dropout, eval_mode, load_policy
from studio.train.preflight import TrainingError
from studio.train.recipe import RecipeRun
from studio.train.reward_model import (
    AdapterReward,
    ClassifierReward,
    Responses,
    RuleReward,
    hidden_size,
    hidden_states,
    load_head,
    new_head,
    save_head,
)
from studio.train.runtime import RunContext
from studio.train.shared_base import POLICY, REWARD, VALUE, SharedBase
from studio.train.step_stats import StepStats

log = logging.getLogger("studio.train")

# What the optimisation of a step averages over its micro-batches.
OPTIMISE_METRICS = (M.LOSS_POLICY, M.LOSS_VALUE, M.POLICY_APPROXKL, M.POLICY_CLIPFRAC, M.POLICY_ENTROPY,
                    M.VALUE_CLIPFRAC, M.VALUE_RATIO)


@dataclass
class RolloutPrompt:
    prompt_id: int
    text: str
    messages: list[dict] | None
    ids: list[int]


def rollout_prompts(rows: list[dict], tokenizer, max_prompt_length: int, truncation: str) -> list[RolloutPrompt]:
    """The distinct prompts of snapshot rows, tokenized as training tokenizes them and cut to max_prompt_length."""
    out, seen = [], set()
    bos = getattr(tokenizer, "bos_token_id", None)
    for r in rows:
        if r["prompt_id"] in seen:
            continue
        seen.add(r["prompt_id"])
        ids = data.prompt_token_ids(tokenizer, r["prompt"], r.get("messages"))
        ids, _, _ = data.truncate(ids, [], [], max_prompt_length, max_prompt_length, truncation, bos_id=bos)
        out.append(RolloutPrompt(int(r["prompt_id"]), r["prompt"], r.get("messages"), ids))
    return out


def distinct_prompt_rows(rows: list[dict]) -> list[dict]:
    """One snapshot row per prompt (a prompt with several labeled pairs is one rollout prompt)."""
    return list({r["prompt_id"]: r for r in sorted(rows, key=lambda r: r["pair_id"])}.values())


def to_columns(flat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token values in completion order ([K], as `sequence_logps` gives them) laid out as [N, L] under `mask`
    (row i's tokens at columns 0 .. len_i - 1), 0 elsewhere."""
    out = torch.zeros(mask.shape, dtype=flat.dtype, device=flat.device)
    out[mask] = flat
    return out


def response_mask(lengths: list[int], device) -> torch.Tensor:
    width = max(lengths)
    return torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]


@dataclass
class Rollouts:
    """One batch of sampled responses and everything computed on them without gradients."""

    prompts: list[RolloutPrompt]  # per response
    completion_ids: list[list[int]]
    finished: torch.Tensor  # [N] bool: ended with EOS / end of turn
    input_ids: torch.Tensor  # [N, T] right-padded prompt + response
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    mask: torch.Tensor  # [N, L] bool: response tokens
    logprobs: torch.Tensor  # [N, L] of the rollout policy (tempered)
    ref_logprobs: torch.Tensor  # [N, L] of the reference
    values: torch.Tensor | None  # [N, L] PPO's value before each token
    raw_scores: torch.Tensor  # [N] the reward model's
    times: dict[str, float]

    def __len__(self) -> int:
        return len(self.completion_ids)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PPORun(RecipeRun):
    """One PPO or RLOO run: the shared base and its adapters, the reward, prompts, optimizer, KL controller."""

    def __init__(self, ctx: RunContext):
        assert isinstance(ctx.config, RLConfig), "the PPO recipe trains PPO and RLOO runs"
        super().__init__(ctx)
        config, project, run_id = self.config, ctx.project, ctx.run_id
        self.is_ppo = isinstance(config, PPOConfig)
        self.k = getattr(config, "rloo_k", 1)
        if self.world > 1:
            raise TrainingError("PPO and RLOO runs train in one process; start them without `accelerate launch`")

        # settings, reward and prompts are checked before the model loads
        run = project.run(run_id)
        try:
            self.source = reward_source(project, config.reward_model, run["model"])
        except ProjectError as e:  # the launch checked it; a reward run deleted since gets the same words
            raise TrainingError(str(e)) from None
        rows = distinct_prompt_rows(project.run_snapshot(run_id))
        train_rows, eval_rows = data.split_eval(rows, config.eval_fraction, config.seed)
        if not train_rows:
            raise TrainingError(f"run {run_id}: its snapshot holds no train prompts; PPO/RLOO sample responses to "
                                f"the prompts of the run's labeled train pairs: label some pairs first")
        ckpt = self.load_checkpoint() if ctx.resume else None
        self.report_device()

        # one base: the policy adapter, then the reward and value adapters on the same weights
        self.tokenizer, peft_model = load_policy(ctx.model_path, config, self.accelerator.mixed_precision)
        self.shared = SharedBase(peft_model, trainable=(POLICY,))
        self.scorer = self._load_reward()
        if self.is_ppo:
            self.value_head = self._add_value().to(self.device)
        disable_dropout(peft_model)  # the loaded adapters' LoRA dropout too
        self.shared.use(POLICY)
        self.model = peft_model.to(self.device)
        self.pad_id = self.tokenizer.pad_token_id

        # prompts: this run's snapshot, train split for rollouts, held-out ones for evaluations
        tok = (config.max_prompt_length, config.truncation)
        self.train_prompts = rollout_prompts(train_rows, self.tokenizer, *tok)
        eval_prompts = rollout_prompts(eval_rows, self.tokenizer, *tok) or self.train_prompts
        picked = sampling.pick_prompts([sampling.EvalPrompt(p.prompt_id, p.text, p.ids) for p in eval_prompts],
                                       config.eval_samples, config.seed)
        by_id = {p.prompt_id: p for p in eval_prompts}
        self.eval_prompts = [by_id[p.prompt_id] for p in picked]
        # a step is one rollout batch (grad_accumulation splits its minibatches, it does not group steps)
        self.total_steps = planned_steps(config.max_steps, config.epochs, config.batch_size, 1,
                                         len(self.train_prompts))
        log.info("%d train prompts, %d eval prompts, %d rollout batches of %d responses, reward: %s",
                 len(self.train_prompts), len(self.eval_prompts), self.total_steps, config.batch_size * self.k,
                 self.source.description)

        # optimizer and schedule (per rollout batch) over the policy adapter, and the value adapter and head
        self.trainable = self.shared.parameters_of(POLICY)
        if self.is_ppo:
            self.trainable += self.shared.parameters_of(VALUE) + list(self.value_head.parameters())
        optimizer = torch.optim.AdamW(self.trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = runtime.make_scheduler(optimizer, config, self.total_steps)
        self.optimizer = self.accelerator.prepare(optimizer)
        self.kl_ctl = (R.AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
                       if config.kl_target > 0 else R.FixedKLController(config.kl_coef))
        self.model.train()
        if ckpt is not None:
            self.restore(ckpt)
        if self.main:
            project.update_run(run_id, total_steps=self.total_steps, step=self.position.step)
        self.writer = metric_sink(project, run_id, self.main)

    # -- set-up

    def _load_reward(self):
        """The reward: a reward run's adapter and head on this base, a classifier folder, or a rule."""
        source = self.source
        if source.kind == "run":
            self.shared.load(REWARD, source.path, trainable=False)
            return AdapterReward(self.shared, load_head(source.path).to(self.device), REWARD)
        if source.kind == "folder":
            return ClassifierReward(source.path, self.device, runtime.weights_dtype(self.accelerator.mixed_precision))
        return RuleReward(source.value[len(RULE_PREFIX):], self.device)

    def _add_value(self):
        """The value adapter and head: a copy of the reward run's (Ouyang et al. 2022 initialise the value
        function from the reward model), else a fresh adapter and a head seeded from the run's seed."""
        if self.source.kind == "run":
            self.shared.load(VALUE, self.source.path, trainable=True)
            return load_head(self.source.path)
        self.shared.add(VALUE, copy.deepcopy(self.shared.model.peft_config[POLICY]))
        return new_head(hidden_size(self.shared.model), self.config.seed + 1)

    # -- rollouts

    def step_prompts(self) -> list[RolloutPrompt]:
        """The next batch of train prompts in this epoch's seeded order (moves on to the next epoch)."""
        pos, size = self.position, self.config.batch_size
        if pos.batch_index >= self.batches_per_epoch():
            pos.epoch, pos.batch_index = pos.epoch + 1, 0
        order = data.epoch_order(len(self.train_prompts), self.config.seed, pos.epoch)
        chosen = order[pos.batch_index * size:(pos.batch_index + 1) * size]
        pos.batch_index += 1
        return [self.train_prompts[i] for i in chosen]

    def batches_per_epoch(self) -> int:
        """Rollout batches in a pass over the train prompts (the last one may be smaller)."""
        return math.ceil(len(self.train_prompts) / self.config.batch_size)

    def epoch_progress(self) -> float:
        """Epochs over the train prompts done, fractional."""
        return self.position.epoch + self.position.batch_index / self.batches_per_epoch()

    def token_logprobs(self, ids, attn, comp, mask, stats: bool = False):
        """Per-token log-probs [N, L] of the active adapter's tempered distribution (and the summed entropy)."""
        out = sequence_logps(self.model, ids, attn, comp, stats=stats, per_token=True,
                             temperature=self.config.temperature)
        return to_columns(out.token_logps, mask), out

    def token_values(self, ids, attn, comp, mask) -> torch.Tensor:
        """PPO's value of the state before each response token ([N, L]), under the value adapter."""
        with self.shared.adapter(VALUE):
            hidden = hidden_states(self.model, ids, attn)
        rows = hidden[:, :-1][comp[:, 1:].bool()]
        return to_columns(self.value_head(rows), mask)

    def forward_chunks(self, n: int) -> list[slice]:
        """Row ranges for the no-grad passes: the size of an update's micro-batch."""
        size = max(1, math.ceil(n / (self.config.num_mini_batches * self.config.grad_accumulation)))
        return [slice(lo, min(n, lo + size)) for lo in range(0, n, size)]

    @torch.no_grad()
    def rollout(self, prompts: list[RolloutPrompt], samples: int, seed: int, values: bool = True) -> Rollouts:
        """Sample `samples` responses per prompt from the policy and compute, without gradients, what the update
        needs: rollout and reference log-probs, values (PPO), scores."""
        config, device = self.config, self.device
        times = {}
        t = time.perf_counter()
        settings = generation.SamplingSettings(max_new_tokens=config.max_new_tokens, temperature=config.temperature)
        with self.shared.adapter(POLICY), self.accelerator.autocast():
            gens = generation.generate(self.model, self.tokenizer, [p.ids for p in prompts], settings, seed, device,
                                       num_samples=samples, batch_size=len(prompts) * samples)
        _sync(device)
        times[M.TIME_GENERATE] = time.perf_counter() - t

        t = time.perf_counter()
        ids, attn, comp = generation.pack(gens.prompt_ids, gens.completion_ids, self.pad_id, device)
        mask = response_mask([len(c) for c in gens.completion_ids], device)
        logprobs, ref_logprobs = torch.zeros(mask.shape, device=device), torch.zeros(mask.shape, device=device)
        old_values = torch.zeros(mask.shape, device=device) if self.is_ppo and values else None
        with eval_mode(self.model), self.accelerator.autocast(), self.shared.adapter(POLICY):
            for rows in self.forward_chunks(len(gens)):
                args = (ids[rows], attn[rows], comp[rows], mask[rows])
                logprobs[rows] = self.token_logprobs(*args)[0]
                with self.shared.reference():
                    ref_logprobs[rows] = self.token_logprobs(*args)[0]
                if old_values is not None:
                    old_values[rows] = self.token_values(*args).float()
        _sync(device)
        times[M.TIME_FORWARD] = time.perf_counter() - t

        t = time.perf_counter()
        per_response = [prompts[i] for i in gens.prompt_index]
        texts = [self.tokenizer.decode(c, skip_special_tokens=True) for c in gens.completion_ids]
        with eval_mode(self.model), self.accelerator.autocast():
            scores = self.scorer(Responses(ids, attn, [p.text for p in per_response],
                                           [p.messages for p in per_response], texts)).float()
        _sync(device)
        times[M.TIME_SCORE] = time.perf_counter() - t
        finished = torch.tensor(gens.finished, device=device)
        return Rollouts(per_response, gens.completion_ids, finished, ids, attn, comp, mask, logprobs, ref_logprobs,
                        old_values, scores, times)

    # -- advantages

    def kl_and_scores(self, r: Rollouts) -> dict[str, torch.Tensor]:
        """The per-token KL to the reference ([N, L]) and the scores after the missing-EOS penalty ([N])."""
        config = self.config
        kl = R.per_token_kl(r.logprobs, r.ref_logprobs, config.kl_estimator).masked_fill(~r.mask, 0.0)
        return {"kl": kl, "scores": R.apply_missing_eos_penalty(r.raw_scores, r.finished, config.missing_eos_penalty)}

    def advantages(self, r: Rollouts) -> dict[str, torch.Tensor]:
        """`kl_and_scores` plus the advantages (and PPO's returns) of a batch."""
        config = self.config
        out = self.kl_and_scores(r)
        kl, scores = out["kl"], out["scores"]
        if self.is_ppo:
            rewards = R.token_rewards(scores, kl, self.kl_ctl.value, r.mask)
            if config.whiten_rewards:
                rewards = R.masked_whiten(rewards, r.mask, shift_mean=False)
            advantages, returns = R.gae(rewards, r.values, r.mask, config.gamma, config.lam)
            out["advantages"] = R.masked_whiten(advantages, r.mask)
            out["returns"] = returns
        else:
            rlhf_reward = scores - self.kl_ctl.value * kl.sum(1)
            advantages = R.rloo_advantages(rlhf_reward, self.k)
            if config.normalize_advantages:
                advantages = R.masked_whiten(advantages, torch.ones_like(advantages, dtype=torch.bool))
            out["advantages"] = advantages
        return out

    # -- optimisation

    def optimise(self, r: Rollouts, adv: dict[str, torch.Tensor], stats: StepStats) -> torch.Tensor:
        """`ppo_epochs` passes over the batch in shuffled minibatches, one optimizer step each. Returns the last
        gradient norm."""
        config, n = self.config, len(r)
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + self.position.step)
        mb_size = math.ceil(n / config.num_mini_batches)
        grad_norm = torch.zeros(())
        old_seq = (r.logprobs * r.mask).sum(1)
        for _epoch in range(config.ppo_epochs):
            order = torch.randperm(n, generator=g).to(self.device)
            for minibatch in torch.split(order, mb_size):
                micro = torch.split(minibatch, math.ceil(len(minibatch) / config.grad_accumulation))
                for rows in micro:
                    weight = len(rows) / len(minibatch)
                    self.update(r, adv, rows, old_seq, weight, stats)
                grad_norm = self.accelerator.clip_grad_norm_(self.trainable, config.max_grad_norm or float("inf"))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def update(self, r: Rollouts, adv: dict[str, torch.Tensor], rows: torch.Tensor, old_seq: torch.Tensor,
               weight: float, stats: StepStats) -> None:
        """Forward, loss and backward of one micro-batch: the policy's clipped loss, then PPO's value loss."""
        config = self.config
        ids, attn, comp, mask = r.input_ids[rows], r.attention_mask[rows], r.completion_mask[rows], r.mask[rows]
        with self.accelerator.autocast():
            logprobs, out = self.token_logprobs(ids, attn, comp, mask, stats=True)
            if self.is_ppo:
                policy = R.clipped_policy_loss(logprobs, r.logprobs[rows], adv["advantages"][rows], mask,
                                               config.cliprange)
            else:
                # RLOO's ratio is the whole response's (its advantage is the response's)
                seq = (logprobs * mask).sum(1)
                policy = R.clipped_policy_loss(seq, old_seq[rows], adv["advantages"][rows],
                                               torch.ones_like(seq, dtype=torch.bool), config.cliprange)
        self.accelerator.backward(policy.loss * weight)
        means = {M.LOSS_POLICY: (policy.loss.detach(), 1), M.POLICY_APPROXKL: (policy.approxkl, 1),
                 M.POLICY_CLIPFRAC: (policy.clipfrac, 1), M.VALUE_RATIO: (policy.ratio, 1),
                 M.POLICY_ENTROPY: (out.entropy_sum.sum(), out.tokens.sum())}
        if self.is_ppo:
            with self.accelerator.autocast():
                values = self.token_values(ids, attn, comp, mask).float()
                value_loss, value_clipfrac = R.clipped_value_loss(values, r.values[rows], adv["returns"][rows], mask,
                                                                  config.cliprange_value)
            self.accelerator.backward(config.vf_coef * value_loss * weight)
            means.update({M.LOSS_VALUE: (value_loss.detach(), 1), M.VALUE_CLIPFRAC: (value_clipfrac, 1)})
        stats.add(means, tokens=attn.sum())

    # -- metrics

    def rollout_metrics(self, r: Rollouts, adv: dict[str, torch.Tensor], kl_coef: float) -> dict[str, float]:
        """The batch's objective under TRL's names (one read back from the device)."""
        seq_kl = adv["kl"].sum(1)
        non_score = -kl_coef * seq_kl
        lengths = r.mask.sum(1).float()
        values = torch.stack([adv["scores"].mean(), seq_kl.mean(), (-r.logprobs * r.mask).sum(1).mean(),
                              non_score.mean(), (adv["scores"] + non_score).mean(), lengths.mean(),
                              r.finished.float().sum()]).tolist()
        names = (M.OBJECTIVE_SCORES, M.OBJECTIVE_KL, M.OBJECTIVE_ENTROPY, M.OBJECTIVE_NON_SCORE_REWARD,
                 M.OBJECTIVE_RLHF_REWARD, M.RESPONSE_LENGTH, M.NUM_EOS_TOKENS)
        return dict(zip(names, values, strict=True)) | {M.KL_COEF: kl_coef}

    def check_finite(self, values: dict[str, float]) -> None:
        """A loss or score no longer finite fails the run at this step (the last checkpoint stays good)."""
        bad = [k for k in (M.LOSS_POLICY, M.LOSS_VALUE, M.OBJECTIVE_SCORES) if not math.isfinite(values.get(k, 0.0))]
        if bad:
            self.writer.flush(wait=True)
            raise TrainingError(f"{bad[0]} became {values[bad[0]]} at step {self.position.step}: training diverged. "
                                f"Lower learning_rate (now {self.config.learning_rate:g}), keep max_grad_norm > 0, "
                                f"or use fp32/bf16 instead of fp16; then resume from the last checkpoint")

    # -- evaluate

    @torch.no_grad()
    def evaluate(self) -> bool:
        """One response to each held-out eval prompt (the same seed at every evaluation): its score and KL to the
        reference, written with the step, and the responses stored as the step's samples. False (nothing
        written) when a stop came first."""
        if self.stop_requested():
            return False
        if self.eval_prompts:
            r = self.rollout(self.eval_prompts, 1, self.config.seed, values=False)
            adv = self.kl_and_scores(r)
            values = {M.eval_name(k): v for k, v in self.rollout_metrics(r, adv, self.kl_ctl.value).items()
                      if k in (M.OBJECTIVE_SCORES, M.OBJECTIVE_KL, M.OBJECTIVE_RLHF_REWARD, M.RESPONSE_LENGTH)}
            # the sampled KL and the collapse measures under the names DPO's evaluations use (charts, health
            # strip and rules); one response per prompt, so no self-similarity (it compares a prompt's samples)
            k1 = (r.logprobs - r.ref_logprobs).masked_fill(~r.mask, 0.0)
            k3 = R.per_token_kl(r.logprobs, r.ref_logprobs, "k3").masked_fill(~r.mask, 0.0)
            tokens = max(1.0, float(r.mask.sum()))
            content = self.content(r)
            mean_length, median_length = collapse.length_summary([len(c) for c in r.completion_ids])
            ended = float(r.finished.float().mean())
            values.update({M.EVAL_KL: float(k3.sum()) / tokens, M.EVAL_KL_K1: float(k1.sum()) / tokens,
                           M.EVAL_KL_SEQ: float(k3.sum(1).mean()), M.EVAL_KL_K1_SEQ: float(k1.sum(1).mean()),
                           M.EVAL_SAMPLE_LENGTH: mean_length, M.EVAL_SAMPLE_LENGTH_MEDIAN: median_length,
                           M.EVAL_SAMPLE_CAP: float(self.config.max_new_tokens), M.EVAL_SAMPLE_HIT_CAP: 1.0 - ended,
                           M.EVAL_EOS_RATE: ended, M.EVAL_DISTINCT_1: collapse.distinct_n(content, 1),
                           M.EVAL_DISTINCT_2: collapse.distinct_n(content, 2),
                           M.EVAL_REPETITION: sum(map(collapse.repetition, content)) / len(content)})
            self.position.samples_generated += len(r)
            values[M.SAMPLES_GENERATED] = self.position.samples_generated
            self.writer.add(self.position.step, values)
            if self.main:
                self.ctx.project.add_samples(self.ctx.run_id, self.position.step, self.sample_rows(r, adv))
        self.position.evaluated_step = self.position.step
        return True

    @staticmethod
    def content(r: Rollouts) -> list[list[int]]:
        """Each response's tokens without its closing stop token (what the collapse measures read)."""
        return [sampling.content_tokens(c, done) for c, done in zip(r.completion_ids, r.finished.tolist(),
                                                                    strict=True)]

    def sample_rows(self, r: Rollouts, adv: dict[str, torch.Tensor]) -> list[dict]:
        """Rows for `add_samples`: prompt, response, and in meta its reward, KL, length, whether it ended (or hit
        the cap) and its repetition, with the repeated spans the samples timeline marks."""
        scores, kls = adv["scores"].tolist(), adv["kl"].sum(1).tolist()
        raw = r.raw_scores.tolist()
        cap = self.config.max_new_tokens
        rows = []
        for i, (p, c, tokens) in enumerate(zip(r.prompts, r.completion_ids, self.content(r), strict=True)):
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            done = bool(r.finished[i])
            rows.append({"prompt_id": p.prompt_id, "prompt_text": p.text, "text": text,
                         "meta": {"tokens": len(c), "finished": done, "hit_cap": not done, "cap": cap,
                                  "reward": raw[i], "score": scores[i], "kl_seq": kls[i],
                                  "repetition": collapse.repetition(tokens),
                                  "repeated": sampling.repeated_spans(self.tokenizer, tokens, text,
                                                                      collapse.REPETITION_N)}})
        return rows

    # -- checkpoint

    def save_checkpoint(self) -> None:
        """The resumable checkpoint (`restore` is its mirror): every trained adapter, the value head, optimizer,
        schedule, KL controller, RNG and position; the policy adapter to `runs/<id>/adapter/`, the value adapter
        and head to `runs/<id>/value/`."""
        model = self.model
        ckpt = self.training_state() | {
            "adapters": {name: checkpoint.adapter_state(model, name) for name in self.shared.trainable},
            "kl_controller": self.kl_ctl.state_dict()}
        if self.is_ppo:
            ckpt["value_head"] = {k: v.detach().cpu().clone() for k, v in self.value_head.state_dict().items()}
        self.record_checkpoint(ckpt)
        if self.main:
            run_dir = paths.run_dir(self.folder, self.ctx.run_id)
            checkpoint.save_adapter(model, self.tokenizer, paths.adapter_dir(self.folder, self.ctx.run_id), POLICY)
            if self.is_ppo:
                model.save_pretrained(run_dir, safe_serialization=True, selected_adapters=[VALUE])  # to value/
                save_head(self.value_head, run_dir / VALUE)

    def restore(self, ckpt: dict) -> None:
        for name, state in ckpt["adapters"].items():
            checkpoint.load_adapter_state(self.model, state, name)
        if self.is_ppo:
            self.value_head.load_state_dict(ckpt["value_head"])
        self.kl_ctl.load_state_dict(ckpt["kl_controller"])
        self.restore_training_state(ckpt)


def train(ctx: RunContext) -> str:
    """Train the PPO or RLOO run to its end or until asked to stop. Returns 'done' or 'interrupted'."""
    run = PPORun(ctx)
    config, pos = run.config, run.position

    # the baseline at step 0 (score and KL of the untouched policy), or an evaluation a stop cut short
    run.evaluate_baseline()

    status = "done"
    while pos.step < run.total_steps:
        # stop requested (GUI button or signal): save and leave between rollout batches
        if run.stop_requested():
            status = "interrupted"
            break

        # learning rate and KL coefficient of this step (logged as used)
        lr, kl_coef = run.scheduler.get_last_lr()[0], run.kl_ctl.value
        began = time.perf_counter()

        # rollout: sample, reference and values, score (seeded by step: a resumed run samples the same)
        rollouts = run.rollout(run.step_prompts(), run.k, config.seed * 1_000_003 + pos.step)
        adv = run.advantages(rollouts)

        # optimise: ppo_epochs x num_mini_batches clipped updates on this batch
        t = time.perf_counter()
        stats = StepStats(run.device, OPTIMISE_METRICS)
        run.model.train()
        grad_norm = run.optimise(rollouts, adv, stats)
        run.scheduler.step()
        _sync(run.device)
        optimise_seconds = time.perf_counter() - t

        # the KL coefficient follows the batch's KL (adaptive), then the metrics (one read back)
        values = run.rollout_metrics(rollouts, adv, kl_coef)
        run.kl_ctl.update(values[M.OBJECTIVE_KL], len(rollouts))
        log_step = run.is_log_step()
        pos.step += 1
        pos.tokens += int(rollouts.attention_mask.sum())
        pos.samples_generated += len(rollouts)
        if log_step:
            seconds = time.perf_counter() - began
            values |= stats.read() | rollouts.times
            values.update({M.TIME_OPTIMISE: optimise_seconds, M.GRAD_NORM: float(grad_norm), M.LEARNING_RATE: lr,
                           M.TOKENS_PER_SECOND: float(rollouts.attention_mask.sum()) / seconds,
                           M.MEMORY: runtime.peak_memory_gib(run.device),
                           M.NUM_TOKENS: pos.tokens, M.SAMPLES_GENERATED: pos.samples_generated,
                           M.EPOCH: run.epoch_progress()})
            run.writer.add(pos.step, values)
            run.check_finite(values)
            if ctx.on_progress:
                ctx.on_progress(pos.step, run.total_steps, values)
        run.writer.set_step(pos.step)

        # evaluate, checkpoint
        run.evaluate_and_checkpoint()

    # the end: the final evaluation, the checkpoint, the last rows
    return run.finish(status)
