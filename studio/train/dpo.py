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

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from studio.core import metrics as M
from studio.core import paths
from studio.core.configs import DPOConfig, to_dict
from studio.train import checkpoint, data, memory, packing, preflight, runtime, sampling
from studio.train.logps import completion_logps
from studio.train.losses import LossSettings, PairLogps, needs_reference, preference_loss
from studio.train.metrics_writer import metric_sink
from studio.train.model import PolicyLogps, eval_mode, load_policy
from studio.train.preflight import TrainingError
from studio.train.runtime import RunContext, TrainingClock
from studio.train.step_stats import StepStats

log = logging.getLogger("studio.train")

# What dpo_forward adds to its statistics, in the order the metrics are written.
STEP_METRICS = (M.LOSS, M.REWARDS_CHOSEN, M.REWARDS_REJECTED, M.REWARDS_MARGINS, M.REWARDS_ACCURACIES,
                M.LOGPS_CHOSEN, M.LOGPS_REJECTED, M.LOGITS_CHOSEN, M.LOGITS_REJECTED, M.ENTROPY, M.LOGRATIO_CHOSEN,
                M.LOGRATIO_REJECTED, M.NLL)


@dataclass
class TrainState:
    """Where training is: optimizer steps done and the next micro-batch (epoch, index in epoch)."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0
    ref_cache: dict[int, tuple[float, float]] = field(default_factory=dict)
    # the step whose evaluation finished (-1: none yet); a stop during an evaluation leaves it behind `step`,
    # so the resumed run evaluates that step first instead of leaving a hole or doubling the rows
    evaluated_step: int = -1
    # the run's cost counters (M.NUM_TOKENS, M.SAMPLES_GENERATED): real tokens of this process's training
    # micro-batches so far, and sequences sampled at evaluations
    tokens: int = 0
    samples_generated: int = 0


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
            margin = out.chosen_rewards - out.rejected_rewards
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
    step. Returns the gradient norm before clipping (a device tensor: reading it syncs)."""
    for batch, ref in zip(micro_batches, refs, strict=True):
        with accelerator.autocast():
            out = dpo_forward(policy, peft_model, batch, config, ref=ref, want_ref=want_ref, stats=stats)
        accelerator.backward(out.loss / len(micro_batches))
    grad_norm = accelerator.clip_grad_norm_(trainable, config.max_grad_norm or float("inf"))
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


# ---------------------------------------------------------------------------------------------- passes over data


def batch_ref(state: TrainState, batch: data.Batch, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The batch's precomputed reference log-probs (chosen, rejected), or None when there are none."""
    if not state.ref_cache:
        return None
    pairs = [state.ref_cache[i] for i in batch.pair_ids]
    t = data.to_device(torch.tensor(pairs, dtype=torch.float32), device)
    return t[:, 0], t[:, 1]


class StoppablePass:
    """The batches of `examples` on the device, one after another until a stop is requested (a pass over a
    large dataset takes minutes); `stopped` says whether one came."""

    def __init__(self, examples: list[data.Example], batch_size: int, pad_id: int, device,
                 should_stop: Callable[[], bool], layout: str = "padded"):
        self.examples, self.batch_size, self.pad_id, self.device = examples, batch_size, pad_id, device
        self.should_stop, self.layout = should_stop, layout
        self.stopped = False

    def __iter__(self) -> Iterator[data.Batch]:
        for k in range(0, len(self.examples), self.batch_size):
            if self.should_stop():
                self.stopped = True
                return
            yield data.make_batch(self.examples[k:k + self.batch_size], self.pad_id, self.layout).to(self.device)


# The reference pass keeps no activations, so its batches can be this many times the training batch.
REF_BATCH_FACTOR = 4


@torch.inference_mode()
def precompute_ref(peft_model, examples: list[data.Example], config: DPOConfig, pad_id: int, device,
                   accelerator, should_stop: Callable[[], bool] = lambda: False, layout: str = "padded"
                   ) -> dict[int, tuple[float, float]] | None:
    """Reference log-probs of every pair once, before training (see `precompute_is_cheaper`): inference mode,
    batches REF_BATCH_FACTOR times the training batch, pairs sorted by length so that a batch holds pairs of
    about one length (little padding; the longest batch first, so a memory error shows at once).
    None when a stop was requested meanwhile."""
    cache: dict[int, tuple[float, float]] = {}
    by_length = sorted(examples, key=lambda e: -e.n_tokens)
    batches = StoppablePass(by_length, config.batch_size * REF_BATCH_FACTOR, pad_id, device, should_stop, layout)
    with eval_mode(peft_model), peft_model.disable_adapter():
        for batch in batches:
            with accelerator.autocast():
                lp = completion_logps(peft_model, batch.input_ids, batch.head, decoder_attention(batch, peft_model),
                                      batch.position_ids).logps
            B = batch.n_pairs
            for pid, c, r in zip(batch.pair_ids, lp[:B].tolist(), lp[B:].tolist(), strict=True):
                cache[pid] = (c, r)
    return None if batches.stopped else cache


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
def evaluate(policy, peft_model, examples: list[data.Example], config: DPOConfig, pad_id: int, device, accelerator,
             state: TrainState, should_stop: Callable[[], bool] = lambda: False,
             layout: str = "padded") -> dict[str, float] | None:
    """The train metrics on the eval split (no gradient, dropout off); None when a stop was requested."""
    stats = step_stats(device)
    batches = StoppablePass(examples, config.batch_size, pad_id, device, should_stop, layout)
    with eval_mode(peft_model):
        for batch in batches:
            with accelerator.autocast():
                dpo_forward(policy, peft_model, batch, config, ref=batch_ref(state, batch, device), stats=stats)
    return None if batches.stopped else {M.eval_name(k): v for k, v in stats.read().items()}


# ---------------------------------------------------------------------------------------------- the run


class DPORun:
    """One run's model, data, optimizer, position and metric sink, with a method per phase of `train()`."""

    def __init__(self, ctx: RunContext):
        """Set up: settings and data are checked before the model loads (a mistake must not cost a load),
        then model, data, optimizer, and on resume everything the checkpoint holds."""
        assert isinstance(ctx.config, DPOConfig), "the DPO recipe trains DPO runs"
        started = time.monotonic()  # the wall time that sampling's budget is a share of
        self.ctx, self.config = ctx, ctx.config
        config, project, run_id = ctx.config, ctx.project, ctx.run_id
        assert project.folder is not None, "training needs a project folder for its adapter and checkpoints"
        self.folder = project.folder

        # settings, snapshot and checkpoint first
        preflight.check_settings(config)
        self.accelerator = runtime.make_accelerator(config)
        self.device = self.accelerator.device
        # under `accelerate launch` every process trains its share of each batch; only the main one writes
        self.main = self.accelerator.is_main_process
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        train_rows, eval_rows = data.split_eval(project.run_snapshot(run_id), config.eval_fraction, config.seed)
        if not train_rows:
            raise TrainingError(f"run {run_id}: its snapshot holds no train preferences; label some pairs (a or b) "
                                f"in the train split before starting a run")
        self.ckpt_dir = paths.checkpoint_dir(self.folder, run_id)
        ckpt = self.load_checkpoint() if ctx.resume else None
        where = runtime.device_name(self.device)
        log.info("device: %s, precision: %s, processes: %d", where, self.accelerator.mixed_precision, self.world)
        if self.main:
            project.update_run(run_id, device=where + (f" x{self.world}" if self.world > 1 else ""))

        # model and data: the policy with a fresh adapter; the run's frozen snapshot, tokenized once
        self.tokenizer, self.peft_model = load_policy(ctx.model_path, config, self.accelerator.mixed_precision)
        self.pad_id = self.tokenizer.pad_token_id
        tok = dict(max_length=config.max_length, max_prompt_length=config.max_prompt_length,
                   truncation=config.truncation)
        self.train_ex = data.tokenize_rows(train_rows, self.tokenizer, **tok)
        self.eval_ex = data.tokenize_rows(eval_rows, self.tokenizer, **tok)
        self.total_steps = runtime.total_steps_for(config, math.ceil(len(self.train_ex) / self.world))
        log.info("%d train pairs, %d eval pairs, %d optimizer steps", len(self.train_ex), len(self.eval_ex),
                 self.total_steps)
        self.probes = sampling.ProbeSampler.for_run(config, self.eval_ex, self.train_ex, started)
        self.use_ref = needs_reference(config.loss_type)

        # optimizer and schedule over the adapter weights only
        self.trainable = [p for p in self.peft_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = runtime.make_scheduler(optimizer, config, self.total_steps)
        self.policy, self.optimizer = self.accelerator.prepare(PolicyLogps(self.peft_model), optimizer)
        self.peft_model.train()
        self.layout, self.precompute = self.plan_speed()

        # position: the start, or where the checkpoint left off
        self.state = TrainState()
        if ckpt is not None:
            self.restore(ckpt)
        if self.main:
            project.update_run(run_id, total_steps=self.total_steps, step=self.state.step)
        self.writer = metric_sink(project, run_id, self.main)
        self._epoch_batches: tuple[int, list[list[data.Example]]] | None = None

    def plan_speed(self) -> tuple[str, bool]:
        """The batch layout, gradient checkpointing ('auto': measured, see memory.py) and whether reference
        log-probs are precomputed, each logged with why."""
        config = self.config
        reason = packing.unsupported_reason(self.peft_model)
        layout = "padded" if config.batch_layout == "padded" or reason else "packed"
        if config.batch_layout == "packed" and reason:
            log.warning("batch_layout packed: %s; the padded layout is used", reason)
        if config.gradient_checkpointing == "auto":
            longest = max(self.train_ex, key=lambda e: e.n_tokens)
            batch = data.make_batch([longest], self.pad_id, layout).to(self.device)
            compute_bytes = 4 if self.accelerator.mixed_precision == "no" else 2
            k, n, why = memory.auto_checkpointing(self.peft_model, batch, config.batch_size,
                                                  decoder_attention(batch, self.peft_model), self.device,
                                                  compute_bytes)
            log.info("gradient checkpointing auto: %d of %d layers recomputed (%s)", k, n, why)
        n_train, n_eval = (math.ceil(len(ex) / self.world) for ex in (self.train_ex, self.eval_ex))
        precompute = precompute_is_cheaper(config, self.total_steps, n_train, n_eval)
        log.info("batch layout: %s%s; reference log-probs %s", layout, f" ({reason})" if reason else "",
                 "precomputed once" if precompute and self.use_ref else "computed in each step")
        return layout, precompute

    # -- stop

    def stop_requested(self) -> bool:
        """A stop asked of any process (every process must leave together, see `runtime.any_process`)."""
        return runtime.any_process(self.accelerator, self.ctx.should_stop())

    # -- data

    def next_batch(self) -> data.Batch:
        """The next micro-batch of this process's share, on the device; moves on to the next epoch's order."""
        state = self.state
        while True:
            batches = self.epoch_batches()
            if state.batch_index < len(batches):
                state.batch_index += 1
                examples = batches[state.batch_index - 1]
                state.tokens += sum(e.n_tokens for e in examples)  # counted on the host: no device sync
                return data.make_batch(examples, self.pad_id, self.layout).to(self.device)
            state.epoch, state.batch_index = state.epoch + 1, 0

    def epoch_batches(self) -> list[list[data.Example]]:
        """This process's micro-batches of the current epoch: every world-th of the same seeded order."""
        epoch = self.state.epoch
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            batches = data.epoch_batches(self.train_ex, self.config.batch_size, self.config.seed, epoch)
            self._epoch_batches = (epoch, batches[self.rank::self.world])
        return self._epoch_batches[1]

    def precompute_reference(self) -> None:
        """The reference log-probs of every pair, once; a stop meanwhile leaves them to the resume."""
        t0 = time.time()
        cache = precompute_ref(self.peft_model, self.train_ex + self.eval_ex, self.config, self.pad_id,
                               self.device, self.accelerator, self.stop_requested, self.layout)
        if cache is None:
            log.info("stop requested during the reference pass (it is redone on resume)")
        else:
            self.state.ref_cache = cache
            log.info("reference log-probs precomputed in %.1fs", time.time() - t0)

    # -- step and log

    def step(self, micro_batches: list[data.Batch], stats: StepStats | None) -> torch.Tensor:
        """One optimizer step; the reference forward runs when the loss needs it or statistics are kept."""
        refs = [batch_ref(self.state, b, self.device) for b in micro_batches]
        return train_step(self.policy, self.peft_model, micro_batches, refs, self.config, self.accelerator,
                          self.optimizer, self.scheduler, self.trainable, want_ref=self.use_ref or stats is not None,
                          stats=stats)

    def is_log_step(self) -> bool:
        """Whether the coming step is logged (every log_interval steps, and the last)."""
        step = self.state.step + 1
        return step % self.config.log_interval == 0 or step == self.total_steps

    def log_metrics(self, stats: StepStats, grad_norm: torch.Tensor, lr: float,
                    clock: TrainingClock) -> dict[str, float]:
        """Read the statistics (the only sync with the device) and write the step's metrics; a loss that is
        no longer finite fails the run here."""
        config, state = self.config, self.state
        values = stats.read()
        # tokens of the last step, scaled to the whole window of steps since the previous log
        tokens = stats.tokens * clock.micro_batches / config.grad_accumulation
        values.update({M.GRAD_NORM: float(grad_norm), M.LEARNING_RATE: lr,
                       M.TOKENS_PER_SECOND: tokens / max(clock.seconds(), 1e-9),
                       M.MEMORY: runtime.peak_memory_gib(self.device),
                       # every process trains as many micro-batches of about the same length: the run's total
                       M.NUM_TOKENS: state.tokens * self.world,
                       M.EPOCH: state.epoch + state.batch_index / max(1, len(self.epoch_batches()))})
        self.writer.add(state.step, values)
        if not math.isfinite(values[M.LOSS]):
            # the adapter is wrecked from here on; failing now keeps the last good checkpoint as the one to
            # resume from, instead of ending "done" with a NaN adapter
            self.writer.flush(wait=True)
            raise TrainingError(
                f"the loss became {values[M.LOSS]} at step {state.step}: training diverged. Lower "
                f"learning_rate (now {config.learning_rate:g}), keep max_grad_norm > 0, or use fp32/bf16 "
                "instead of fp16; then resume from the last checkpoint or start a new run")
        return values

    # -- evaluate

    def eval_due(self) -> bool:
        """An evaluation at this step, unless it is the last (the end evaluates) or done already."""
        step, interval = self.state.step, self.config.eval_interval
        return (interval > 0 and step % interval == 0 and step < self.total_steps
                and self.state.evaluated_step != step)

    def eval_and_sample(self) -> bool:
        """Evaluate at this step: the eval split's metrics and samples on the fixed prompts, written together,
        so a stopped evaluation leaves no half of itself behind. False (nothing written) when a stop came
        first."""
        values: dict[str, float] = {}
        if self.eval_ex:
            split_values = evaluate(self.policy, self.peft_model, self.eval_ex, self.config, self.pad_id,
                                    self.device, self.accelerator, self.state, self.stop_requested, self.layout)
            if split_values is None:
                return False
            values.update(split_values)
            values[M.EVAL_PAIRS] = len(self.eval_ex)
        rows: list[dict] = []
        # the first and last evaluations always sample; the others while sampling stays within its time budget
        if self.main and self.probes.due(self.state.step, self.total_steps):
            if self.ctx.should_stop():  # sampling is the main process's alone: no collective here
                return False
            with self.accelerator.autocast():
                sample_values, rows = self.probes.sample(self.peft_model, self.tokenizer, self.device,
                                                         self.state.step)
            values.update(sample_values)
            self.state.samples_generated += len(rows)
        if self.main:
            values[M.SAMPLES_GENERATED] = self.state.samples_generated
        self.writer.add(self.state.step, values)
        if rows:
            self.ctx.project.add_samples(self.ctx.run_id, self.state.step, rows)
        self.state.evaluated_step = self.state.step
        return True

    # -- checkpoint

    def checkpoint_due(self) -> bool:
        """A checkpoint every checkpoint_interval steps before the last (the end always saves one)."""
        interval = self.config.checkpoint_interval
        return bool(interval) and self.state.step % interval == 0 and self.state.step < self.total_steps

    def save_checkpoint(self) -> None:
        """The resumable checkpoint (one plain dict, see `restore` for its mirror) and the adapter."""
        state = self.state
        ckpt = {"config": to_dict(self.config), "adapter": checkpoint.adapter_state(self.peft_model),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": checkpoint.rng_state(), "ref_cache": state.ref_cache,
                "position": {"step": state.step, "epoch": state.epoch, "batch_index": state.batch_index,
                             "evaluated_step": state.evaluated_step, "tokens": state.tokens,
                             "samples_generated": state.samples_generated}}
        if self.main:
            path = checkpoint.save(self.ckpt_dir, ckpt)
            checkpoint.save_adapter(self.peft_model, self.tokenizer, paths.adapter_dir(self.folder, self.ctx.run_id))
            self.ctx.project.add_checkpoint(self.ctx.run_id, state.step, path)
            log.info("checkpoint at step %d", state.step)

    def load_checkpoint(self) -> dict:
        """The checkpoint to resume from, refused when the run's settings are no longer the ones it was saved
        with (the adapter shapes, data order and schedule depend on them)."""
        ckpt = checkpoint.load(self.ckpt_dir)
        changes = preflight.config_changes(ckpt.get("config") or {}, to_dict(self.config))
        if changes:
            raise TrainingError(f"run {self.ctx.run_id}: its settings differ from its checkpoint's "
                                f"({'; '.join(changes)}), so it cannot continue where it stopped; duplicate the "
                                f"run to train with new settings")
        return ckpt

    def restore(self, ckpt: dict) -> None:
        """Resume: the mirror of `save_checkpoint`. Metric rows logged after the checkpoint are dropped."""
        checkpoint.load_adapter_state(self.peft_model, ckpt["adapter"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        position = dict(ckpt["position"])
        position.setdefault("evaluated_step", position["step"])  # checkpoints of older versions
        self.state = TrainState(**position, ref_cache=ckpt.get("ref_cache") or {})
        checkpoint.set_rng_state(ckpt["rng"])
        if self.main:
            self.ctx.project.truncate_run_after(self.ctx.run_id, self.state.step)
        log.info("resumed at step %d (epoch %d, batch %d)", self.state.step, self.state.epoch,
                 self.state.batch_index)


def train(ctx: RunContext) -> str:
    """Train the run to its end or until asked to stop. Returns the final status: 'done' or 'interrupted'."""
    run = DPORun(ctx)
    config, state = run.config, run.state

    # reference log-probs once up front (precompute_ref_logps, by default when cheaper), unless the checkpoint
    # brought them
    if run.precompute and run.use_ref and not state.ref_cache:
        run.precompute_reference()

    # the baseline at step 0 (samples and KL zero before any update), or an evaluation a stop cut short
    if run.eval_due() and not run.stop_requested():
        run.eval_and_sample()

    stats, clock = step_stats(run.device), TrainingClock()
    status = "done"
    while state.step < run.total_steps:
        # stop requested (GUI button or signal): save and leave between optimizer steps
        if run.stop_requested():
            status = "interrupted"
            break

        # learning rate of this step (the scheduler sets it; logged as used)
        lr = run.scheduler.get_last_lr()[0]

        # forward, reference, loss, backward over grad_accumulation micro-batches; clip; step
        log_step = run.is_log_step()
        micro_batches = [run.next_batch() for _ in range(config.grad_accumulation)]
        grad_norm = run.step(micro_batches, stats if log_step else None)
        clock.micro_batches += len(micro_batches)
        state.step += 1

        # log (the only place that syncs with the device)
        if log_step:
            values = run.log_metrics(stats, grad_norm, lr, clock)
            stats = step_stats(run.device)
            clock.restart()
            if ctx.on_progress:
                ctx.on_progress(state.step, run.total_steps, values)
        run.writer.set_step(state.step)

        # evaluate, checkpoint (their time is left out of the next tokens/s window)
        with clock.paused():
            if run.eval_due():
                run.eval_and_sample()
            if run.checkpoint_due():
                run.save_checkpoint()

    # the end: the final evaluation (a stop during it leaves it to the resume), the checkpoint, the last rows
    if status == "done" and state.evaluated_step != state.step and not run.eval_and_sample():
        status = "interrupted"
    run.save_checkpoint()
    run.writer.flush(wait=True)
    if run.probes:
        log.info(run.probes.summary())
    return status
