"""Run configurations: one dataclass per training method, every field with its help text.

The CLI (`--set key=value`, `--config FILE`) and the GUI launch form are both generated from these
dataclasses (via `config_fields`), so they cannot drift apart. A config is stored on its run as JSON.

Field metadata besides help and group: `label` (the words a form shows; else the name, humanised), `basic`
(shown in the launch dialog's main form; the rest sits under Advanced) and `applies_when` (the field matters
only when other fields have these values, e.g. `{"loss_type": ("robust",)}`; the form hides it otherwise).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from studio.core.errors import ConfigError


def _f(default: Any, help: str, *, group: str = "training", choices: tuple | None = None,
       minimum: float | None = None, maximum: float | None = None, label: str | None = None, basic: bool = False,
       applies_when: dict[str, tuple] | None = None, **kw: Any) -> Any:
    meta: dict[str, Any] = {"help": help, "group": group, "basic": basic}
    if label is not None:
        meta["label"] = label
    if applies_when:
        meta["applies_when"] = applies_when
    if choices is not None:
        meta["choices"] = choices
    if minimum is not None:
        meta["min"] = minimum
    if maximum is not None:
        meta["max"] = maximum
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


LOSS_TYPES = ("sigmoid", "ipo", "robust", "hinge", "simpo")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULES = ("linear", "cosine", "constant")
TRUNCATIONS = ("keep_end", "keep_start")
# settings that were on/off and gained 'auto': a stored true/false (or CLI yes/no) still reads as on/off
AUTO_ON_OFF = ("auto", "on", "off")
LAYOUTS = ("auto", "packed", "padded")


@dataclass
class LoraSettings:
    """Low-rank adapter settings shared by every method."""

    r: int = _f(16, "LoRA rank: size of the low-rank update per adapted matrix.", group="lora", minimum=1,
                label="LoRA rank")
    alpha: int = _f(32, "LoRA alpha: the update is scaled by alpha / r.", group="lora", minimum=1,
                    label="LoRA alpha")
    dropout: float = _f(0.05, "Dropout on the LoRA input during training.", group="lora", minimum=0.0, maximum=0.9)
    target_modules: str = _f(
        "auto",
        "Modules to adapt: 'auto' (the attention and MLP projections known for the architecture), "
        "'all-linear', or a comma-separated list of module names such as 'q_proj,v_proj'.",
        group="lora",
    )


@dataclass
class TrainConfig:
    """Fields every training method has: optimisation, data shape, precision, logging."""

    learning_rate: float = _f(5e-5, "Peak learning rate of AdamW on the adapter weights.", minimum=0.0, basic=True)
    lr_schedule: str = _f("linear", "Learning-rate schedule after warmup.", choices=SCHEDULES)
    warmup_ratio: float = _f(0.1, "Fraction of the optimizer steps spent warming up linearly from 0.",
                             minimum=0.0, maximum=1.0)
    weight_decay: float = _f(0.0, "AdamW weight decay.", minimum=0.0)
    epochs: float = _f(1.0, "Passes over the training preferences (ignored when max_steps > 0).", minimum=0.0,
                       basic=True)
    max_steps: int = _f(0, "Stop after this many optimizer steps; 0 means use epochs.", minimum=0, basic=True)
    batch_size: int = _f(4, "Preference pairs per forward pass (each pair is two sequences).", minimum=1,
                         basic=True)
    grad_accumulation: int = _f(1, "Forward passes accumulated per optimizer step.", minimum=1)
    max_grad_norm: float = _f(1.0, "Clip the gradient norm to this value; 0 disables clipping.", minimum=0.0)
    max_length: int = _f(1024, "Longest prompt + completion in tokens; longer pairs are truncated.",
                         group="data", minimum=8, basic=True)
    max_prompt_length: int = _f(512, "Longest prompt in tokens after truncation (completions keep the rest).",
                                group="data", minimum=1)
    truncation: str = _f("keep_end", "Which end of a long prompt to keep: 'keep_end' keeps the turns nearest "
                         "the completion.", group="data", choices=TRUNCATIONS)
    precision: str = _f("auto", "Numeric precision: 'auto' picks bf16 on GPUs that support it, fp16 on other "
                        "GPUs, fp32 on CPU.", group="hardware", choices=PRECISIONS)
    gradient_checkpointing: str = _f("auto", "Recompute activations in the backward pass: less memory, slower. "
                                     "'auto' measures the activations of the longest micro-batch and "
                                     "recomputes only as many decoder layers as the GPU memory needs (none "
                                     "when everything fits, and none on CPU when RAM suffices).",
                                     group="hardware", choices=AUTO_ON_OFF, basic=True)
    batch_layout: str = _f("auto", "How pairs are laid out in a forward pass: 'packed' runs each prompt once "
                           "with chosen and rejected after it and packs short pairs into shared rows (no "
                           "padding; an attention mask keeps them apart); 'padded' is TRL's layout (prompt "
                           "repeated, rows right-padded). 'auto' packs when the model's attention allows it.",
                           group="hardware", choices=LAYOUTS)
    seed: int = _f(0, "Seed for adapter initialisation, data order, dropout and sampling.")
    eval_fraction: float = _f(0.0, "Share of train preferences held out for evaluation when the project has "
                              "no eval split.", group="eval", minimum=0.0, maximum=0.5)
    eval_interval: int = _f(50, "Evaluate every this many optimizer steps (0: only at the end).",
                            group="eval", minimum=0)
    eval_samples: int = _f(16, "Probe prompts the policy samples at evaluations (the same ones all run, "
                           "drawn by seed from the eval split, then train), for the sampled KL, the collapse "
                           "measures and the stored samples; 0 turns sampling off.", group="eval", minimum=0)
    samples_per_prompt: int = _f(4, "Samples per probe prompt at each evaluation (diversity among them shows "
                                 "mode collapse).", group="eval", minimum=1)
    probe_prompt_ids: str = _f("", "Probe prompts chosen by id, comma-separated (e.g. '3,17,42'); empty: "
                               "eval_samples prompts drawn by seed.", group="eval")
    sample_max_new_tokens: int = _f(0, "Longest sample in tokens; 0: the 95th percentile of the chosen "
                                    "responses' lengths, at least 128, so length can drift either way.",
                                    group="eval", minimum=0)
    sample_budget: float = _f(0.1, "Most share of the run's wall time spent sampling: a mid-run evaluation "
                              "skips its sampling when it would go over (step 0 and the end always sample); "
                              "1 samples at every evaluation.", group="eval", minimum=0.0, maximum=1.0)
    checkpoint_interval: int = _f(100, "Save a resumable checkpoint every this many steps (0: only at the end).",
                                  minimum=0)
    log_interval: int = _f(1, "Write metrics every this many optimizer steps.", minimum=1)


@dataclass
class DPOConfig(TrainConfig):
    """Direct Preference Optimization and its variants (IPO, robust, hinge, SimPO, + NLL)."""

    method: str = field(default="dpo", init=False, metadata={"help": "Training method.", "group": "method",
                                                              "hidden": True})
    loss_type: str = _f("sigmoid", "Preference loss: sigmoid (DPO), ipo, robust (rDPO, Chowdhury et al. 2024: "
                        "unbiased under a share label_smoothing of flipped labels), hinge (SLiC), simpo "
                        "(reference-free, length-normalised).", group="method", choices=LOSS_TYPES, label="Loss",
                        basic=True)
    beta: float = _f(0.1, "Strength of the pull towards the reference model (DPO's beta; SimPO's scale).",
                     group="method", minimum=0.0, label="Beta", basic=True)
    label_smoothing: float = _f(0.0, "Assumed share of flipped labels, for the robust loss (rDPO); the other "
                                "losses ignore it.", group="method", minimum=0.0, maximum=0.5, basic=True,
                                applies_when={"loss_type": ("robust",)})
    simpo_gamma: float = _f(0.5, "SimPO's target reward margin (gamma / beta is subtracted).", group="method",
                            minimum=0.0, label="SimPO gamma", basic=True, applies_when={"loss_type": ("simpo",)})
    nll_weight: float = _f(0.0, "Weight of an NLL term on the chosen response (RPO); 0 disables it.",
                           group="method", minimum=0.0, label="NLL weight (RPO)", basic=True)
    logratio_metrics: bool = _f(False, "Chart logratio/chosen and logratio/rejected also for a reference-free "
                                "loss (simpo), which then runs the reference model (adapter off) each step; the "
                                "other losses use the reference anyway and always chart them.", group="method",
                                label="Log-ratio charts", applies_when={"loss_type": ("simpo",)})
    precompute_ref_logps: str = _f("auto", "Compute reference log-probs once before training (inference mode, "
                                   "larger length-sorted batches) instead of in every step. 'auto' does when the "
                                   "run would otherwise run at least as many reference forwards as there are "
                                   "pairs (about one epoch or more, evaluations included).", group="method",
                                   choices=AUTO_ON_OFF, label="Precompute reference log-probs",
                                   applies_when={"loss_type": ("sigmoid", "ipo", "robust", "hinge")})
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA settings.", "group": "lora"})


def _hidden(default: Any, help: str) -> Any:
    """A field a method fixes (not a setting of it): kept for the shared code that reads it, never shown."""
    return field(default=default, metadata={"help": help, "group": "hidden", "hidden": True})


@dataclass
class RewardConfig(TrainConfig):
    """A reward model: a LoRA adapter plus a scalar score head on the base model, trained with the
    Bradley-Terry loss on the run's snapshot of resolved preferences."""

    method: str = field(default="reward", init=False, metadata={"help": "Training method.", "group": "method",
                                                                 "hidden": True})
    learning_rate: float = _f(1e-4, "Peak learning rate of AdamW on the adapter and score head weights.",
                              minimum=0.0, basic=True)
    strength_margin: float = _f(0.0, "Margin from label strength (Llama 2): the loss asks the chosen reward to "
                                "beat the rejected one by this times the votes' mean strength (slight 1/3, "
                                "clear 2/3, decisive 1; none 0); 0 disables it.", group="method", minimum=0.0,
                                label="Margin from label strength", basic=True)
    center_rewards_coefficient: float = _f(0.0, "Weight of a term pushing the mean reward to 0 (Eisenstein et al. "
                                           "2023), so scores of different runs share a scale; 0.01 is usual, 0 "
                                           "disables it.", group="method", minimum=0.0, label="Centring weight",
                                           basic=True)
    eval_fraction: float = _f(0.1, "Share of train preferences held out for evaluation when the project has no "
                              "eval split.", group="eval", minimum=0.0, maximum=0.5)
    # a reward model samples nothing
    eval_samples: int = _hidden(0, "Unused: a reward run samples nothing.")
    samples_per_prompt: int = _hidden(4, "Unused: a reward run samples nothing.")
    probe_prompt_ids: str = _hidden("", "Unused: a reward run samples nothing.")
    sample_max_new_tokens: int = _hidden(64, "Unused: a reward run samples nothing.")
    sample_budget: float = _hidden(0.1, "Unused: a reward run samples nothing.")
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA settings.", "group": "lora"})


KL_ESTIMATORS = ("k1", "k3")


def _rl_lora() -> LoraSettings:
    # dropout 0: the log-probs of the rollouts and of the first update must be the same function, so the
    # first PPO ratio is exactly 1 (the run refuses another value)
    return LoraSettings(dropout=0.0)


@dataclass
class RLConfig(TrainConfig):
    """What PPO and RLOO share: rollouts sampled from the policy on the project's prompts, scored by a reward
    model, with a KL penalty to the reference (the base model, adapters off)."""

    reward_model: str = _f("", "The reward: the id of a finished reward run of this project (trained on the same "
                           "base model, which it then shares), or a sequence-classification model folder.",
                           group="method", label="Reward model", basic=True)
    learning_rate: float = _f(1e-5, "Peak learning rate of AdamW on the adapter (and value) weights.", minimum=0.0,
                              basic=True)
    epochs: float = _f(1.0, "Passes over the train prompts (ignored when max_steps > 0).", minimum=0.0, basic=True)
    max_steps: int = _f(0, "Stop after this many rollout batches; 0 means use epochs.", minimum=0, basic=True)
    batch_size: int = _f(8, "Prompts per rollout batch: each step samples responses to this many prompts, then "
                         "optimises on them.", group="rollout", minimum=1, label="Prompts per step", basic=True)
    num_mini_batches: int = _f(1, "Optimizer steps per pass over a rollout batch (the batch is split into this "
                               "many minibatches).", group="rollout", minimum=1)
    grad_accumulation: int = _f(1, "Forward passes accumulated per minibatch (less memory, same update).",
                                minimum=1)
    ppo_epochs: int = _f(4, "Passes over each rollout batch before sampling the next (PPO's K epochs).",
                         group="rollout", minimum=1, label="PPO epochs", basic=True)
    max_new_tokens: int = _f(64, "Longest sampled response in tokens (also at evaluations).", group="rollout",
                             minimum=1, label="Longest response (tokens)", basic=True)
    temperature: float = _f(1.0, "Sampling temperature of the rollouts; the log-probs, ratios and KL are those "
                            "of the tempered distribution.", group="rollout", minimum=0.01)
    kl_coef: float = _f(0.05, "Weight of the KL penalty to the reference in the reward (beta); the starting "
                        "value when kl_target > 0.", group="method", minimum=0.0, label="KL coefficient", basic=True)
    kl_target: float = _f(0.0, "Adaptive KL (Ziegler et al. 2019): steer kl_coef so that the KL per response "
                          "approaches this many nats; 0 keeps kl_coef fixed.", group="method", minimum=0.0,
                          label="KL target (adaptive)", basic=True)
    kl_horizon: int = _f(10000, "Adaptive KL: responses over which kl_coef adapts (larger: slower).",
                         group="method", minimum=1, label="KL horizon")
    kl_estimator: str = _f("k1", "Per-token KL estimate in the reward: k1 = log pi - log ref (unbiased), k3 = "
                           "exp(-k1) - 1 + k1 (never negative, lower variance).", group="method",
                           choices=KL_ESTIMATORS, label="KL estimator")
    missing_eos_penalty: float = _f(1.0, "Subtracted from the score of a response that reaches max_new_tokens "
                                    "without ending; 0 disables it.", group="method", minimum=0.0,
                                    label="Missing-EOS penalty")
    cliprange: float = _f(0.2, "Clip range of the policy ratio (PPO's epsilon).", group="method", minimum=0.0,
                          label="Clip range")
    max_length: int = _hidden(1024, "Unused: prompts are cut to max_prompt_length, responses to max_new_tokens.")
    eval_fraction: float = _f(0.1, "Share of train prompts held out for evaluation when the project has no eval "
                              "split.", group="eval", minimum=0.0, maximum=0.5)
    eval_samples: int = _f(16, "Held-out prompts sampled at each evaluation, one response each: their score, KL "
                           "and collapse measures, and the stored samples.", group="eval", minimum=0)
    sample_max_new_tokens: int = _hidden(64, "Unused: evaluations sample max_new_tokens.")
    # an evaluation samples one response to each of eval_samples held-out prompts, every time (not the collapse
    # lens's probe sampler of DPO runs)
    samples_per_prompt: int = _hidden(1, "Unused: an evaluation samples one response per held-out prompt.")
    probe_prompt_ids: str = _hidden("", "Unused: the held-out prompts are drawn by seed.")
    sample_budget: float = _hidden(1.0, "Unused: every evaluation samples.")
    lora: LoraSettings = field(default_factory=_rl_lora, metadata={"help": "LoRA settings.", "group": "lora"})


@dataclass
class PPOConfig(RLConfig):
    """PPO with a value function: GAE advantages, clipped policy and value losses (Schulman et al. 2017), the
    RLHF recipe of Ziegler et al. 2019 and Ouyang et al. 2022."""

    method: str = field(default="ppo", init=False, metadata={"help": "Training method.", "group": "method",
                                                              "hidden": True})
    vf_coef: float = _f(0.1, "Weight of the value loss next to the policy loss.", group="method", minimum=0.0,
                        label="Value loss weight")
    cliprange_value: float = _f(0.2, "Clip range of the value update around the rollout's values.",
                                group="method", minimum=0.0, label="Value clip range")
    gamma: float = _f(1.0, "Discount factor of GAE.", group="method", minimum=0.0, maximum=1.0, label="GAE gamma")
    lam: float = _f(0.95, "Lambda of GAE: 1 is Monte Carlo returns, 0 one-step TD.", group="method",
                    minimum=0.0, maximum=1.0, label="GAE lambda")
    whiten_rewards: bool = _f(False, "Whiten the per-token rewards of each rollout batch before GAE.",
                              group="method")


@dataclass
class RLOOConfig(RLConfig):
    """REINFORCE Leave-One-Out (Ahmadian et al. 2024): k responses per prompt, each one's baseline the mean reward
    of the other k - 1; no value function."""

    method: str = field(default="rloo", init=False, metadata={"help": "Training method.", "group": "method",
                                                               "hidden": True})
    rloo_k: int = _f(4, "Responses sampled per prompt; each one's baseline is the others' mean reward.",
                     group="rollout", minimum=2, label="Responses per prompt (k)", basic=True)
    normalize_advantages: bool = _f(False, "Whiten the advantages of each rollout batch.", group="method")


METHOD_CONFIGS: dict[str, type] = {"dpo": DPOConfig, "reward": RewardConfig, "ppo": PPOConfig, "rloo": RLOOConfig}

PRESETS: dict[str, dict[str, Any]] = {
    "DPO": {"loss_type": "sigmoid", "beta": 0.1},
    "IPO": {"loss_type": "ipo", "beta": 0.1},
    "Robust DPO": {"loss_type": "robust", "beta": 0.1, "label_smoothing": 0.1},
    "Hinge (SLiC)": {"loss_type": "hinge", "beta": 0.1},
    "SimPO": {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "learning_rate": 1e-5},
    "DPO + NLL (RPO)": {"loss_type": "sigmoid", "beta": 0.1, "nll_weight": 1.0},
}
"""DPO's presets (the launch dialog's Preset list for DPO runs)."""

METHOD_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "dpo": PRESETS,
    "ppo": {"PPO, fixed KL": {"kl_coef": 0.05, "kl_target": 0.0},
            "PPO, adaptive KL (Ziegler 2019)": {"kl_coef": 0.2, "kl_target": 6.0}},
    "rloo": {"RLOO, k=4": {"rloo_k": 4, "kl_coef": 0.05}, "RLOO, k=2": {"rloo_k": 2, "kl_coef": 0.05}},
}


def presets_for(method: str) -> dict[str, dict[str, Any]]:
    """The named presets of a method (none for the reward model)."""
    return METHOD_PRESETS.get(method, {})


@dataclass(frozen=True)
class ConfigField:
    """One editable field, flattened: nested dataclasses appear as `lora.r`."""

    name: str
    type: type
    default: Any
    help: str
    group: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    label: str = ""
    """What a form calls it, in words (`field_label` fills it in from the name when the metadata has none)."""
    basic: bool = False
    """Shown in the launch dialog's main form; the other fields sit under Advanced."""
    applies_when: tuple[tuple[str, tuple], ...] = ()
    """(field, values) conditions, all of which must hold for the field to matter; empty: it always does."""

    def applies(self, values: dict[str, Any]) -> bool:
        """Whether the field matters for these (flat, dotted) values: a SimPO gamma does not under DPO."""
        return all(values.get(name) in allowed for name, allowed in self.applies_when)


# Words a humanised name spells differently (acronyms and the like).
_WORDS = {"lr": "LR", "nll": "NLL", "kl": "KL", "lora": "LoRA", "ref": "reference", "logps": "log-probs",
          "ipo": "IPO", "dpo": "DPO", "simpo": "SimPO", "id": "ID"}


def humanize(name: str) -> str:
    """A field name in words: 'max_prompt_length' -> 'Max prompt length', 'lora.dropout' -> 'LoRA dropout'."""
    words = [_WORDS.get(w, w) for w in name.replace(".", "_").split("_") if w]
    if not words:
        return name
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


def _resolve_type(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def config_fields(cls_or_obj: Any, prefix: str = "") -> list[ConfigField]:
    """Every user-editable field of a config class, nested ones flattened with dotted names."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    out: list[ConfigField] = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("hidden"):
            continue
        tp = _resolve_type(cls, f)
        if dataclasses.is_dataclass(tp):
            out.extend(config_fields(tp, prefix=f"{prefix}{f.name}."))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        choices = f.metadata.get("choices")
        if get_origin(tp) is Literal:
            choices = get_args(tp)
            tp = str
        name = f"{prefix}{f.name}"
        applies = f.metadata.get("applies_when") or {}
        out.append(ConfigField(name, tp, default, f.metadata.get("help", ""), f.metadata.get("group", "training"),
                               choices, f.metadata.get("min"), f.metadata.get("max"),
                               label=f.metadata.get("label") or humanize(name),
                               basic=bool(f.metadata.get("basic", False)),
                               applies_when=tuple((f"{prefix}{k}", tuple(v)) for k, v in applies.items())))
    return out


def batches_per_epoch(n_train: int, batch_size: int, processes: int = 1) -> int:
    """Micro-batches each process runs per epoch over n_train pairs (the same number on every process: each
    global batch is `processes` micro-batches, one per process)."""
    return math.ceil(n_train / (max(1, batch_size) * max(1, processes)))


def planned_steps(max_steps: int, epochs: float, batch_size: int, grad_accumulation: int, n_train: int,
                  processes: int = 1) -> int:
    """Optimizer steps a run will take: max_steps when set, else the epochs over the training pairs in
    micro-batches (`batches_per_epoch`), `grad_accumulation` of them per step."""
    if max_steps > 0:
        return max_steps
    micro = math.ceil(epochs * batches_per_epoch(n_train, batch_size, processes))
    return max(1, math.ceil(micro / max(1, grad_accumulation)))


def _as_bool(raw: Any) -> bool | None:
    """True/False for a boolean or its usual spellings, None for anything else."""
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    return True if word in ("1", "true", "yes") else False if word in ("0", "false", "no") else None


def parse_value(fld: ConfigField, raw: Any) -> Any:
    """Convert a raw value (a CLI string or a JSON value) to the field's type, validating it."""
    name = fld.name
    if fld.choices == AUTO_ON_OFF and _as_bool(raw) is not None:
        raw = "on" if _as_bool(raw) else "off"  # the setting's former true/false
    try:
        if fld.type is bool:
            value: Any = _as_bool(raw)
            if value is None and str(raw).strip().lower() in ("on", "off"):
                value = str(raw).strip().lower() == "on"
            if value is None:
                raise ValueError
        elif fld.type is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value = int(raw) if not isinstance(raw, str) else int(raw.strip())
        elif fld.type is float:
            value = float(raw)
        else:
            value = str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {fld.type.__name__}, got {raw!r}") from None
    if fld.choices is not None and value not in fld.choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, fld.choices))}")
    if fld.minimum is not None and value < fld.minimum:
        raise ConfigError(f"{name}: {value} is below the minimum {fld.minimum}")
    if fld.maximum is not None and value > fld.maximum:
        raise ConfigError(f"{name}: {value} is above the maximum {fld.maximum}")
    return value


def _set_path(obj: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, last, value)


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """Return a copy of `config` with dotted-name overrides applied; unknown or invalid fields raise."""
    fields = {f.name: f for f in config_fields(config)}
    new = copy.deepcopy(config)
    for key, raw in overrides.items():
        if key not in fields:
            close = [n for n in fields if n.split(".")[-1] == key.split(".")[-1]]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{key}: no such setting for method {getattr(config, 'method', '?')}{hint}")
        _set_path(new, key, parse_value(fields[key], raw))
    return new


def parse_set_args(items: list[str]) -> dict[str, str]:
    """Parse CLI `--set key=value` items into a dict, naming a malformed item."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict with dotted keys (`{"lora": {"r": 8}}` -> `{"lora.r": 8}`)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `flatten`: dotted keys back into nested dicts (`{"lora.r": 8}` -> `{"lora": {"r": 8}}`)."""
    out: dict[str, Any] = {}
    for k, v in flat.items():
        *parents, last = k.split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = v
    return out


def hidden_fields(cls: type) -> set[str]:
    """Names of the fields the method fixes (`method`, settings a method does not use): not settable."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("hidden")}


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config from a (possibly partial) dict such as a stored run config or a --config file. Fields the
    method fixes (hidden) are taken from the class: a stored config holds them too."""
    config = cls()
    hidden = hidden_fields(cls)
    flat = {k: v for k, v in flatten(data).items() if k not in hidden}
    return apply_overrides(config, flat) if flat else config


def config_for(method: str) -> type:
    try:
        return METHOD_CONFIGS[method]
    except KeyError:
        raise ConfigError(f"method: unknown method {method!r}; known: {', '.join(METHOD_CONFIGS)}") from None


def diff_configs(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted names of the fields whose values differ among the given config dicts."""
    flats = [flatten(c) for c in configs]
    keys = sorted(set().union(*flats)) if flats else []
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
