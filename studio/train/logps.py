"""Per-sequence completion log-probs without materialising [batch, seq, vocab] logits.

The decoder runs on the whole batch, but the lm_head is applied only at the positions that predict a
completion token, and the log-softmax is taken via logsumexp over chunks of those rows. With a plain
linear lm_head (the usual case, frozen under LoRA) a custom autograd function recomputes each chunk's
logits in the backward pass, so even the completion-only logits are never stored for backward: memory
stays O(chunk x vocab) instead of O(tokens x vocab), which matters with 150k-token vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from studio.train.preflight import logits_multiplier

CHUNK_ROWS = 1024


@dataclass
class SeqLogps:
    """Per-sequence results of one forward over a [N, T] batch."""

    logps: torch.Tensor  # [N] sum of completion-token log-probs (differentiable)
    tokens: torch.Tensor  # [N] completion tokens per sequence (float)
    entropy_sum: torch.Tensor | None = None  # [N] summed per-token entropy (detached), when asked
    logits_sum: torch.Tensor | None = None  # [N] summed per-token mean logit (detached), when asked
    token_logps: torch.Tensor | None = None  # [K] per-token log-probs in completion order, when asked


def _chunk_stats(logits: torch.Tensor, targets: torch.Tensor, stats: bool):
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)
    target = logits.gather(-1, targets[:, None]).squeeze(-1)
    if not stats:
        return target - lse, lse, None, None
    with torch.no_grad():
        probs = torch.softmax(logits, dim=-1)
        entropy = lse - (probs * logits).sum(-1)
        mean_logit = logits.mean(-1)
    return target - lse, lse, entropy, mean_logit


class _LinearLogProbs(torch.autograd.Function):
    """log softmax(h W^T + b)[target] per row, chunked; backward recomputes the chunk logits."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk, stats, scale):
        n = hidden.shape[0]
        out = hidden.new_empty(n, dtype=torch.float32)
        lses = hidden.new_empty(n, dtype=torch.float32)
        ent = hidden.new_empty(n, dtype=torch.float32) if stats else None
        mlog = hidden.new_empty(n, dtype=torch.float32) if stats else None
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            logits = nn.functional.linear(hidden[s:e], weight, bias)
            if scale != 1.0:
                logits = logits * scale
            lp, lse, en, ml = _chunk_stats(logits, targets[s:e], stats)
            out[s:e], lses[s:e] = lp, lse
            if stats:
                ent[s:e], mlog[s:e] = en, ml
        ctx.save_for_backward(hidden, weight, bias, targets, lses)
        ctx.chunk, ctx.scale = chunk, scale
        ctx.mark_non_differentiable(*(t for t in (ent, mlog) if t is not None))
        return out, ent, mlog

    @staticmethod
    def backward(ctx, grad_out, _g_ent, _g_mlog):
        hidden, weight, bias, targets, lses = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if (need_b and bias is not None) else None
        for s in range(0, hidden.shape[0], ctx.chunk):
            e = min(hidden.shape[0], s + ctx.chunk)
            logits = nn.functional.linear(hidden[s:e], weight, bias).float() * ctx.scale
            # d logp[target] / d logits = onehot(target) - softmax(logits), times the scale of the logits
            g = torch.exp(logits - lses[s:e, None]).neg_()
            g.scatter_add_(-1, targets[s:e, None], torch.ones_like(g[:, :1]))
            g.mul_(grad_out[s:e, None] * ctx.scale)
            if need_h:
                grad_h[s:e] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
            if need_w:
                grad_w += g.t() @ hidden[s:e].float()
            if grad_b is not None:
                grad_b += g.sum(0)
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        if grad_b is not None:
            grad_b = grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None


def _head_logprobs(lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, stats: bool,
                   chunk: int = CHUNK_ROWS, temperature: float = 1.0):
    scale = 1.0 / temperature
    if type(lm_head) is nn.Linear:
        return _LinearLogProbs.apply(hidden, lm_head.weight, lm_head.bias, targets, chunk, stats, scale)
    # A wrapped head (e.g. LoRA on lm_head): chunked under plain autograd, still completion rows only.
    parts = [_chunk_stats(lm_head(hidden[s:s + chunk]) * scale, targets[s:s + chunk], stats)
             for s in range(0, hidden.shape[0], chunk)]
    lp = torch.cat([p[0] for p in parts])
    if not stats:
        return lp, None, None
    return lp, torch.cat([p[2] for p in parts]), torch.cat([p[3] for p in parts])


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The transformer body and the lm_head of a causal LM, through a PEFT wrapper if there is one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def sequence_logps(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   completion_mask: torch.Tensor, stats: bool = False, per_token: bool = False,
                   chunk: int = CHUNK_ROWS, temperature: float = 1.0) -> SeqLogps:
    """Sum of log p(token | prefix) over each sequence's completion tokens, plus token counts.

    `completion_mask[i, t] = 1` marks token t of row i as a completion token (its log-prob counts).
    `temperature` divides the logits first: the log-probs of what `generation.generate` sampled at that
    temperature (PPO's ratios must use the distribution the rollouts came from)."""
    decoder, head = decoder_and_head(model)
    # the model's own forward scales the lm_head's output (Cohere, Granite, Falcon-H1): so does this head
    if getattr(model, "config", None) is not None:
        temperature = temperature / logits_multiplier(model.config)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    # position t predicts token t + 1
    target_mask = completion_mask[:, 1:].bool()
    rows = hidden[:, :-1][target_mask]  # [K, H], completion positions only
    targets = input_ids[:, 1:][target_mask]
    token_lp, entropy, mean_logit = _head_logprobs(head, rows, targets, stats, chunk, temperature)
    n, device = input_ids.shape[0], input_ids.device
    seq_index = torch.arange(n, device=device)[:, None].expand_as(target_mask)[target_mask]
    logps = torch.zeros(n, device=device, dtype=torch.float32).index_add(0, seq_index, token_lp)
    tokens = target_mask.sum(1).float()
    out = SeqLogps(logps, tokens)
    if stats:
        z = torch.zeros(n, device=device, dtype=torch.float32)
        out.entropy_sum = z.index_add(0, seq_index, entropy)
        out.logits_sum = z.clone().index_add(0, seq_index, mean_logit)
    if per_token:
        out.token_logps = token_lp
    return out
