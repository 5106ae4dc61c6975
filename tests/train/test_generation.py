"""Sampling from the policy: its own distribution, stopped at the end of a turn, without moving the RNG."""

from __future__ import annotations

import pytest
import torch

from studio.train import generation
from studio.train.logps import sequence_logps


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)


def _prompts(tokenizer, n=3):
    return [tokenizer(f"Question {i}: tell me about the cat.").input_ids for i in range(n)]


def test_the_models_own_generation_config_does_not_bias_sampling(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    settings = generation.SamplingSettings(max_new_tokens=12)
    plain = generation.generate(model, tokenizer, _prompts(tokenizer), settings, seed=1, device="cpu")
    saved = model.generation_config
    try:
        # a model folder shipping a repetition penalty and no-repeat n-grams (many instruct models do)
        model.generation_config.repetition_penalty = 50.0
        model.generation_config.no_repeat_ngram_size = 1
        biased_cfg = generation.generate(model, tokenizer, _prompts(tokenizer), settings, seed=1, device="cpu")
        # the same penalty passed by hand does change what comes out: the test can tell the difference
        ids = torch.tensor([_prompts(tokenizer, 1)[0]])
        torch.manual_seed(1)
        penalised = model.generate(input_ids=ids, do_sample=True, max_new_tokens=12, top_k=0,
                                   eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        assert len(set(penalised[0, ids.shape[1]:].tolist())) == penalised.shape[1] - ids.shape[1]
    finally:
        model.generation_config = saved
    assert biased_cfg.completion_ids == plain.completion_ids
    assert model.generation_config is saved  # put back
    # and our samples do repeat tokens, which the penalty would have forbidden
    assert any(len(set(c)) < len(c) for c in plain.completion_ids)


def test_generation_leaves_the_callers_rng_alone_and_is_seeded(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    settings = generation.SamplingSettings(max_new_tokens=6)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = generation.generate(model, tokenizer, _prompts(tokenizer), settings, seed=5, device="cpu", num_samples=2)
    assert torch.equal(torch.rand(3), expected)
    again = generation.generate(model, tokenizer, _prompts(tokenizer), settings, seed=5, device="cpu", num_samples=2)
    assert first.completion_ids == again.completion_ids
    assert first.prompt_index == [0, 0, 1, 1, 2, 2]
    assert len(first) == 6 and first.completion_ids[0] != first.completion_ids[1]


def test_stops_at_the_chat_templates_end_of_turn_not_only_eos(model_and_tokenizer):
    from tokenizers import AddedToken

    model, tokenizer = model_and_tokenizer
    tok = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tok.add_special_tokens({"additional_special_tokens": [AddedToken("<|im_end|>", special=True)]})
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert generation.stop_token_ids(tok) == [tok.eos_token_id, end]
    grown = type(model)(model.config)
    grown.load_state_dict(model.state_dict())
    grown.resize_token_embeddings(len(tok))
    with torch.no_grad():  # make end-of-turn the likeliest next token everywhere
        grown.get_output_embeddings().weight[end] = 0
        grown.get_output_embeddings().bias = None
        grown.lm_head.weight[end] += 50 * grown.model.norm.weight.sign() / grown.lm_head.weight.shape[1]
    gens = generation.generate(grown, tok, _prompts(tok), generation.SamplingSettings(max_new_tokens=20),
                               seed=0, device="cpu")
    assert all(c[-1] == end for c in gens.completion_ids) and all(gens.finished)
    assert all(len(c) < 20 for c in gens.completion_ids)


def test_cap_hits_are_reported(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    gens = generation.generate(model, tokenizer, _prompts(tokenizer), generation.SamplingSettings(max_new_tokens=3),
                               seed=0, device="cpu")
    for c, hit in zip(gens.completion_ids, gens.hit_cap, strict=True):
        assert hit == (c[-1] != tokenizer.eos_token_id)
        assert len(c) <= 3


def test_log_probs_at_a_temperature_are_those_of_the_tempered_distribution(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = _prompts(tokenizer)
    gens = generation.generate(model, tokenizer, prompts, generation.SamplingSettings(max_new_tokens=5,
                               temperature=0.7), seed=0, device="cpu")
    ids, attn, comp = generation.pack(gens.prompt_ids, gens.completion_ids, tokenizer.pad_token_id, "cpu")
    got = sequence_logps(model, ids, attn, comp, temperature=0.7).logps
    with torch.no_grad():
        for i, (p, c) in enumerate(zip(gens.prompt_ids, gens.completion_ids, strict=True)):
            seq = torch.tensor([p + c])
            lp = (model(seq).logits[0, len(p) - 1:-1] / 0.7).log_softmax(-1)
            want = lp.gather(-1, torch.tensor(c)[:, None]).sum()
            assert got[i].item() == pytest.approx(want.item(), rel=1e-5, abs=1e-5)


def test_tempered_log_prob_gradients_match_autograd(model_and_tokenizer):
    from studio.train.logps import _head_logprobs

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11)
    hidden = torch.randn(5, 8, requires_grad=True)
    targets = torch.randint(0, 11, (5,))
    lp, _, _ = _head_logprobs(head, hidden, targets, stats=False, chunk=2, temperature=0.5)
    lp.sum().backward()
    ours = (hidden.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone())
    hidden.grad = None
    head.zero_grad()
    ref = (head(hidden) / 0.5).log_softmax(-1).gather(-1, targets[:, None]).sum()
    ref.backward()
    for a, b in zip(ours, (hidden.grad, head.weight.grad, head.bias.grad), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
