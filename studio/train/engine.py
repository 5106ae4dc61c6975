"""The LoRA DPO training loop: reads top to bottom, one commented block per phase.

The reference model is the policy with its adapter disabled (no second copy of the weights). Chosen and
rejected run through one forward pass; the lm_head touches completion positions only (see logps.py).
Metrics stay on the device as tensors and are read back (one sync) only on logging steps.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio.core import metrics as M
from studio.core import paths
from studio.core.configs import DPOConfig, planned_steps, to_dict
from studio.store import Project
from studio.train import checkpoint, data, preflight, sampling
from studio.train.logps import sequence_logps
from studio.train.losses import LossSettings, PairLogps, needs_reference, preference_loss
from studio.train.metrics_writer import MetricsWriter
from studio.train.preflight import TrainingError

log = logging.getLogger("studio.train")

# Module names of the attention and MLP projections, across the common architectures.
KNOWN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",  # llama, qwen, mistral
                 "c_attn", "c_proj", "c_fc",  # gpt2
                 "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h",  # gpt-neox, falcon
                 "fc1", "fc2", "out_proj", "Wqkv", "qkv_proj", "gate_up_proj")  # opt, phi


@dataclass
class RunContext:
    """What the worker hands the engine."""

    project: Project
    run_id: int
    config: DPOConfig
    model_path: Path
    resume: bool = False
    should_stop: Callable[[], bool] = lambda: False
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None


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


# ---------------------------------------------------------------------------------------------- setup


def pick_precision(config: DPOConfig) -> str:
    """accelerate's mixed_precision for the config on this machine ('auto' follows the device)."""
    cuda = torch.cuda.is_available()
    if config.precision == "fp32":
        return "no"
    if config.precision == "fp16" and not cuda:
        # accelerate would load the weights in fp16 but run no autocast and no loss scaling off CUDA
        raise TrainingError("precision: fp16 needs a CUDA GPU (loss scaling); use bf16 or fp32 on this machine")
    if config.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise TrainingError(f"precision: bf16 is not supported by {torch.cuda.get_device_name()}; use fp16 or auto")
    if config.precision in ("bf16", "fp16"):
        return config.precision
    if cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"  # CPU and MPS: fp32 is the safe default


def make_accelerator(config: DPOConfig):
    from accelerate import Accelerator

    return Accelerator(mixed_precision=pick_precision(config),
                       gradient_accumulation_steps=1)  # we accumulate ourselves, see the loop


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return str(device.type)


def lora_targets(model: nn.Module, setting: str) -> str | list[str]:
    if setting == "all-linear":
        return "all-linear"
    if setting != "auto":
        return [s.strip() for s in setting.split(",") if s.strip()]
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    found = [t for t in KNOWN_TARGETS if t in names]
    return found or "all-linear"


def load_policy(model_path: Path, config: DPOConfig, mixed_precision: str):
    """The tokenizer and the base model wrapped with a fresh LoRA adapter (seeded)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    preflight.check_model_folder(model_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingError(f"{model_path}: its tokenizer does not load ({first})") from e
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise TrainingError(f"{model_path}: the tokenizer has neither a pad nor an EOS token; set eos_token "
                                f"in its tokenizer_config.json (completions end with EOS)")
        # pad positions are masked out everywhere, so EOS can stand in (as TRL does)
        tokenizer.pad_token = tokenizer.eos_token
    # base weights in the compute dtype (half the memory); LoRA weights stay fp32 (peft upcasts them)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    return tokenizer, wrap_lora(base, config)


def wrap_lora(base: nn.Module, config: DPOConfig):
    """Freeze the base model and add a seeded LoRA adapter (the reference is this model, adapter off)."""
    from peft import LoraConfig, get_peft_model

    base.config.use_cache = False
    disable_dropout(base)
    if config.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(config.seed)  # adapter initialisation
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=lora_targets(base, config.lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(base, lora)


def disable_dropout(base: nn.Module) -> None:
    """Switch off the base model's own dropout (LoRA's dropout is added later and stays), as TRL does: the
    reference forward runs in train mode, and with dropout on (GPT-2 has 0.1) the reference log-probs, and
    so the loss, would be noisy and differ from precomputed ones."""
    for module in base.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        # attention dropout is a float on the attention module in most HF architectures (Llama, Qwen, ...)
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    for name in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout"):
        if isinstance(getattr(base.config, name, None), float):
            setattr(base.config, name, 0.0)


class PolicyLogps(nn.Module):
    """The policy's per-sequence log-probs as a module, so `accelerate` (DDP) can wrap the whole forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, completion_mask, stats: bool = False):
        out = sequence_logps(self.model, input_ids, attention_mask, completion_mask, stats=stats)
        return out.logps, out.tokens, out.entropy_sum, out.logits_sum


def make_scheduler(optimizer, config: DPOConfig, total_steps: int):
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[config.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def total_steps_for(config: DPOConfig, n_train: int) -> int:
    # one rule with the launch dialog's estimate
    return planned_steps(config.max_steps, config.epochs, config.batch_size, config.grad_accumulation, n_train)


def loss_settings(config: DPOConfig) -> LossSettings:
    return LossSettings(beta=config.beta, label_smoothing=config.label_smoothing, simpo_gamma=config.simpo_gamma,
                        nll_weight=config.nll_weight)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ---------------------------------------------------------------------------------------------- one step


class StepStats:
    """Sums of per-step statistics kept as device tensors; `.read()` syncs once.

    Counts the host already knows (pairs per batch) stay host numbers: turning a Python number into a CUDA
    tensor is a copy from pageable memory, which waits for the stream to drain (a hidden sync per batch)."""

    KEYS = ("loss", "nll", "rc", "rr", "acc", "margin", "lpc", "lpr", "logits_c", "logits_r", "tok_c", "tok_r",
            "entropy", "klc", "klr", "n_tokens")
    HOST_KEYS = ("pairs", "ref_pairs")

    def __init__(self, device: torch.device):
        self.v = torch.zeros(len(self.KEYS), device=device, dtype=torch.float64)
        self._zero = torch.zeros((), device=device, dtype=torch.float64)
        self.host = dict.fromkeys(self.HOST_KEYS, 0.0)

    def add(self, **values: torch.Tensor | float) -> None:
        """Add device scalars (by KEYS) and host numbers (by HOST_KEYS); one stack and one add on the device."""
        for k in self.HOST_KEYS:
            self.host[k] += float(values.pop(k, 0.0))
        unknown = set(values) - set(self.KEYS)
        if unknown:
            raise KeyError(f"unknown statistics: {sorted(unknown)}")
        self.v += torch.stack([values[k].detach().to(torch.float64).reshape(()) if k in values else self._zero
                               for k in self.KEYS])

    def read(self, n_micro: int) -> dict[str, float]:
        s = dict(zip(self.KEYS, self.v.tolist(), strict=True)) | self.host
        pairs = max(s["pairs"], 1)
        out = {
            M.LOSS: s["loss"] / max(n_micro, 1),
            M.REWARDS_CHOSEN: s["rc"] / pairs,
            M.REWARDS_REJECTED: s["rr"] / pairs,
            M.REWARDS_MARGINS: s["margin"] / pairs,
            M.REWARDS_ACCURACIES: s["acc"] / pairs,
            M.LOGPS_CHOSEN: s["lpc"] / pairs,
            M.LOGPS_REJECTED: s["lpr"] / pairs,
            M.LOGITS_CHOSEN: s["logits_c"] / max(s["tok_c"], 1),
            M.LOGITS_REJECTED: s["logits_r"] / max(s["tok_r"], 1),
            M.ENTROPY: s["entropy"] / max(s["tok_c"] + s["tok_r"], 1),
        }
        if s["ref_pairs"] > 0:
            out[M.KL_CHOSEN] = s["klc"] / max(s["tok_c"], 1)
            out[M.KL_REJECTED] = s["klr"] / max(s["tok_r"], 1)
        if s["nll"]:
            out[M.NLL] = s["nll"] / max(n_micro, 1)
        out["_tokens"] = s["n_tokens"]
        return out


def dpo_forward(policy: nn.Module, peft_model: nn.Module, batch: data.Batch, config: DPOConfig,
                ref: tuple[torch.Tensor, torch.Tensor] | None = None, want_ref: bool = True,
                stats: StepStats | None = None):
    """Policy forward (one concatenated batch), reference forward (adapter disabled, no grad) unless
    precomputed, loss. Returns the LossOutput; adds detached statistics to `stats`."""
    B = batch.n_pairs
    # policy: chosen rows then rejected rows, one forward
    logps, tokens, entropy_sum, logits_sum = policy(batch.input_ids, batch.attention_mask, batch.completion_mask,
                                                    stats=stats is not None)
    # reference: the same model with the adapter off
    if ref is None and want_ref:
        with torch.no_grad(), peft_model.disable_adapter():
            ref_all = sequence_logps(peft_model, batch.input_ids, batch.attention_mask, batch.completion_mask).logps
        ref = (ref_all[:B], ref_all[B:])
    p = PairLogps(logps[:B], logps[B:], ref[0] if ref else None, ref[1] if ref else None, tokens[:B], tokens[B:])
    out = preference_loss(config.loss_type, p, loss_settings(config))
    if stats is not None:
        with torch.no_grad():
            margin = out.chosen_rewards - out.rejected_rewards
            values: dict[str, Any] = dict(
                loss=out.loss.detach(), rc=out.chosen_rewards.sum(), rr=out.rejected_rewards.sum(),
                acc=(margin > 0).float().sum(), margin=margin.sum(), lpc=p.chosen.detach().sum(),
                lpr=p.rejected.detach().sum(), logits_c=logits_sum[:B].sum(), logits_r=logits_sum[B:].sum(),
                tok_c=p.chosen_tokens.sum(), tok_r=p.rejected_tokens.sum(), entropy=entropy_sum.sum(), pairs=B,
                n_tokens=batch.attention_mask.sum())
            if out.nll is not None:
                values["nll"] = out.nll.detach()
            if ref is not None:
                values.update(klc=(p.chosen.detach() - ref[0]).sum(), klr=(p.rejected.detach() - ref[1]).sum(),
                              ref_pairs=B)
            stats.add(**values)
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


# ---------------------------------------------------------------------------------------------- the run


def _batch_ref(state: TrainState, batch: data.Batch, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not state.ref_cache:
        return None
    pairs = [state.ref_cache[i] for i in batch.pair_ids]
    t = data.to_device(torch.tensor(pairs, dtype=torch.float32), device)
    return t[:, 0], t[:, 1]


@torch.no_grad()
def precompute_ref(peft_model, examples: list[data.Example], config: DPOConfig, pad_id: int, device,
                   accelerator, should_stop: Callable[[], bool] = lambda: False
                   ) -> dict[int, tuple[float, float]] | None:
    """Reference log-probs of every pair once, before training (config.precompute_ref_logps).
    None when a stop was requested meanwhile (a pass over a large dataset takes minutes)."""
    cache: dict[int, tuple[float, float]] = {}
    peft_model.eval()
    with peft_model.disable_adapter():
        for k in range(0, len(examples), config.batch_size):
            if should_stop():
                peft_model.train()
                return None
            batch = data.collate(examples[k:k + config.batch_size], pad_id).to(device)
            with accelerator.autocast():
                lp = sequence_logps(peft_model, batch.input_ids, batch.attention_mask, batch.completion_mask).logps
            B = batch.n_pairs
            for pid, c, r in zip(batch.pair_ids, lp[:B].tolist(), lp[B:].tolist(), strict=True):
                cache[pid] = (c, r)
    peft_model.train()
    return cache


@torch.no_grad()
def evaluate(policy, peft_model, examples: list[data.Example], config: DPOConfig, pad_id: int, device, accelerator,
             state: TrainState, should_stop: Callable[[], bool] = lambda: False) -> dict[str, float] | None:
    """The train metrics on the eval split (no gradient, dropout off); None when a stop was requested."""
    peft_model.eval()
    stats = StepStats(device)
    n = 0
    for k in range(0, len(examples), config.batch_size):
        if should_stop():
            peft_model.train()
            return None
        batch = data.collate(examples[k:k + config.batch_size], pad_id).to(device)
        with accelerator.autocast():
            dpo_forward(policy, peft_model, batch, config, ref=_batch_ref(state, batch, device), stats=stats)
        n += 1
    peft_model.train()
    out = stats.read(n)
    out.pop("_tokens")
    return {M.eval_name(k): v for k, v in out.items()}


def train(ctx: RunContext) -> str:
    """Train the run to its end or until asked to stop. Returns the final status: 'done' or 'interrupted'."""
    config, project, run_id = ctx.config, ctx.project, ctx.run_id
    folder = project.folder
    assert folder is not None, "training needs a project folder for its adapter and checkpoints"
    # settings and data first: a mistake here must not cost a model load
    preflight.check_settings(config)
    accelerator = make_accelerator(config)
    device = accelerator.device
    # under `accelerate launch` every process trains its share of each batch; only the main one writes
    main, world, rank = accelerator.is_main_process, accelerator.num_processes, accelerator.process_index
    train_rows, eval_rows = data.split_eval(project.run_snapshot(run_id), config.eval_fraction, config.seed)
    if not train_rows:
        raise TrainingError(f"run {run_id}: its snapshot holds no train preferences; label some pairs (a or b) "
                            f"in the train split before starting a run")
    ckpt_dir = paths.checkpoint_dir(folder, run_id)
    ckpt = checkpoint.load(ckpt_dir) if ctx.resume else None
    if ckpt is not None:
        changes = preflight.config_changes(ckpt.get("config") or {}, to_dict(config))
        if changes:
            raise TrainingError(f"run {run_id}: its settings differ from its checkpoint's ({'; '.join(changes)}), so "
                                f"it cannot continue where it stopped; duplicate the run to train with new settings")
    log.info("device: %s, precision: %s, processes: %d", device_name(device), accelerator.mixed_precision, world)
    if main:
        project.update_run(run_id, device=device_name(device) + (f" x{world}" if world > 1 else ""))

    # data: the run's frozen snapshot, tokenized once
    tokenizer, peft_model = load_policy(ctx.model_path, config, accelerator.mixed_precision)
    pad_id = tokenizer.pad_token_id
    tok = dict(max_length=config.max_length, max_prompt_length=config.max_prompt_length,
               truncation=config.truncation)
    train_ex = data.tokenize_rows(train_rows, tokenizer, **tok)
    eval_ex = data.tokenize_rows(eval_rows, tokenizer, **tok)
    total_steps = total_steps_for(config, math.ceil(len(train_ex) / world))
    log.info("%d train pairs, %d eval pairs, %d optimizer steps", len(train_ex), len(eval_ex), total_steps)

    # optimizer and schedule over the adapter weights only
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config, total_steps)
    policy, optimizer = accelerator.prepare(PolicyLogps(peft_model), optimizer)
    peft_model.train()

    # resume: the mirror of the checkpoint save below
    state = TrainState()
    if ckpt is not None:
        checkpoint.load_adapter_state(peft_model, ckpt["adapter"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        position = dict(ckpt["position"])
        position.setdefault("evaluated_step", position["step"])  # checkpoints of older versions
        state = TrainState(**position, ref_cache=ckpt.get("ref_cache") or {})
        checkpoint.set_rng_state(ckpt["rng"])
        if main:
            project.truncate_run_after(run_id, state.step)
        log.info("resumed at step %d (epoch %d, batch %d)", state.step, state.epoch, state.batch_index)
    if main:
        project.update_run(run_id, total_steps=total_steps, step=state.step)

    # every process must leave together (see _any_process), so collective points ask all of them
    def stop_requested() -> bool:
        return _any_process(accelerator, ctx.should_stop())

    use_ref = needs_reference(config.loss_type)
    if config.precompute_ref_logps and use_ref and not state.ref_cache:
        t0 = time.time()
        cache = precompute_ref(peft_model, train_ex + eval_ex, config, pad_id, device, accelerator, stop_requested)
        if cache is None:
            log.info("stop requested during the reference pass (it is redone on resume)")
        else:
            state.ref_cache = cache
            log.info("reference log-probs precomputed in %.1fs", time.time() - t0)

    candidates = [sampling.EvalPrompt(e.prompt_id, e.prompt_text, e.prompt_ids) for e in (eval_ex or train_ex)]
    eval_prompts = sampling.pick_prompts(candidates, config.eval_samples, config.seed)
    writer = MetricsWriter(project, run_id) if main else _NoWriter()

    def save_checkpoint() -> None:
        ckpt = {"config": to_dict(config), "adapter": checkpoint.adapter_state(peft_model),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": checkpoint.rng_state(), "ref_cache": state.ref_cache,
                "position": {"step": state.step, "epoch": state.epoch, "batch_index": state.batch_index,
                             "evaluated_step": state.evaluated_step}}
        if accelerator.is_main_process:
            path = checkpoint.save(ckpt_dir, ckpt)
            checkpoint.save_adapter(peft_model, tokenizer, paths.adapter_dir(folder, run_id))
            project.add_checkpoint(run_id, state.step, path)
            log.info("checkpoint at step %d", state.step)

    def run_eval() -> bool:
        """Evaluate at this step; False (nothing written) when a stop came first. The eval-split metrics
        and the samples are written together, so a stopped evaluation leaves no half of itself behind."""
        values: dict[str, float] = {}
        if eval_ex:
            split_values = evaluate(policy, peft_model, eval_ex, config, pad_id, device, accelerator, state,
                                    stop_requested)
            if split_values is None:
                return False
            values.update(split_values)
        rows: list[dict] = []
        if eval_prompts and accelerator.is_main_process:
            if ctx.should_stop():  # sampling is the main process's alone: no collective here
                return False
            with accelerator.autocast():
                sample_values, rows = sampling.sample_and_measure(peft_model, tokenizer, eval_prompts,
                                                                  config.sample_max_new_tokens, config.seed, device)
            values.update(sample_values)
        writer.add(state.step, values)
        if rows:
            project.add_samples(run_id, state.step, rows)
        state.evaluated_step = state.step
        return True

    def eval_due() -> bool:
        return (config.eval_interval > 0 and state.step % config.eval_interval == 0 and state.step < total_steps
                and state.evaluated_step != state.step)

    epoch_cache: dict[int, list[list[data.Example]]] = {}

    def next_batch() -> data.Batch:
        while True:
            if state.epoch not in epoch_cache:
                epoch_cache.clear()
                # every process takes every world-th micro-batch of the same seeded order
                epoch_cache[state.epoch] = data.epoch_batches(train_ex, config.batch_size, config.seed,
                                                              state.epoch)[rank::world]
            batches = epoch_cache[state.epoch]
            if state.batch_index < len(batches):
                state.batch_index += 1
                return data.collate(batches[state.batch_index - 1], pad_id).to(device)
            state.epoch, state.batch_index = state.epoch + 1, 0

    # the baseline at step 0 (samples and KL zero before any update), or an evaluation a stop cut short
    if eval_due() and not stop_requested():
        run_eval()
    stats = StepStats(device)
    window_start, window_micro = time.perf_counter(), 0
    status = "done"
    while state.step < total_steps:
        # stop requested (GUI button or signal): save and leave between optimizer steps
        if stop_requested():
            status = "interrupted"
            break

        # learning rate of this step (the scheduler sets it; logged as used)
        lr = scheduler.get_last_lr()[0]

        # forward, reference, loss, backward over grad_accumulation micro-batches; clip; step
        micro = [next_batch() for _ in range(config.grad_accumulation)]
        log_step = (state.step + 1) % config.log_interval == 0 or state.step + 1 == total_steps
        grad_norm = train_step(policy, peft_model, micro, [_batch_ref(state, b, device) for b in micro], config,
                               accelerator, optimizer, scheduler, trainable, want_ref=use_ref or log_step,
                               stats=stats if log_step else None)
        window_micro += len(micro)
        state.step += 1

        # log (the only place that syncs with the device)
        if log_step:
            values = stats.read(config.grad_accumulation)
            elapsed = time.perf_counter() - window_start
            # tokens of the last step, scaled to the whole window of steps since the previous log
            tokens = values.pop("_tokens") * window_micro / config.grad_accumulation
            values.update({M.GRAD_NORM: float(grad_norm), M.LEARNING_RATE: lr,
                           M.TOKENS_PER_SECOND: tokens / max(elapsed, 1e-9), M.MEMORY: peak_memory_gib(device),
                           M.EPOCH: state.epoch + state.batch_index / max(1, len(epoch_cache.get(state.epoch, [1])))})
            writer.add(state.step, values)
            if not math.isfinite(values[M.LOSS]):
                # the adapter is wrecked from here on; failing now keeps the last good checkpoint as the
                # one to resume from, instead of ending "done" with a NaN adapter
                writer.flush(wait=True)
                raise TrainingError(
                    f"the loss became {values[M.LOSS]} at step {state.step}: training diverged. Lower "
                    f"learning_rate (now {config.learning_rate:g}), keep max_grad_norm > 0, or use fp32/bf16 "
                    "instead of fp16; then resume from the last checkpoint or start a new run")
            stats = StepStats(device)
            window_start, window_micro = time.perf_counter(), 0
            if ctx.on_progress:
                ctx.on_progress(state.step, total_steps, values)
        writer.set_step(state.step)

        # evaluate, checkpoint (their time is left out of the next tokens/s window)
        paused = time.perf_counter()
        if eval_due():
            run_eval()
        if config.checkpoint_interval and state.step % config.checkpoint_interval == 0 \
                and state.step < total_steps:
            save_checkpoint()
        window_start += time.perf_counter() - paused

    if status == "done" and state.evaluated_step != state.step and not run_eval():
        status = "interrupted"  # stopped during the final evaluation: a resume does it
    save_checkpoint()
    writer.flush(wait=True)
    return status


class _NoWriter:
    """Metrics of processes other than the main one are not written."""

    def add(self, *a, **k) -> None: ...
    def set_step(self, *a, **k) -> None: ...
    def flush(self) -> None: ...


def _any_process(accelerator, flag: bool) -> bool:
    """All processes stop together (one stopping alone would leave the others waiting in all-reduce)."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def env_threads() -> None:
    """Respect an explicit thread cap (tests share small CI machines)."""
    n = os.environ.get("STUDIO_TORCH_THREADS")
    if n:
        torch.set_num_threads(int(n))
