"""Snapshot rows to batches: chat templates, EOS, truncation that keeps completions, masks, one batch."""

import pytest
import torch

from studio.train import data


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_chat_prompt_goes_through_the_template_with_generation_prompt(tokenizer):
    messages = [{"role": "user", "content": "hello friend"}]
    ids = data.prompt_token_ids(tokenizer, "user: hello friend", messages)
    text = tokenizer.decode(ids)
    assert text.startswith("<|user|>hello friend<|eos|>")
    assert text.endswith("<|assistant|>")  # the model answers right after this


def test_a_chat_prompt_ending_in_an_assistant_turn_is_continued_not_answered(tokenizer):
    messages = [{"role": "user", "content": "hello friend"}, {"role": "assistant", "content": "well"}]
    text = tokenizer.decode(data.prompt_token_ids(tokenizer, "", messages))
    # the completion goes on from "well", inside the assistant's turn: no end of turn, no new turn opened
    assert text.endswith("<|assistant|>well")
    assert text.count("<|assistant|>") == 1


def test_plain_prompt_is_concatenated_and_completion_ends_with_eos(tokenizer):
    [ex] = data.tokenize_rows([{"pair_id": 1, "prompt_id": 1, "prompt": "Tell me about the cat.",
                                "messages": None, "chosen": "sure it is nice.", "rejected": "no."}],
                              tokenizer, max_length=128, max_prompt_length=64)
    assert tokenizer.decode(ex.prompt_ids + ex.chosen_ids) == "Tell me about the cat. sure it is nice.<|eos|>"
    assert ex.chosen_ids[-1] == tokenizer.eos_token_id
    assert ex.rejected_ids[-1] == tokenizer.eos_token_id


def test_truncation_keeps_the_prompt_end_and_never_drops_a_completion():
    prompt, chosen, rejected = list(range(100)), [1000 + i for i in range(30)], [2000 + i for i in range(5)]
    p, c, r = data.truncate(prompt, chosen, rejected, max_length=64, max_prompt_length=40, mode="keep_end")
    # the prompt gives way (keep_end: the turns nearest the completion stay) so chosen fits whole
    assert p == list(range(66, 100)) and c == chosen and r == rejected
    p, _, _ = data.truncate(prompt, chosen, rejected, 64, 40, mode="keep_start")
    assert p == list(range(34))
    # a completion longer than half the budget keeps half, the prompt the other half
    long = [3000 + i for i in range(50)]
    p, c, r = data.truncate(prompt, long, rejected, 64, 40)
    assert p == list(range(68, 100)) and c == long[:32] and r == rejected
    # a prompt cap as long as max_length would leave no room: completions still keep half the budget
    p, c, r = data.truncate(prompt, chosen, rejected, max_length=32, max_prompt_length=512)
    assert len(p) + len(c) <= 32 and len(c) == 16 and len(r) == 5
    p, c, r = data.truncate([1, 2], [3], [4, 5], 64, 40)
    assert (p, c, r) == ([1, 2], [3], [4, 5])


def test_collate_puts_chosen_then_rejected_in_one_right_padded_batch():
    exs = [data.Example(7, 1, [1, 2, 3], [4, 5], [6]), data.Example(8, 2, [7], [8], [9, 10, 11])]
    b = data.collate(exs, pad_id=0)
    assert b.input_ids.tolist() == [[1, 2, 3, 4, 5], [7, 8, 0, 0, 0], [1, 2, 3, 6, 0], [7, 9, 10, 11, 0]]
    assert b.completion_mask.tolist() == [[0, 0, 0, 1, 1], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [0, 1, 1, 1, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]
    assert b.pair_ids == [7, 8] and b.n_pairs == 2


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    assert data.epoch_order(10, 3, 1) == data.epoch_order(10, 3, 1)
    assert data.epoch_order(10, 3, 1) != data.epoch_order(10, 3, 2)
    assert sorted(data.epoch_order(10, 3, 1)) == list(range(10))


def test_split_eval_uses_the_eval_split_or_a_seeded_share():
    rows = [{"pair_id": i, "split": "train"} for i in range(10)]
    train, ev = data.split_eval(rows, 0.2, seed=0)
    assert len(train) == 8 and len(ev) == 2
    assert data.split_eval(rows, 0.2, seed=0) == (train, ev)
    rows.append({"pair_id": 99, "split": "eval"})
    train, ev = data.split_eval(rows, 0.2, seed=0)
    assert len(train) == 10 and [r["pair_id"] for r in ev] == [99]


def test_chunked_logps_equal_full_log_softmax_with_gradients(tiny_model):
    from transformers import AutoModelForCausalLM

    from studio.train.logps import sequence_logps

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(6, 800, (4, 12), generator=g)
    attn = torch.ones_like(ids)
    attn[1, 9:] = 0
    comp = torch.zeros_like(ids)
    comp[:, 5:] = 1
    comp[1, 9:] = 0
    out = sequence_logps(model, ids, attn, comp, stats=True, chunk=7)  # chunks that straddle sequences
    out.logps.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    lp = logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    mask = comp[:, 1:].float()
    expected = (lp * mask).sum(1)
    expected.sum().backward()
    torch.testing.assert_close(out.logps, expected, atol=1e-5, rtol=1e-5)
    assert out.tokens.tolist() == [7, 4, 7, 7]
    entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
    torch.testing.assert_close(out.entropy_sum, (entropy * mask).sum(1).detach(), atol=1e-4, rtol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def bos_tokenizer():
    """The tiny tokenizer made to behave like Llama's: BOS added to every text, and a template that writes it."""
    from tokenizers import processors

    from studio.train import tiny

    tok = tiny.build_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", tok.bos_token_id)])
    tok.chat_template = "{{ bos_token }}" + tiny.CHAT_TEMPLATE
    return tok


def test_bos_appears_once_for_chat_and_plain_prompts(bos_tokenizer):
    tok, bos = bos_tokenizer, bos_tokenizer.bos_token_id
    chat = data.prompt_token_ids(tok, "", [{"role": "user", "content": "hello friend"}])
    plain = data.prompt_token_ids(tok, "hello friend", None)
    assert chat[0] == bos and chat.count(bos) == 1  # the template writes it; tokenizing adds no second one
    assert plain[0] == bos and plain.count(bos) == 1


def test_keep_end_truncation_keeps_the_bos_in_front(bos_tokenizer):
    rows = [{"pair_id": 1, "prompt_id": 1, "prompt": "the cat " * 40, "messages": None, "chosen": "sure",
             "rejected": "no"}]
    [end] = data.tokenize_rows(rows, bos_tokenizer, max_length=64, max_prompt_length=16, truncation="keep_end")
    full = data.prompt_token_ids(bos_tokenizer, rows[0]["prompt"], None)
    assert len(end.prompt_ids) == 16
    assert end.prompt_ids == [bos_tokenizer.bos_token_id, *full[-15:]]  # BOS, then the end next to the answer
    [start] = data.tokenize_rows(rows, bos_tokenizer, 64, 16, truncation="keep_start")
    assert start.prompt_ids == full[:16]
    # without a BOS in front, keep_end keeps the plain end
    assert data.truncate(list(range(10, 30)), [1], [2], 64, 5, bos_id=0) == (list(range(25, 30)), [1], [2])


def test_chat_without_a_template_falls_back_to_plain_text_with_a_space(tokenizer, caplog):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    rows = [{"pair_id": 1, "prompt_id": 1, "prompt": "user: hello", "chosen": "sure it is.", "rejected": "no.",
             "messages": [{"role": "user", "content": "hello friend"}]}]
    with caplog.at_level("WARNING", logger="studio.train"):
        [ex] = data.tokenize_rows(rows, plain, max_length=128, max_prompt_length=64)
    assert "no chat template" in caplog.text
    # the answer is separated from 'assistant:' as any plain prompt's completion is
    assert plain.decode(ex.prompt_ids + ex.chosen_ids) == "user: hello friend\n\nassistant: sure it is.<|eos|>"


def test_tokenizer_padding_side_and_missing_pad_token_do_not_change_batches(tiny_model):
    from transformers import AutoTokenizer

    from studio.core.configs import DPOConfig
    from studio.train.model import load_policy

    rows = [{"pair_id": i, "prompt_id": i, "prompt": f"Question {i}: the cat" + " big" * i, "messages": None,
             "chosen": "sure.", "rejected": "no it is" + " red" * i} for i in range(3)]
    right = AutoTokenizer.from_pretrained(tiny_model)
    left = AutoTokenizer.from_pretrained(tiny_model, padding_side="left")
    a = data.collate(data.tokenize_rows(rows, right, 64, 32), right.pad_token_id)
    b = data.collate(data.tokenize_rows(rows, left, 64, 32), left.pad_token_id)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.completion_mask, b.completion_mask)
    # every completion ends with exactly one EOS, inside the completion mask
    eos = right.eos_token_id
    for row, mask in zip(a.input_ids, a.completion_mask, strict=True):
        completion = row[mask.bool()].tolist()
        assert completion[-1] == eos and completion.count(eos) == 1

    # a tokenizer without a pad token pads with EOS; pad positions are masked, so log-probs do not change
    no_pad = AutoTokenizer.from_pretrained(tiny_model)
    no_pad.pad_token = None
    import shutil
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(tiny_model, folder)
        no_pad.save_pretrained(folder)
        tok, model = load_policy(folder, DPOConfig(), "no")
    assert tok.pad_token_id == eos
    c = data.collate(data.tokenize_rows(rows, tok, 64, 32), tok.pad_token_id)
    assert torch.equal(c.attention_mask, a.attention_mask) and torch.equal(c.completion_mask, a.completion_mask)
    from studio.train.logps import sequence_logps

    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(sequence_logps(model, c.input_ids, c.attention_mask, c.completion_mask).logps,
                                   sequence_logps(model, a.input_ids, a.attention_mask, a.completion_mask).logps)
