"""Run configs: overrides, validation errors that name the field, and the dict/JSON round trip."""

from __future__ import annotations

import json

import pytest

from studio.core.configs import (
    PRESETS,
    ConfigError,
    DPOConfig,
    apply_overrides,
    config_fields,
    config_for,
    diff_configs,
    from_dict,
    parse_set_args,
    to_dict,
)


def test_fields_are_flattened_with_help_and_the_method_is_hidden():
    fields = {f.name: f for f in config_fields(DPOConfig)}
    assert "lora.r" in fields and "method" not in fields
    assert fields["beta"].help and fields["beta"].group == "method"
    assert fields["loss_type"].choices == ("sigmoid", "ipo", "robust", "hinge", "simpo")
    assert fields["lora.dropout"].maximum == 0.9
    assert all(f.help for f in fields.values())


def test_overrides_convert_cli_strings_and_leave_the_original_alone():
    base = DPOConfig()
    new = apply_overrides(base, parse_set_args(["beta=0.25", "lora.r=8", "gradient_checkpointing=yes",
                                                "loss_type=ipo"]))
    assert (new.beta, new.lora.r, new.gradient_checkpointing, new.loss_type) == (0.25, 8, "on", "ipo")
    assert (base.beta, base.lora.r) == (0.1, 16)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"beta": "lots"}, "beta: expected float, got 'lots'"),
    ({"lora.r": "0"}, "lora.r: 0 is below the minimum 1"),
    ({"label_smoothing": 0.7}, "label_smoothing: 0.7 is above the maximum 0.5"),
    ({"loss_type": "kto"}, "loss_type: 'kto' is not one of sigmoid, ipo, robust, hinge, simpo"),
    ({"batch_size": 2.5}, "batch_size: expected int, got 2.5"),
    ({"gradient_checkpointing": "maybe"}, "gradient_checkpointing: 'maybe' is not one of auto, on, off"),
    ({"r": 4}, "r: no such setting for method dpo (did you mean lora.r?)"),
])
def test_invalid_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as exc:
        apply_overrides(DPOConfig(), overrides)
    assert str(exc.value).startswith(message)


def test_settings_that_gained_auto_read_a_stored_true_or_false_as_on_or_off():
    # runs stored before gradient_checkpointing / precompute_ref_logps became auto|on|off still load and retry
    old = from_dict(DPOConfig, {"gradient_checkpointing": True, "precompute_ref_logps": False})
    assert (old.gradient_checkpointing, old.precompute_ref_logps) == ("on", "off")
    assert DPOConfig().gradient_checkpointing == "auto" and DPOConfig().precompute_ref_logps == "auto"


def test_malformed_set_argument():
    with pytest.raises(ConfigError, match="--set 'beta': expected key=value"):
        parse_set_args(["beta"])
    assert parse_set_args(["note=a=b"]) == {"note": "a=b"}


def test_round_trip_through_dict_and_json():
    cfg = apply_overrides(DPOConfig(), {"beta": 0.3, "lora.alpha": 64, "max_steps": 7})
    assert from_dict(DPOConfig, to_dict(cfg)) == cfg
    assert from_dict(DPOConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    assert to_dict(cfg)["method"] == "dpo"
    # a partial dict (a --config file) fills in defaults
    partial = from_dict(DPOConfig, {"lora": {"r": 4}})
    assert partial.lora.r == 4 and partial.beta == DPOConfig().beta


def test_every_preset_is_valid():
    for name, values in PRESETS.items():
        cfg = apply_overrides(DPOConfig(), values)
        assert all(getattr(cfg, k) == v for k, v in values.items()), name


def test_diff_configs_and_unknown_method():
    a = to_dict(DPOConfig())
    b = to_dict(apply_overrides(DPOConfig(), {"beta": 0.5, "lora.r": 4}))
    assert diff_configs([a, b]) == ["beta", "lora.r"]
    assert diff_configs([a, a]) == []
    assert config_for("dpo") is DPOConfig
    with pytest.raises(ConfigError, match="method: unknown method 'kto'"):
        config_for("kto")


def test_reward_ppo_and_rloo_configs_round_trip_and_hide_what_they_fix():
    from studio.core.configs import PPOConfig, RewardConfig, RLOOConfig, from_dict, presets_for

    for cls, method in ((RewardConfig, "reward"), (PPOConfig, "ppo"), (RLOOConfig, "rloo")):
        assert config_for(method) is cls and cls().method == method
        fields = {f.name: f for f in config_fields(cls)}
        assert all(f.help for f in fields.values())
        # a stored config (it holds the fixed fields too) reads back to the same config
        stored = to_dict(cls())
        assert from_dict(cls, json.loads(json.dumps(stored))) == cls()
        for name, values in presets_for(method).items():
            cfg = apply_overrides(cls(), values)
            assert all(getattr(cfg, k) == v for k, v in values.items()), name
    assert "eval_samples" not in {f.name for f in config_fields(RewardConfig)}  # a reward run samples nothing
    ppo = {f.name: f for f in config_fields(PPOConfig)}
    assert {"reward_model", "kl_coef", "kl_target", "gamma", "lam", "vf_coef", "cliprange_value"} <= set(ppo)
    assert "max_length" not in ppo and "rloo_k" not in ppo
    assert PPOConfig().lora.dropout == 0.0  # the first ratio must be exactly 1
    assert RLOOConfig().rloo_k >= 2 and {f.name: f for f in config_fields(RLOOConfig)}["rloo_k"].minimum == 2
    with pytest.raises(ConfigError, match="kl_estimator: 'k2' is not one of k1, k3"):
        apply_overrides(PPOConfig(), {"kl_estimator": "k2"})
    with pytest.raises(ConfigError, match="beta: no such setting for method ppo"):
        apply_overrides(PPOConfig(), {"beta": 0.1})


def test_unflatten_is_the_inverse_of_flatten():
    from studio.core.configs import flatten, unflatten

    nested = to_dict(DPOConfig())
    assert unflatten(flatten(nested)) == nested
    assert unflatten({"lora.r": 8, "beta": 0.2}) == {"lora": {"r": 8}, "beta": 0.2}


def test_every_field_has_a_label_in_words_and_metadata_says_which_fields_matter():
    from studio.core.configs import humanize

    fields = {f.name: f for f in config_fields(DPOConfig)}
    assert humanize("max_prompt_length") == "Max prompt length"
    assert humanize("lora.target_modules") == "LoRA target modules"
    assert fields["lora.r"].label == "LoRA rank" and fields["simpo_gamma"].label == "SimPO gamma"
    assert all(f.label and "_" not in f.label for f in fields.values())
    assert {n for n, f in fields.items() if f.basic} >= {"loss_type", "beta", "learning_rate", "batch_size"}
    assert not fields["lora.dropout"].basic
    # a loss-specific field matters only under its loss; the others always do
    dpo = {"loss_type": "sigmoid"}
    assert not fields["simpo_gamma"].applies(dpo) and fields["simpo_gamma"].applies({"loss_type": "simpo"})
    assert not fields["label_smoothing"].applies(dpo) and fields["label_smoothing"].applies({"loss_type": "robust"})
    assert fields["beta"].applies(dpo) and fields["learning_rate"].applies({})
    assert not fields["precompute_ref_logps"].applies({"loss_type": "simpo"}), "SimPO has no reference model"


def test_planned_steps_follow_epochs_batches_and_accumulation_unless_max_steps_is_set():
    from studio.core.configs import planned_steps

    assert planned_steps(0, 1.0, 4, 1, 10) == 3  # ceil(10 / 4) micro-batches, one per step
    assert planned_steps(0, 2.0, 4, 2, 10) == 3  # 6 micro-batches, two per step
    assert planned_steps(0, 0.5, 4, 1, 10) == 2
    assert planned_steps(25, 3.0, 4, 1, 10) == 25
    assert planned_steps(0, 1.0, 8, 1, 1) == 1
    # several processes: each global batch is one micro-batch per process, so each runs ceil(10 / (2 x 2))
    assert planned_steps(0, 1.0, 2, 1, 10, processes=2) == 3
    assert planned_steps(0, 1.0, 2, 1, 10) == 5
