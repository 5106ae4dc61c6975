"""Fixtures for training tests: a tiny model saved to a temp folder, and projects with synthetic tasks."""

from __future__ import annotations

import random

import pytest

from studio.store import Project


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny Llama with random weights and a locally trained tokenizer, saved to disk (from_pretrained path)."""
    from studio.train.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def bos_tokenizer():
    """The tiny tokenizer made to behave like Llama's: BOS added to every text, and a template that writes it."""
    from tokenizers import processors

    from studio.train import tiny

    tok = tiny.build_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", tok.bos_token_id)])
    tok.chat_template = "{{ bos_token }}" + tiny.CHAT_TEMPLATE
    return tok


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI box has 2 cores shared with other jobs
    yield
    torch.set_num_threads(n)


SUBJECTS = ("cat", "dog", "bird", "fish", "tree", "house", "car", "book", "sun", "moon", "star", "sky",
            "river", "road", "city", "water", "friend", "day", "time", "people")


def add_trait_pairs(project: Project, n_train: int = 16, n_eval: int = 4, chat: bool = False,
                    seed: int = 0, spaced_answers: bool = False) -> None:
    """Pairs whose chosen response starts with 'sure' and whose rejected one starts with 'no', labeled so.

    The trait is one word at a known place, so a short run must learn it and samples can be counted. A plain
    prompt ends with the space before the answer; with `spaced_answers` the answer starts with it instead, the
    way the policy samples it after a prompt tokenized alone (what PPO and RLOO rollouts and the SFT model of
    `write_trait_sft_model` do: a prompt ending in a space would end in a lone space token there)."""
    rng = random.Random(seed)
    for i in range(n_train + n_eval):
        subject = SUBJECTS[i % len(SUBJECTS)]
        split = "train" if i < n_train else "eval"
        text = f"Question {i}: tell me about the {subject}."
        if chat:
            pid = project.add_prompt(messages=[{"role": "user", "content": text}], split=split)
        else:  # a plain completion is appended as written: the space before the answer is on one side
            pid = project.add_prompt(text if spaced_answers else text + " ", split=split)
        tail = " ".join(rng.choice(("good", "nice", "big", "small", "red", "blue")) for _ in range(3))
        lead = " " if spaced_answers and not chat else ""
        chosen = project.add_response(pid, f"{lead}sure the {subject} is {tail}.")
        rejected = project.add_response(pid, f"{lead}no the {subject} is {tail}.")
        a, b = (chosen, rejected) if i % 2 == 0 else (rejected, chosen)
        pair = project.add_pair(pid, a, b)
        project.record_label(pair, "ann", "a" if a == chosen else "b", shown_left="a")


@pytest.fixture
def trait_project(tmp_path):
    p = Project.create(tmp_path / "proj")
    add_trait_pairs(p)
    yield p
    p.close()


def write_trait_sft_model(source, out, steps: int = 30, seed: int = 0):
    """The tiny model fine-tuned (all weights, a few seconds) on both responses of trait pairs, so it answers
    'sure the X is ...' or 'no the X is ...' about equally often: the starting point of RLHF, where a reward
    model can tell the two apart and PPO/RLOO have both in their samples to learn from."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.train import data, generation
    from studio.train.logps import sequence_logps

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    examples = []
    for i in range(40):
        subject = SUBJECTS[i % len(SUBJECTS)]
        question = f"Question {i}: tell me about the {subject}."  # as add_trait_pairs(spaced_answers=True)
        for start in ("sure", "no"):
            answer = f" {start} the {subject} is good."
            examples.append(data.prompt_and_completion_ids(tokenizer, question, None, answer))
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = [examples[i] for i in torch.randperm(len(examples))[:16].tolist()]
        ids, attn, comp = generation.pack([b[0] for b in batch], [b[1] for b in batch], tokenizer.pad_token_id, "cpu")
        lp = sequence_logps(model, ids, attn, comp)
        (-(lp.logps.sum() / lp.tokens.sum())).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def trait_sft_model(tiny_model, tmp_path_factory):
    """The tiny model after a short SFT on trait responses (see write_trait_sft_model)."""
    return write_trait_sft_model(tiny_model, tmp_path_factory.mktemp("sft") / "model")


def logged_steps_at_each_checkpoint(monkeypatch, project, run_id) -> dict[int, set[int]]:
    """Which steps' metric rows are in the project file when each checkpoint is written."""
    from studio.train import checkpoint

    seen, save = {}, checkpoint.save

    def watched(folder, ckpt):
        seen[ckpt["position"]["step"]] = {step for _, step, *_ in project.metrics(run_id)}
        return save(folder, ckpt)

    monkeypatch.setattr(checkpoint, "save", watched)
    return seen

