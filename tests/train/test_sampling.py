"""Probe prompts, K samples each with their measures, and the time budget of sampling."""

from __future__ import annotations

import pytest
import torch

from studio.core import collapse
from studio.core import metrics as M
from studio.core.configs import DPOConfig, apply_overrides
from studio.train import sampling
from studio.train.data import Example
from studio.train.preflight import TrainingError, probe_ids

from .test_dpo import lora_model


def prompt(i: int) -> sampling.EvalPrompt:
    return sampling.EvalPrompt(i, f"prompt {i}", [1, 2, i])


def test_probe_prompts_come_from_the_eval_split_then_train_or_by_id():
    evals, train = [prompt(i) for i in range(3)], [prompt(i) for i in range(10, 20)]
    picked = sampling.pick_prompts(evals, 5, seed=0, fallback=train)
    ids = [p.prompt_id for p in picked]
    assert sorted(ids[:3]) == [0, 1, 2] and all(i >= 10 for i in ids[3:]) and len(set(ids)) == 5
    assert [p.prompt_id for p in sampling.pick_prompts(evals, 5, seed=0, fallback=train)] == ids  # seeded
    assert [p.prompt_id for p in sampling.pick_prompts(evals, 2, seed=0, fallback=train)] == ids[:2]
    assert [p.prompt_id for p in sampling.pick_prompts(evals, 5, 0, train, chosen=[12, 1])] == [12, 1]
    with pytest.raises(TrainingError, match="probe_prompt_ids: prompt\\(s\\) 99 are not in this run's data"):
        sampling.pick_prompts(evals, 5, 0, train, chosen=[1, 99])
    assert probe_ids(" 3, 17,3,") == [3, 17] and probe_ids("") == []
    with pytest.raises(TrainingError, match="probe_prompt_ids: 'x7' is not a prompt id"):
        probe_ids("3,x7")


def rows_of(lengths, first_id: int = 0) -> list[dict]:
    """Snapshot rows whose chosen response is `n` tokens long for each n of lengths (see `tokenize_lengths`)."""
    return [{"pair_id": first_id + i, "prompt_id": first_id + i, "prompt": f"p{first_id + i}", "chosen": "x" * n,
             "rejected": "y"} for i, n in enumerate(lengths)]


class CountingTokenizer:
    """A stand-in `PairTokenizer`: one token per character, counting the rows it tokenizes."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, row: dict) -> Example:
        self.calls.append(row["pair_id"])
        return Example(row["pair_id"], row["prompt_id"], [1], [5] * len(row["chosen"]), [6],
                       prompt_text=row["prompt"])


def test_the_default_cap_is_the_95th_percentile_of_the_chosen_lengths_at_least_128():
    config = apply_overrides(DPOConfig(), {"eval_samples": 2, "samples_per_prompt": 3})
    tokenize = CountingTokenizer()
    probes = sampling.ProbeSampler.for_run(config, rows_of([10, 20], 1000), rows_of(range(1, 401)), tokenize)
    assert probes.max_new_tokens == 381  # 95th percentile of 1..400: 380.05, rounded up
    assert len(probes.prompts) == 2 and probes.samples_per_prompt == 3
    assert sampling.ProbeSampler.for_run(config, [], rows_of([30] * 50), tokenize).max_new_tokens == 128
    fixed = apply_overrides(config, {"sample_max_new_tokens": 16})
    tokenize.calls.clear()
    assert sampling.ProbeSampler.for_run(fixed, [], rows_of([300] * 5), tokenize).max_new_tokens == 16
    assert len(tokenize.calls) == 2, "a set cap tokenizes the probe prompts' rows alone"
    assert not sampling.ProbeSampler.for_run(apply_overrides(config, {"eval_samples": 0}), [], rows_of([5]), tokenize)


def test_probes_of_a_large_snapshot_tokenize_a_seeded_share_of_it():
    """Pairs are tokenized when the run reaches them: the probes take their own rows and, for the default cap,
    CAP_SAMPLE_ROWS train rows drawn by seed, whose 95th percentile stands for the whole's."""
    config = apply_overrides(DPOConfig(), {"eval_samples": 4})
    n = 5 * sampling.CAP_SAMPLE_ROWS
    train = rows_of([200 + i % 400 for i in range(n)])  # lengths 200..599, evenly: the 95th percentile is 580
    tokenize = CountingTokenizer()
    probes = sampling.ProbeSampler.for_run(config, rows_of([10] * 8, n), train, tokenize)
    assert len(tokenize.calls) == 4 + sampling.CAP_SAMPLE_ROWS
    assert abs(probes.max_new_tokens - 580) <= 8
    again = CountingTokenizer()
    assert sampling.ProbeSampler.for_run(config, rows_of([10] * 8, n), train, again).max_new_tokens == \
        probes.max_new_tokens and again.calls == tokenize.calls, "the same rows by seed"


def test_probes_picked_from_rows_are_the_ones_pick_prompts_picks():
    """The run picks its probes on the rows' prompt ids (duplicates: several pairs per prompt) before tokenizing
    them; they are the prompts `pick_prompts` picks among the tokenized prompts, eval first, then train."""
    evals = rows_of([5] * 6, 100) + rows_of([5] * 6, 100)  # each prompt twice
    train = [dict(r, prompt_id=r["prompt_id"] % 13) for r in rows_of([5] * 40)]
    for n, seed, chosen in ((3, 0, ""), (9, 5, ""), (30, 1, ""), (4, 2, "7,101")):
        config = apply_overrides(DPOConfig(), {"eval_samples": n, "seed": seed, "probe_prompt_ids": chosen,
                                               "sample_max_new_tokens": 8})
        tokenize = CountingTokenizer()
        probes = sampling.ProbeSampler.for_run(config, evals, train, tokenize)
        expected = sampling.pick_prompts([sampling.EvalPrompt(r["prompt_id"], "", []) for r in evals], n, seed,
                                         [sampling.EvalPrompt(r["prompt_id"], "", []) for r in train],
                                         probe_ids(chosen))
        assert [p.prompt_id for p in probes.prompts] == [p.prompt_id for p in expected]
        assert len(tokenize.calls) == len(expected) == (2 if chosen else min(n, 6 + 13))  # the probes' rows alone


def test_k_samples_per_probe_prompt_with_their_measures_adding_up_to_the_metrics(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model, _ = lora_model(tiny_model)
    prompts = [sampling.EvalPrompt(i, f"q{i}", tokenizer(f"Question {i}: tell me about the dog.").input_ids)
               for i in range(3)]
    generated = []
    real_generate = model.generate

    def spy(*args, **kwargs):
        generated.append(real_generate(*args, **kwargs))
        return generated[-1]

    model.generate = spy
    values, rows = sampling.sample_and_measure(model, tokenizer, prompts, 12, seed=1, device=torch.device("cpu"),
                                               num_samples=4)
    del model.generate
    assert len(generated) == 1, "all 12 samples in one batch"
    assert [r["prompt_id"] for r in rows] == [0] * 4 + [1] * 4 + [2] * 4
    assert [r["meta"]["sample"] for r in rows] == [0, 1, 2, 3] * 3
    metas = [r["meta"] for r in rows]
    assert values[M.EVAL_SAMPLE_LENGTH] == pytest.approx(sum(m["tokens"] for m in metas) / 12)
    assert values[M.EVAL_SAMPLE_HIT_CAP] == pytest.approx(sum(m["hit_cap"] for m in metas) / 12)
    assert values[M.EVAL_EOS_RATE] == pytest.approx(1 - values[M.EVAL_SAMPLE_HIT_CAP])
    assert all(m["tokens"] == 12 for m in metas if m["hit_cap"]) and values[M.EVAL_SAMPLE_CAP] == 12
    assert values[M.EVAL_KL_SEQ] == pytest.approx(sum(m["kl_seq"] for m in metas) / 12)
    assert values[M.EVAL_REPETITION] == pytest.approx(sum(m["repetition"] for m in metas) / 12)
    tokens = sum(m["tokens"] for m in metas)
    assert values[M.EVAL_SAMPLE_ENTROPY] == pytest.approx(sum(m["entropy"] * m["tokens"] for m in metas) / tokens)
    assert values[M.EVAL_SAMPLE_ENTROPY] > 0.5  # a random tiny model is far from deterministic

    # the diversity measures are those of studio.core.collapse on the sampled tokens (stop token left out)
    [out] = generated
    width = out.shape[1] - 12
    content = [seq[:m["tokens"] - (0 if m["hit_cap"] else 1)] for seq, m in zip(out[:, width:].tolist(), metas,
                                                                                strict=True)]
    assert values[M.EVAL_DISTINCT_2] == pytest.approx(collapse.distinct_n(content, 2))
    assert values[M.EVAL_DISTINCT_1] == pytest.approx(collapse.distinct_n(content, 1))
    assert values[M.EVAL_SELF_SIMILARITY] == pytest.approx(collapse.self_similarity([content[:4], content[4:8],
                                                                                      content[8:]]))
    assert values[M.EVAL_KL] > 0 and values[M.EVAL_KL_SEQ] > values[M.EVAL_KL]  # the adapter is off zero


def test_repeated_tokens_are_marked_in_the_text_they_decode_to():
    from studio.train.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    tokens = tokenizer("the cat is big the cat is big the cat").input_ids
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    spans = sampling.repeated_spans(tokenizer, tokens, text, 3)
    # tokens: 'the' ' cat' ' is' ' big' ' the' ' cat' ' is' ' big' ' the' ' cat' (the first 'the' has no space,
    # so the first trigram to come back is ' cat is big', at token 5)
    assert [text[a:b] for a, b in spans] == [" cat is big the cat"]


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_mid_run_evaluation_samples_only_within_the_budget_keeping_room_for_the_last(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(sampling.time, "monotonic", clock)
    monkeypatch.setattr(sampling.time, "perf_counter", clock)
    probes = sampling.ProbeSampler([prompt(1)], 4, 16, 0, budget=0.1, started=100.0)

    def sample(step: int, cost: float) -> None:
        monkeypatch.setattr(sampling, "sample_and_measure", lambda *a, **k: (clock.__setattr__(
            "now", clock.now + cost), ({}, []))[1])
        values, _ = probes.sample(None, None, "cpu", step)
        assert values[M.EVAL_SAMPLING_SECONDS] == cost

    clock.now = 110.0  # 10 s to load the model
    assert probes.due(0, 1000)  # the first always samples
    sample(0, 5.0)
    clock.now += 20.0  # 100 steps at 0.2 s
    # projected: 35 s so far + 900 steps x 0.2 s + this one and the last (10 s) = 225 s; 15 s sampled of
    # that is 6.7%, within 10%
    assert probes.due(100, 1000)
    sample(100, 5.0)
    clock.now += 20.0
    # at step 200: 60 s so far + 160 s to go + 10 s = 230 s; 20 s would be 8.7%
    assert probes.due(200, 1000)
    probes.budget = 0.08
    assert not probes.due(200, 1000)
    assert probes.due(1000, 1000)  # the last always samples
    assert probes.seconds == 10.0 and probes.count == 2


def test_the_base_model_at_step_0_is_sampled_without_the_adapter_to_the_same_samples(tiny_model, monkeypatch):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model, _ = lora_model(tiny_model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.zero_()  # a fresh adapter: the policy is the reference
    prompts = [sampling.EvalPrompt(i, f"q{i}", tokenizer(f"Question {i}: tell me about the sun.").input_ids)
               for i in range(2)]
    assert sampling.adapter_is_zero(model)
    fast = sampling.sample_and_measure(model, tokenizer, prompts, 10, seed=4, device=torch.device("cpu"),
                                       num_samples=3)
    monkeypatch.setattr(sampling, "adapter_is_zero", lambda m: False)
    full = sampling.sample_and_measure(model, tokenizer, prompts, 10, seed=4, device=torch.device("cpu"),
                                       num_samples=3)
    assert [r["text"] for r in fast[1]] == [r["text"] for r in full[1]]
    assert fast[0] == pytest.approx(full[0], abs=1e-6) and fast[0][M.EVAL_KL] == 0.0
    monkeypatch.undo()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n)[0, 0] = 0.1
    assert not sampling.adapter_is_zero(model)
