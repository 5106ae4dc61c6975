"""Models whose forward scales the lm_head's output: the log-prob head applies the scale, or refuses the model by
the field's name before it trains on wrong log-probs."""

import json

import pytest
import torch

from studio.train import preflight
from studio.train.logps import sequence_logps
from studio.train.preflight import TrainingError


def reference_logps(logits: torch.Tensor, ids: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
    lp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (lp * completion[:, 1:]).sum(1)


def batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (2, 10), generator=g)
    completion = torch.zeros_like(ids)
    completion[:, 4:] = 1
    return ids, torch.ones_like(ids), completion


TINY = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)


@pytest.mark.parametrize("arch,field,value", [("Cohere", "logit_scale", 0.25), ("Granite", "logits_scaling", 4.0)])
def test_a_scale_the_models_forward_applies_is_applied_by_the_head(arch, field, value):
    import transformers

    config = getattr(transformers, f"{arch}Config")(**TINY, **{field: value})
    torch.manual_seed(0)
    model = getattr(transformers, f"{arch}ForCausalLM")(config).eval()
    ids, attention, completion = batch(config.vocab_size)
    with torch.no_grad():
        expected = reference_logps(model(input_ids=ids, attention_mask=attention).logits, ids, completion)
        ours = sequence_logps(model, ids, attention, completion).logps
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
        # the scale matters: without it the log-probs differ
        setattr(model.config, field, 1.0)
        assert not torch.allclose(sequence_logps(model, ids, attention, completion).logps, expected, atol=1e-3)


def test_lm_head_multiplier_multiplies_the_logits(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids, attention, completion = batch(model.config.vocab_size)
    model.config.lm_head_multiplier = 0.5  # Falcon-H1's field, set on the tiny Llama
    with torch.no_grad():
        expected = reference_logps(model(input_ids=ids, attention_mask=attention).logits * 0.5, ids, completion)
        torch.testing.assert_close(sequence_logps(model, ids, attention, completion).logps, expected,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config,where", [
    ({"model_type": "gemma2", "final_logit_softcapping": 30.0}, "final_logit_softcapping = 30"),
    ({"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", "final_logit_softcapping": 30.0}},
     "text_config.final_logit_softcapping = 30"),
])
def test_soft_capped_logits_are_refused_by_field_before_the_model_loads(tmp_path, config, where):
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TrainingError, match=f"config.json: {where}: this model caps the logits"):
        preflight.check_model_folder(tmp_path)
    # a null cap (Gemma 2 configs with capping switched off) is no cap
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma2", "final_logit_softcapping": None}))
    preflight.check_model_folder(tmp_path)


def test_a_soft_capped_model_handed_to_the_head_is_refused_by_field():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    model = Gemma2ForCausalLM(Gemma2Config(**TINY, head_dim=16, final_logit_softcapping=30.0))
    ids, attention, completion = batch(128)
    with pytest.raises(TrainingError, match="final_logit_softcapping = 30"):
        sequence_logps(model, ids, attention, completion)


def test_nested_and_per_architecture_scales():
    assert preflight.logits_multiplier({"model_type": "llama"}) == 1.0
    assert preflight.logits_multiplier({"model_type": "granite", "logits_scaling": 8.0}) == 1 / 8
    # HyperCLOVA X multiplies by the field Granite divides by
    assert preflight.logits_multiplier({"model_type": "hyperclovax", "logits_scaling": 8.0}) == 8.0
    assert preflight.logits_multiplier({"model_type": "granite_docling",
                                        "text_config": {"model_type": "granite", "logits_scaling": 2.0}}) == 0.5
    assert preflight.logits_multiplier({"model_type": "cohere_compass", "logit_scale": None,
                                        "text_config": {"logit_scale": 0.5}}) == 0.5
