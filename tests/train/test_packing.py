"""The packed layout: each prompt once with both completions after it, pairs sharing rows without padding,
and the same loss, rewards and LoRA gradients as TRL's padded layout."""

import torch

from studio.train import data, dpo, packing
from studio.train.model import PolicyLogps
from tests.train.test_dpo import lora_model


def _examples():
    g = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(5, 900, (n,), generator=g).tolist()

    # lengths 15, 12, 20, 3, 16: first-fit, longest first, into rows of 20 tokens: [2], [4, 3], [0], [1]
    shapes = [(5, 3, 7), (2, 9, 1), (12, 4, 4), (1, 1, 1), (6, 2, 8)]
    return [data.Example(10 + i, i, ids(p), ids(c), ids(r)) for i, (p, c, r) in enumerate(shapes)]


def test_pack_puts_each_prompt_once_and_pairs_into_shared_rows():
    exs = _examples()
    b = data.pack(exs, pad_id=0)
    assert b.input_ids.shape == (4, 20)  # 57 real tokens in 80 slots; the padded layout takes 10 x 16 = 160
    assert b.attention_mask.sum() == sum(len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in exs)
    assert b.n_pairs == 5 and b.pair_ids == [10, 11, 12, 13, 14]
    assert b.n_tokens == data.collate(exs, 0).attention_mask.sum()  # tokens/s counts what the padded layout holds
    # pair 4 (16 tokens) shares row 1 with pair 3 (3 tokens): positions restart, rejected follows the prompt
    row = 1
    assert b.input_ids[row, :16].tolist() == exs[4].prompt_ids + exs[4].chosen_ids + exs[4].rejected_ids
    assert b.position_ids[row, :16].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9, 10, 11, 12, 13]
    assert b.branches[row, :16].tolist() == [0] * 6 + [1] * 2 + [2] * 8
    assert b.position_ids[row, 16:19].tolist() == [0, 1, 1] and b.segments[row, 16:].tolist() == [1, 1, 1, -1]
    # the head scores, per sequence, exactly its completion tokens, each from the position before it (the first
    # rejected token from the last prompt token, shared with the chosen one)
    flat = b.input_ids.reshape(-1)
    assert b.head.targets.tolist() == [t for e in exs for t in e.chosen_ids] + [t for e in exs for t in e.rejected_ids]
    assert b.head.tokens.tolist() == [len(e.chosen_ids) for e in exs] + [len(e.rejected_ids) for e in exs]
    first_rejected = b.head.index[b.head.seq == 5 + 4][0]
    assert first_rejected == row * 20 + 5 and flat[first_rejected] == exs[4].prompt_ids[-1]


def test_packed_mask_keeps_pairs_apart_and_rejected_blind_to_chosen():
    b = data.pack(_examples(), pad_id=0)
    mask = packing.attention_mask(b.segments, b.branches)[1, 0]  # row 1: pair (6, 2, 8), pair (1, 1, 1), padding
    prompt, chosen, rejected = range(0, 6), range(6, 8), range(8, 16)
    assert all(mask[q, k] for q in rejected for k in prompt) and not any(mask[q, k] for q in rejected for k in chosen)
    assert all(mask[q, k] for q in chosen for k in prompt) and all(mask[q, k] for q in rejected for k in rejected
                                                                   if k <= q)
    assert not mask[5, 6] and not mask[16, 15] and not mask[17, 0]  # causal; the second pair sees only itself
    assert mask[17, 16] and mask[19, 19] and not mask[19, 18]  # padding sees only itself (no empty softmax row)


def test_packed_layout_gives_the_padded_layouts_loss_rewards_and_lora_gradients(tiny_model):
    model, config = lora_model(tiny_model)
    exs = _examples()
    results = {}
    for layout in ("padded", "packed"):
        model.zero_grad()
        stats = dpo.step_stats(torch.device("cpu"))
        out = dpo.dpo_forward(PolicyLogps(model), model, data.make_batch(exs, 0, layout), config, stats=stats)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results[layout] = (out.loss.detach(), out.chosen_rewards, out.rejected_rewards, grads, stats.read())
    padded, packed = results["padded"], results["packed"]
    for a, b in zip(padded[:3], packed[:3], strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert abs(padded[2] - padded[1]).max() > 1e-3  # the adapter moved the rewards: not a trivial zero
    for name, g in padded[3].items():
        torch.testing.assert_close(packed[3][name], g, atol=1e-5, rtol=1e-4)
    for name, value in padded[4].items():  # entropy, logits, log-ratios: the same statistics
        assert abs(packed[4][name] - value) <= 1e-4 * max(1.0, abs(value)), name


def test_models_whose_attention_takes_no_mask_use_the_padded_layout(tiny_model):
    model, _ = lora_model(tiny_model)
    assert packing.unsupported_reason(model) is None
    model.get_base_model().config._attn_implementation = "flash_attention_2"
    assert "takes no custom mask" in packing.unsupported_reason(model)
    model.get_base_model().config._attn_implementation = "sdpa"
    model.get_base_model().config.layer_types = ["full_attention", "sliding_attention"]
    assert "sliding-window" in packing.unsupported_reason(model)
