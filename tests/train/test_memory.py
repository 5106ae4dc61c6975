"""Gradient checkpointing 'auto': the measured activations scale with the batch, the policy recomputes the fewest
layers that fit, and a run applies it; reference log-probs are precomputed when that is the cheaper way."""

import pytest
import torch

from studio.core.configs import DPOConfig, apply_overrides
from studio.train import data, dpo, memory
from studio.train.model import PolicyLogps, checkpointed_layers
from tests.train.test_dpo import lora_model


def _pairs(n):
    return [data.Example(i, i, list(range(5, 17)), list(range(40, 50)), list(range(80, 88))) for i in range(n)]


def test_measured_activations_scale_with_the_pairs_and_exceed_a_layers_input(tiny_model):
    model, _ = lora_model(tiny_model)
    one, two = (data.pack(_pairs(n), 0) for n in (1, 2))
    a = memory.measure_activations(model, one, dpo.decoder_attention(one, model))
    b = memory.measure_activations(model, two, dpo.decoder_attention(two, model))
    assert a.layers == 2 and a.boundary == 30 * 64 * 4  # one row of 30 tokens x hidden 64 x float32
    assert a.per_layer > 5 * a.boundary  # a layer keeps far more than its input
    assert b.per_layer == pytest.approx(2 * a.per_layer, rel=0.05)  # two rows keep twice as much


def test_the_policy_recomputes_the_fewest_layers_that_fit():
    p = memory.ActivationProfile(per_layer=100, boundary=10, layers=4)
    assert memory.layers_to_checkpoint(p, scale=1, budget=400) == 0  # everything fits
    assert memory.layers_to_checkpoint(p, scale=1, budget=399) == 1  # 3 full layers + 1 input = 310
    assert memory.layers_to_checkpoint(p, scale=1, budget=305) == 2  # 2 full + 2 inputs = 220
    assert memory.layers_to_checkpoint(p, scale=2, budget=320) == 3  # 1 full + 3 inputs at twice the batch = 260
    assert memory.layers_to_checkpoint(p, scale=2, budget=10) == 4  # nothing fits: all, the least there is


def test_auto_checkpoints_the_chosen_layers_and_keeps_the_gradients(tiny_model):
    batch = data.pack(_pairs(2), 0)
    grads = {}
    for budget in (None, "one layer"):
        model, config = lora_model(tiny_model)
        attention = dpo.decoder_attention(batch, model)
        if budget is None:
            k, n, _ = memory.auto_checkpointing(model, batch, 2, attention, torch.device("cpu"), 4)
            assert (k, n) == (0, 2)  # RAM is plenty for a tiny model: nothing recomputed
        else:
            longest = data.pack(_pairs(1), 0)
            longest_attention = dpo.decoder_attention(longest, model)
            p = memory.measure_activations(model, longest, longest_attention)
            fits_one = (p.per_layer + p.boundary) * 2  # 1 full layer + 1 input, of 2 pairs
            k, n, _ = memory.auto_checkpointing(model, longest, 2, longest_attention, torch.device("cpu"), 4,
                                                budget=fits_one)
            assert (k, n) == (1, 2)
        layers = checkpointed_layers(model.get_base_model())
        assert [layer.gradient_checkpointing for layer in layers] == [i < k for i in range(2)]
        calls = [0, 0]
        # (a layer's own hooks stay outside its checkpoint, and the recompute stops once it has what the backward
        # needs: a pre-hook of a module inside the layer counts the recomputes)
        hooks = [layer.mlp.register_forward_pre_hook(lambda *_, i=i, c=calls: c.__setitem__(i, c[i] + 1))
                 for i, layer in enumerate(layers)]
        out = dpo.dpo_forward(PolicyLogps(model), model, batch, config)
        out.loss.backward()
        for h in hooks:
            h.remove()
        # the reference pass and the policy pass run each layer once; a checkpointed one runs again in the backward
        assert calls == [2 + (k > 0), 2]
        grads[budget] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    for name, g in grads[None].items():
        torch.testing.assert_close(grads["one layer"][name], g, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("overrides", "n_train", "n_eval", "expected"), [
    ({"epochs": 1.0}, 100, 0, True),  # one pass: precomputing costs the same forwards, in bigger batches
    ({"max_steps": 3, "batch_size": 4}, 100, 0, False),  # 12 of 100 pairs: per step is cheaper
    ({"max_steps": 3, "batch_size": 4, "eval_interval": 1}, 100, 30, True),  # evaluations need them too
    ({"max_steps": 3, "precompute_ref_logps": "on"}, 100, 0, True),
    ({"epochs": 2.0, "precompute_ref_logps": "off"}, 100, 0, False),
])
def test_reference_logps_are_precomputed_when_that_runs_fewer_reference_forwards(overrides, n_train, n_eval,
                                                                                  expected):
    from studio.train.runtime import total_steps_for

    config = apply_overrides(DPOConfig(), {"eval_interval": 0, **overrides})
    steps = total_steps_for(config, n_train)
    assert dpo.precompute_is_cheaper(config, steps, n_train, n_eval) is expected
