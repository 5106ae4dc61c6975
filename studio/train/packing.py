"""The packed batch layout: each prompt runs once with its chosen and rejected completions after it, and
short pairs share a row, so a forward pass computes no padding and no prompt twice.

A pair becomes one segment `prompt + chosen + rejected`. Position ids restart at each segment and the
rejected tokens take the positions they would have right after the prompt, so rotary or learned position
embeddings see exactly what they see in the padded layout ([2B, T], `data.collate`). The attention mask
lets a token see the earlier tokens of its own segment, except that rejected tokens do not see the chosen
ones: each completion sees its prompt and itself, as in the padded layout. The first rejected token is
predicted by the last prompt token, as the first chosen one is (the same hidden state, computed once).

Segments go into rows first-fit, longest first, in rows as wide as the longest segment of the batch, so
no row costs more attention than that segment alone. The mask is a dense boolean [rows, 1, L, L] for
SDPA (on CPU the only attention with a backward over an arbitrary mask: FlexAttention has none there),
an additive one for eager attention, and a FlexAttention `BlockMask` when the model runs flex_attention
(a GPU, where it skips the masked blocks).
"""

from __future__ import annotations

import inspect

import torch

PROMPT, CHOSEN, REJECTED, PADDING = 0, 1, 2, 3
MASKED_ATTENTION = ("sdpa", "eager", "flex_attention")


def unsupported_reason(model) -> str | None:
    """Why `model` cannot run the packed layout (then the padded one is used), or None when it can."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    impl = getattr(base.config, "_attn_implementation", None)
    if impl not in MASKED_ATTENTION:
        return f"attention implementation {impl!r} takes no custom mask (packing needs sdpa, eager or flex)"
    if "position_ids" not in inspect.signature(base.get_decoder().forward).parameters:
        return f"{type(base.get_decoder()).__name__} takes no position ids"
    if any(t != "full_attention" for t in (getattr(config, "layer_types", None) or ())):
        return "the model has sliding-window or other non-full attention layers"
    if getattr(config, "use_sliding_window", False) or getattr(config, "attention_chunk_size", None):
        return "the model uses sliding-window or chunked attention"
    return None


def segment_order(lengths: list[int], width: int) -> list[list[int]]:
    """Segment indices per row: first-fit of the segments, longest first, into rows of `width` tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(width - lengths[i])
    return rows


def attention_mask(segments: torch.Tensor, branches: torch.Tensor, model=None, dtype=None):
    """The attention of a packed batch from its [rows, L] segment and branch ids: a 4D boolean mask (SDPA), an
    additive float mask (eager attention) or a BlockMask (flex_attention), for the model's attention."""
    base = model.get_base_model() if model is not None and hasattr(model, "get_base_model") else model
    impl = getattr(getattr(base, "config", None), "_attn_implementation", "sdpa")
    if impl == "flex_attention":
        return block_mask(segments, branches)
    width = segments.shape[1]
    pos = torch.arange(width, device=segments.device)
    causal = pos[None, :] <= pos[:, None]  # [q, k]
    same = segments[:, :, None] == segments[:, None, :]
    crossing = (branches[:, :, None] == REJECTED) & (branches[:, None, :] == CHOSEN)
    # every token sees itself, so a padding row's softmax has something to normalise (no NaN to propagate)
    allowed = (causal & same & ~crossing) | torch.eye(width, dtype=torch.bool, device=segments.device)
    allowed = allowed[:, None]
    if impl == "eager":
        dtype = dtype or base.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=segments.device).masked_fill_(
            ~allowed, torch.finfo(dtype).min)
    return allowed


def block_mask(segments: torch.Tensor, branches: torch.Tensor):
    """The same mask as a FlexAttention BlockMask (fully masked blocks are skipped, not computed)."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q, k):
        same = segments[b, q] == segments[b, k]
        crossing = (branches[b, q] == REJECTED) & (branches[b, k] == CHOSEN)
        return ((k <= q) & same & ~crossing) | (q == k)

    n, width = segments.shape
    return create_block_mask(mask_mod, n, None, width, width, device=segments.device)
