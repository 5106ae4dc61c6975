"""The DPO recipe: LoRA DPO and its variants (IPO, robust, hinge, SimPO, + NLL) on a run's frozen snapshot.

Supports one process or several (`accelerate launch`, data parallel), fp32/bf16/fp16, gradient
accumulation and checkpointing, reference log-probs each step or computed once up front, and a stop and
resume at any optimizer step that reaches the adapter of an uninterrupted run. Assumes a causal LM folder
with its tokenizer and pairs of two completions to one prompt, labelled chosen and rejected.

The reference model is the policy with its adapter disabled (no second copy of the weights). Chosen and
rejected run through one forward pass; the lm_head touches completion positions only (see logps.py).
Metrics stay on the device as tensors and are read back (one sync) only on logging steps. `train()` at the
bottom reads top to bottom: set up, then one commented block per phase of an optimizer step.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from studio.core import metrics as M
from studio.core import paths
from studio.core.configs import DPOConfig
from studio.train import checkpoint, data, memory, packing, preflight, runtime, sampling
from studio.train.logps import completion_logps
from studio.train.losses import LossSettings, PairLogps, needs_reference, preference_loss
from studio.train.metrics_writer import metric_sink
from studio.train.model import PolicyLogps, eval_mode, load_policy
from studio.train.preflight import TrainingError
from studio.train.recipe import Position, RecipeRun
from studio.train.runtime import RunContext, TrainingClock
from studio.train.step_stats import StepStats

log = logging.getLogger("studio.train")

# What dpo_forward (and train_step, the gradient norm) adds to the statistics, in the order they are written.
STEP_METRICS = (M.LOSS, M.REWARDS_CHOSEN, M.REWARDS_REJECTED, M.REWARDS_MARGINS, M.REWARDS_ACCURACIES,
                M.LOGPS_CHOSEN, M.LOGPS_REJECTED, M.LOGITS_CHOSEN, M.LOGITS_REJECTED, M.ENTROPY, M.LOGRATIO_CHOSEN,
                M.LOGRATIO_REJECTED, M.NLL, M.GRAD_NORM)


@dataclass
class TrainState(Position):
    """Where a DPO run is (`Position`), with the reference log-probs computed once up front, by pair id (empty
    when they are computed in each step); its checkpoint keeps them beside the position."""

    ref_cache: dict[int, tuple[float, float]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- one step


def step_stats(device: torch.device) -> StepStats:
    """Empty statistics for `dpo_forward` to add to."""
    return StepStats(device, STEP_METRICS)


def loss_settings(config: DPOConfig) -> LossSettings:
    return LossSettings(beta=config.beta, label_smoothing=config.label_smoothing, simpo_gamma=config.simpo_gamma,
                        nll_weight=config.nll_weight)


def decoder_attention(batch: data.Batch, model: nn.Module):
    """What the decoder takes as attention_mask: the padding mask, or the packed layout's block mask."""
    if not batch.packed:
        return batch.attention_mask
    return packing.attention_mask(batch.segments, batch.branches, model)


def reference_logps(peft_model: nn.Module, batch: data.Batch, attention=None) -> torch.Tensor:
    """The reference's per-sequence log-probs of a batch: the policy with its adapter disabled, no gradient."""
    attention = decoder_attention(batch, peft_model) if attention is None else attention
    with torch.no_grad(), peft_model.disable_adapter():
        return completion_logps(peft_model, batch.input_ids, batch.head, attention, batch.position_ids).logps


TIE_RESOLUTION = 2.0 ** -20
"""Relative resolution of a reward margin: 8 float32 epsilons of the log-probs it is the difference of."""


def tied_to_zero(margin: torch.Tensor, p: PairLogps, beta: float) -> torch.Tensor:
    """Per-pair reward margins, with those within float resolution of 0 set to exactly 0, for the logged
    metrics (the loss keeps the raw value). With the adapter still zero the policy is the reference, but its
    log-probs come from other batches than the precomputed reference's (other padding, so other float
    rounding): the margin is then ~1e-7 either side of 0, and "accuracy" would count noise as the model
    ranking pairs right or wrong. Exactly 0 is what the charts and the CLI read as a tie (series.untied)."""
    if p.ref_chosen is None or p.ref_rejected is None:
        return margin  # SimPO and CPO-style losses: no reference, no tie at the start
    scale = p.chosen.abs() + p.rejected.abs() + p.ref_chosen.abs() + p.ref_rejected.abs()
    return torch.where(margin.abs() <= beta * scale * TIE_RESOLUTION, torch.zeros_like(margin), margin)


def dpo_forward(policy: nn.Module, peft_model: nn.Module, batch: data.Batch, config: DPOConfig,
                ref: tuple[torch.Tensor, torch.Tensor] | None = None, want_ref: bool = True,
                stats: StepStats | None = None):
    """Reference forward (adapter disabled, no grad) unless precomputed, then the policy forward (one pass
    over chosen and rejected), loss. Returns the LossOutput; adds detached statistics to `stats`.

    The reference runs first so that its transient memory is gone before the policy's activations build up."""
    B = batch.n_pairs
    attention = decoder_attention(batch, peft_model)
    # reference: the same model with the adapter off
    if ref is None and want_ref:
        ref_all = reference_logps(peft_model, batch, attention)
        ref = (ref_all[:B], ref_all[B:])
    # policy: chosen sequences then rejected ones, one forward
    logps, tokens, entropy_sum, logits_sum = policy(batch.input_ids, attention, batch.completion_mask,
                                                    stats=stats is not None, rows=batch.head,
                                                    position_ids=batch.position_ids)
    p = PairLogps(logps[:B], logps[B:], ref[0] if ref else None, ref[1] if ref else None, tokens[:B], tokens[B:])
    out = preference_loss(config.loss_type, p, loss_settings(config))
    if stats is not None:
        with torch.no_grad():
            margin = tied_to_zero(out.chosen_rewards - out.rejected_rewards, p, config.beta)
            chosen_tokens, rejected_tokens = p.chosen_tokens.sum(), p.rejected_tokens.sum()
            # each metric's sum over the micro-batch and what it is averaged over
            means = {
                M.LOSS: (out.loss.detach(), 1),
                M.REWARDS_CHOSEN: (out.chosen_rewards.sum(), B),
                M.REWARDS_REJECTED: (out.rejected_rewards.sum(), B),
                M.REWARDS_MARGINS: (margin.sum(), B),
                M.REWARDS_ACCURACIES: ((margin > 0).float().sum(), B),
                M.LOGPS_CHOSEN: (p.chosen.detach().sum(), B),
                M.LOGPS_REJECTED: (p.rejected.detach().sum(), B),
                M.LOGITS_CHOSEN: (logits_sum[:B].sum(), chosen_tokens),
                M.LOGITS_REJECTED: (logits_sum[B:].sum(), rejected_tokens),
                M.ENTROPY: (entropy_sum.sum(), chosen_tokens + rejected_tokens),
            }
            if ref is not None:
                means[M.LOGRATIO_CHOSEN] = ((p.chosen.detach() - ref[0]).sum(), chosen_tokens)
                means[M.LOGRATIO_REJECTED] = ((p.rejected.detach() - ref[1]).sum(), rejected_tokens)
            if out.nll is not None:
                means[M.NLL] = (out.nll.detach(), 1)
            stats.add(means, tokens=batch.n_tokens)
    return out


def train_step(policy, peft_model, micro_batches: list[data.Batch], refs: list, config: DPOConfig, accelerator,
               optimizer, scheduler, trainable: list[nn.Parameter], want_ref: bool,
               stats: StepStats | None) -> torch.Tensor:
    """One optimizer step over `grad_accumulation` micro-batches: forward, reference, loss, backward, clip,
    step. Returns the gradient norm before clipping (a device tensor: reading it syncs), also added to `stats`.

    Under several processes the gradients are all-reduced once per optimizer step: every micro-batch but the
    last runs its backward under `no_sync`."""
    last = len(micro_batches) - 1
    for i, (batch, ref) in enumerate(zip(micro_batches, refs, strict=True)):
        with accelerator.no_sync(policy) if i < last else contextlib.nullcontext():
            with accelerator.autocast():
                out = dpo_forward(policy, peft_model, batch, config, ref=ref, want_ref=want_ref, stats=stats)
            accelerator.backward(out.loss / len(micro_batches))
    grad_norm = accelerator.clip_grad_norm_(trainable, config.max_grad_norm or float("inf"))
    optimizer.step()
    # a step the fp16 loss scaler skipped (inf/NaN gradients, its scale lowered) changed no weight: the
    # schedule waits for it, as in transformers' Trainer
    if not accelerator.optimizer_step_was_skipped:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if stats is not None:
        stats.add({M.GRAD_NORM: (torch.as_tensor(grad_norm, device=accelerator.device), 1)})
    return grad_norm


# ---------------------------------------------------------------------------------------------- passes over data


def batch_ref(state: TrainState, batch: data.Batch, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The batch's precomputed reference log-probs (chosen, rejected), or None when not all of them are
    precomputed (then the step runs the reference forward)."""
    if not state.ref_cache:
        return None
    try:
        pairs = [state.ref_cache[i] for i in batch.pair_ids]
    except KeyError:
        return None
    t = data.to_device(torch.tensor(pairs, dtype=torch.float32), device)
    return t[:, 0], t[:, 1]


# The reference pass keeps no activations, so its batches can be this many times the training batch.
REF_BATCH_FACTOR = 4
# Gradient checkpointing 'auto' measures the longest pair by tokens among this many longest by characters.
LONGEST_CANDIDATES = 16


@torch.inference_mode()
def precompute_ref(peft_model, batches: data.StoppablePass, accelerator) -> dict[int, tuple[float, float]] | None:
    """Reference log-probs of the pairs of `batches` (every process's share, gathered), once, before training
    (see `precompute_is_cheaper`): inference mode, in the batches `DPORun.reference_pass` lays out (larger than
    the training batch, sorted by length, then sharded). None when a stop was requested meanwhile."""
    cache: dict[int, tuple[float, float]] = {}
    with eval_mode(peft_model), peft_model.disable_adapter():
        for batch in batches:
            if batch is None:
                continue
            with accelerator.autocast():
                lp = completion_logps(peft_model, batch.input_ids, batch.head, decoder_attention(batch, peft_model),
                                      batch.position_ids).logps
            B = batch.n_pairs
            for pid, c, r in zip(batch.pair_ids, lp[:B].tolist(), lp[B:].tolist(), strict=True):
                cache[pid] = (c, r)
    if batches.stopped:
        return None
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        cache = dict(gather_object(list(cache.items())))
    return cache


def precompute_is_cheaper(config: DPOConfig, total_steps: int, n_train: int, n_eval: int) -> bool:
    """precompute_ref_logps 'auto': precompute when the run would otherwise run at least as many pairs through
    the reference as the snapshot holds: the pairs of its training steps plus those of its evaluations. That
    is about one epoch or more; the precomputed pass is then cheaper still per pair (inference mode, larger
    and length-sorted batches)."""
    if config.precompute_ref_logps in ("on", "off", True, False):
        return config.precompute_ref_logps in ("on", True)
    evaluations = (total_steps // config.eval_interval if config.eval_interval else 0) + 1
    per_step_pairs = total_steps * config.grad_accumulation * config.batch_size + evaluations * n_eval
    return per_step_pairs >= n_train + n_eval


@torch.no_grad()
def evaluate(policy, peft_model, batches: data.StoppablePass, config: DPOConfig, accelerator, state: TrainState,
             want_ref: bool) -> dict[str, float] | None:
    """The train metrics on the eval split (no gradient, dropout off), every process evaluating its share and
    the sums gathered; None when a stop was requested. `policy` is the unwrapped module: a DDP forward would
    be a collective, and the shares differ by a batch."""
    stats = step_stats(accelerator.device)
    with eval_mode(peft_model):
        for batch in batches:
            if batch is None:
                continue
            with accelerator.autocast():
                dpo_forward(policy, peft_model, batch, config, ref=batch_ref(state, batch, accelerator.device),
                            want_ref=want_ref, stats=stats)
    if batches.stopped:
        return None
    stats.sum_over_processes(accelerator)
    return {M.eval_name(k): v for k, v in stats.read().items() if k != M.GRAD_NORM}


# ---------------------------------------------------------------------------------------------- the run


class DPORun(RecipeRun):
    """One run's model, data, optimizer, position and metric sink, with a method per phase of `train()`."""

    position: TrainState

    def __init__(self, ctx: RunContext):
        """Set up: settings and data are checked before the model loads (a mistake must not cost a load),
        then model, optimizer, and on resume everything the checkpoint holds. Pairs are tokenized when a step
        or pass reaches them, not here: a large snapshot costs no minutes before the first step."""
        assert isinstance(ctx.config, DPOConfig), "the DPO recipe trains DPO runs"
        started = time.monotonic()  # the wall time that sampling's budget is a share of
        super().__init__(ctx)  # settings checked, accelerator, processes, checkpoint folder
        config, project, run_id = self.config, ctx.project, ctx.run_id
        for warning in preflight.settings_warnings(config):
            log.warning("%s", warning)
        runtime.check_distributed(self.accelerator)

        # snapshot and checkpoint first
        self.progress = runtime.Progress(ctx, self.main)
        self.progress("preparing: reading the run's snapshot", force=True)
        self.train_rows, self.eval_rows = data.split_eval(project.run_snapshot(run_id), config.eval_fraction,
                                                          config.seed)
        if not self.train_rows:
            raise TrainingError(f"run {run_id}: its snapshot holds no train preferences; label some pairs (a or b) "
                                f"in the train split before starting a run")
        ckpt = self.load_checkpoint() if ctx.resume else None
        self.report_device()

        # model and data: the policy with a fresh adapter; the snapshot's rows, tokenized as they are reached
        self.progress(f"preparing: loading the model from {ctx.model_path}", force=True)
        self.tokenizer, self.peft_model = load_policy(ctx.model_path, config, self.accelerator.mixed_precision)
        self.pad_id = self.tokenizer.pad_token_id
        self.tokenize = data.PairTokenizer(self.tokenizer, config.max_length, config.max_prompt_length,
                                           config.truncation)
        self.batches_per_epoch = data.batches_per_epoch(len(self.train_rows), config.batch_size, self.world)
        self.total_steps = runtime.total_steps_for(config, len(self.train_rows), self.world)
        log.info("%d train pairs, %d eval pairs, %d optimizer steps", len(self.train_rows), len(self.eval_rows),
                 self.total_steps)
        # the probe prompts (only their rows tokenized here) and the sampling cap
        self.probes = sampling.ProbeSampler.for_run(config, self.eval_rows, self.train_rows, self.tokenize, started)
        # the reference forward: what the loss needs, or what the user asked to chart for a reference-free one
        self.want_ref = needs_reference(config.loss_type) or config.logratio_metrics

        # optimizer and schedule over the adapter weights only
        self.trainable = [p for p in self.peft_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = runtime.make_scheduler(optimizer, config, self.total_steps)
        self.policy, self.optimizer = self.accelerator.prepare(PolicyLogps(self.peft_model), optimizer)
        self.peft_model.train()
        self.layout, self.precompute = self.plan_speed()

        # position: the start, or where the checkpoint left off
        self.position = TrainState()
        if ckpt is not None:
            self.restore(ckpt)
        if self.main:
            project.update_run(run_id, total_steps=self.total_steps, step=self.position.step)
        self.writer = metric_sink(project, run_id, self.main)
        self._epoch_batches: tuple[int, list[list[int]]] | None = None
        self.new_tokens = 0  # this process's training tokens since `count_tokens` last ran

    def plan_speed(self) -> tuple[str, bool]:
        """The batch layout, gradient checkpointing ('auto': measured, see memory.py) and whether reference
        log-probs are precomputed, each logged with why."""
        config = self.config
        reason = packing.unsupported_reason(self.peft_model)
        layout = "padded" if config.batch_layout == "padded" or reason else "packed"
        if config.batch_layout == "packed" and reason:
            log.warning("batch_layout packed: %s; the padded layout is used", reason)
        if config.gradient_checkpointing == "auto":
            # the longest pair by tokens among the longest by characters: only these few are tokenized here
            candidates = heapq.nlargest(LONGEST_CANDIDATES, self.train_rows, key=data.row_chars)
            longest = max(self.tokenize.rows(candidates), key=lambda e: e.n_tokens)
            batch = data.make_batch([longest], self.pad_id, layout).to(self.device)
            compute_bytes = 4 if self.accelerator.mixed_precision == "no" else 2
            k, n, why = memory.auto_checkpointing(self.peft_model, batch, config.batch_size,
                                                  decoder_attention(batch, self.peft_model), self.device,
                                                  compute_bytes)
            log.info("gradient checkpointing auto: %d of %d layers recomputed (%s)", k, n, why)
        n_train, n_eval = (math.ceil(len(rows) / self.world) for rows in (self.train_rows, self.eval_rows))
        precompute = precompute_is_cheaper(config, self.total_steps, n_train, n_eval)
        log.info("batch layout: %s%s; reference log-probs %s", layout, f" ({reason})" if reason else "",
                 "not needed" if not self.want_ref else "precomputed once" if precompute else "computed in each step")
        return layout, precompute

    # -- data

    def next_batch(self) -> data.Batch:
        """The next micro-batch of this process's share, tokenized, on the device; moves on to the next epoch."""
        pos = self.position
        while True:
            batches = self.epoch_batches()
            if pos.batch_index < len(batches):
                pos.batch_index += 1
                rows = [self.train_rows[i] for i in batches[pos.batch_index - 1]]
                batch = data.make_batch(self.tokenize.rows(rows), self.pad_id, self.layout)
                self.new_tokens += batch.n_tokens  # counted on the host: no device sync
                return batch.to(self.device)
            pos.epoch, pos.batch_index = pos.epoch + 1, 0

    def count_tokens(self) -> int:
        """The run's training tokens so far, over every process: this process's tokens since the last count are
        summed over the processes into `position.tokens` (a collective: every process calls it at the same step)."""
        self.position.tokens += round(runtime.sum_over_processes(self.accelerator, self.new_tokens))
        self.new_tokens = 0
        return self.position.tokens

    def epoch_batches(self) -> list[list[int]]:
        """This process's micro-batches of the current epoch (`data.epoch_batches`), as train-row indices."""
        epoch = self.position.epoch
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            self._epoch_batches = (epoch, data.epoch_batches(len(self.train_rows), self.config.batch_size,
                                                             self.config.seed, epoch, self.world, self.rank))
        return self._epoch_batches[1]

    def rows_in_use(self) -> list[dict]:
        """The train rows the run's steps reach, in snapshot order (all of them once it runs an epoch), then the
        eval rows: what the reference pass computes."""
        config, n = self.config, len(self.train_rows)
        per_step = config.batch_size * config.grad_accumulation * self.world
        needed, used, epoch = self.total_steps * per_step, set(), 0
        per_epoch = self.batches_per_epoch * config.batch_size * self.world
        while needed > 0 and len(used) < n:
            order = data.epoch_order(n, config.seed, epoch)
            used.update(order[i % n] for i in range(min(needed, per_epoch)))
            needed, epoch = needed - per_epoch, epoch + 1
        return [self.train_rows[i] for i in sorted(used)] + self.eval_rows

    def rows_pass(self, rows: Sequence[dict], what: str, batch_size: int | None = None) -> data.StoppablePass:
        """A pass over `rows` in the run's layout, this process's share, reporting progress as `what`."""
        return data.StoppablePass(rows, self.tokenize, batch_size or self.config.batch_size, self.pad_id,
                                  self.device, self.stop_requested, self.world, self.rank, self.progress.counter(what),
                                  self.layout)

    def reference_pass(self) -> data.StoppablePass:
        """The reference pass over every pair the run uses: sorted by length over all of them first, then
        sharded (every process's k-th batch holds pairs of about the same length, so no process waits long for
        the others at the gather), in batches REF_BATCH_FACTOR times the training batch."""
        return self.rows_pass(data.by_length(self.rows_in_use()), "reference log-probs",
                              self.config.batch_size * REF_BATCH_FACTOR)

    def precompute_reference(self) -> None:
        """The reference log-probs of every pair the run uses, once; a stop meanwhile leaves them to the resume."""
        t0 = time.time()
        cache = precompute_ref(self.peft_model, self.reference_pass(), self.accelerator)
        if cache is None:
            log.info("stop requested during the reference pass (it is redone on resume)")
        else:
            self.position.ref_cache = cache
            log.info("reference log-probs of %d pairs precomputed in %.1fs", len(cache), time.time() - t0)

    # -- step and log

    def step(self, micro_batches: list[data.Batch], stats: StepStats) -> torch.Tensor:
        """One optimizer step, its statistics added to `stats`."""
        refs = [batch_ref(self.position, b, self.device) for b in micro_batches]
        return train_step(self.policy, self.peft_model, micro_batches, refs, self.config, self.accelerator,
                          self.optimizer, self.scheduler, self.trainable, want_ref=self.want_ref, stats=stats)

    def log_metrics(self, stats: StepStats, lr: float, clock: TrainingClock) -> dict[str, float]:
        """Write the metrics of the steps since the last log: each the mean over those steps (and over every
        process's micro-batches), as TRL logs them; learning_rate is the last step's. Reading the statistics is
        the only sync with the device. A loss that is no longer finite fails the run here."""
        config, pos = self.config, self.position
        stats.sum_over_processes(self.accelerator)
        values = stats.read()
        values.update({M.LEARNING_RATE: lr, M.TOKENS_PER_SECOND: stats.tokens / max(clock.seconds(), 1e-9),
                       M.MEMORY: runtime.peak_memory_gib(self.device),
                       M.NUM_TOKENS: self.count_tokens(),
                       M.EPOCH: pos.epoch + pos.batch_index / max(1, len(self.epoch_batches()))})
        self.writer.add(pos.step, values)
        if not math.isfinite(values[M.LOSS]):
            # the adapter is wrecked from here on; failing now keeps the last good checkpoint as the one to
            # resume from, instead of ending "done" with a NaN adapter
            self.writer.flush(wait=True)
            raise TrainingError(
                f"the loss became {values[M.LOSS]} at step {pos.step}: training diverged. Lower "
                f"learning_rate (now {config.learning_rate:g}), keep max_grad_norm > 0, or use fp32/bf16 "
                "instead of fp16; then resume from the last checkpoint or start a new run")
        return values

    # -- evaluate

    def evaluate(self) -> bool:
        """Evaluate at this step: the eval split's metrics and samples on the fixed prompts, written together,
        so a stopped evaluation leaves no half of itself behind. False (nothing written) when a stop came
        first."""
        values: dict[str, float] = {}
        if self.eval_rows:
            split_values = evaluate(PolicyLogps(self.peft_model), self.peft_model,
                                    self.rows_pass(self.eval_rows, "evaluating"), self.config, self.accelerator,
                                    self.position, self.want_ref)
            if split_values is None:
                return False
            values.update(split_values)
            values[M.EVAL_PAIRS] = len(self.eval_rows)
        rows: list[dict] = []
        # the first and last evaluations always sample; the others while sampling stays within its time budget
        if self.main and self.probes.due(self.position.step, self.total_steps):
            if self.ctx.should_stop():  # sampling is the main process's alone: no collective here
                return False
            with self.accelerator.autocast():
                sample_values, rows = self.probes.sample(self.peft_model, self.tokenizer, self.device,
                                                         self.position.step)
            values.update(sample_values)
            self.position.samples_generated += len(rows)
        if self.main:
            values[M.SAMPLES_GENERATED] = self.position.samples_generated
        self.writer.add(self.position.step, values)
        if rows:
            self.ctx.project.add_samples(self.ctx.run_id, self.position.step, rows)
        self.position.evaluated_step = self.position.step
        return True

    # -- checkpoint

    def save_checkpoint(self) -> None:
        """The resumable checkpoint (see `restore` for its mirror) and the adapter beside it."""
        self.count_tokens()
        scaler = self.accelerator.scaler
        self.record_checkpoint(self.training_state() | {
            "adapter": checkpoint.adapter_state(self.peft_model), "ref_cache": self.position.ref_cache,
            # fp16's loss scale: resuming at the initial scale would skip steps until it found it again
            "scaler": scaler.state_dict() if scaler is not None else None})
        if self.main:
            checkpoint.save_adapter(self.peft_model, self.tokenizer, paths.adapter_dir(self.folder, self.ctx.run_id))

    def restore(self, ckpt: dict) -> None:
        """Resume: the mirror of `save_checkpoint`. Metric rows logged after the checkpoint are dropped."""
        checkpoint.load_adapter_state(self.peft_model, ckpt["adapter"])
        if ckpt.get("scaler") is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(ckpt["scaler"])
        self.restore_training_state(ckpt)
        self.position.ref_cache = ckpt.get("ref_cache") or {}


def train(ctx: RunContext) -> str:
    """Train the run to its end or until asked to stop. Returns the final status: 'done' or 'interrupted'."""
    run = DPORun(ctx)
    config, pos = run.config, run.position

    # reference log-probs once up front (precompute_ref_logps, by default when cheaper), unless the checkpoint
    # brought them
    if run.precompute and run.want_ref and not pos.ref_cache:
        run.precompute_reference()

    # the baseline at step 0 (samples and KL zero before any update), or an evaluation a stop cut short
    run.evaluate_baseline()

    stats, clock = step_stats(run.device), TrainingClock()
    status = "done"
    while pos.step < run.total_steps:
        # stop requested (GUI button or signal): save and leave between optimizer steps
        if run.stop_requested():
            status = "interrupted"
            break

        # learning rate of this step (the scheduler sets it; logged as used)
        lr = run.scheduler.get_last_lr()[0]

        # forward, reference, loss, backward over grad_accumulation micro-batches; clip; step
        log_step = run.is_log_step()
        micro_batches = [run.next_batch() for _ in range(config.grad_accumulation)]
        run.step(micro_batches, stats)
        pos.step += 1

        # log the window of steps since the last log (the only place that syncs with the device)
        if log_step:
            values = run.log_metrics(stats, lr, clock)
            stats = step_stats(run.device)
            clock.restart()
            if ctx.on_progress:
                ctx.on_progress(pos.step, run.total_steps, values)
        run.writer.set_step(pos.step)

        # evaluate, checkpoint (their time is left out of the next tokens/s window)
        with clock.paused():
            run.evaluate_and_checkpoint()

    # the end: the final evaluation (a stop during it leaves it to the resume), the checkpoint, the last rows
    status = run.finish(status)
    if run.probes:
        log.info(run.probes.summary())
    return status
