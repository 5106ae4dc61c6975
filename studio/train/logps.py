"""Per-sequence completion log-probs from a lean lm_head: completion rows only, the vocabulary in tiles.

The decoder runs on the whole batch; the lm_head is applied only to the hidden states that predict a
completion token, picked by index (`HeadRows`, built on the host where the counts are known, so nothing
waits for the device to say how many rows there are). Each block of rows is projected onto the
vocabulary one tile at a time with a running log-sum-exp, and the entropy and the mean logit are
running sums too, so a [rows, vocab] float32 logits tensor never exists: the head's transient memory is
one [row_tile, vocab_tile] tile (see `head_transient_bytes`), at most 0.13 GiB at any vocabulary. With a
plain linear lm_head (the usual case, frozen under LoRA) a custom autograd function recomputes each tile
in the backward pass. On a CUDA GPU with liger-kernel installed (the `gpu` extra) the passes that need
no statistics (the reference pass, sampling) use its fused linear cross-entropy instead.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

CHUNK_ROWS = 4096  # rows per projection block: a large M keeps the GEMMs efficient and reads W once per block
TILE_ELEMENTS = 1 << 24  # elements of one [rows, vocab] tile at most (64 MiB in float32)
# vocabulary columns of a tile at most: 8 bytes per element then never exceed the 2 bytes x 32,768 columns per
# row of TRL's bf16 projection tile, whatever the number of rows
VOCAB_TILE = 8192
# The head's kernel: 'auto' (liger-kernel's fused head on CUDA when installed and no statistics are asked for,
# else the plain-torch tiles), 'plain' or 'liger'. An environment setting, for benchmarks and bug hunts.
KERNEL_ENV = "STUDIO_HEAD_KERNEL"


@dataclass
class SeqLogps:
    """Per-sequence results of one forward over a batch of sequences."""

    logps: torch.Tensor  # [N] sum of completion-token log-probs (differentiable)
    tokens: torch.Tensor  # [N] completion tokens per sequence (float)
    entropy_sum: torch.Tensor | None = None  # [N] summed per-token entropy (detached), when asked
    logits_sum: torch.Tensor | None = None  # [N] summed per-token mean logit (detached), when asked
    token_logps: torch.Tensor | None = None  # [K] per-token log-probs in completion order, when asked


@dataclass
class HeadRows:
    """Which hidden states the lm_head scores: K rows of the flattened [rows * width] decoder output.

    Built on the host by whoever lays out the batch (they know every count), so the head selects its rows
    with `index_select` and never asks the device how many there are."""

    index: torch.Tensor  # [K] long: position in the flattened hidden states that predicts the token
    targets: torch.Tensor  # [K] long: the token predicted there
    seq: torch.Tensor  # [K] long: the sequence (0..n_seqs-1) the token belongs to
    tokens: torch.Tensor  # [n_seqs] float: completion tokens per sequence
    n_seqs: int

    def to(self, device: torch.device | str, copy=None) -> HeadRows:
        move = copy or (lambda t, d: t.to(d))
        return HeadRows(move(self.index, device), move(self.targets, device), move(self.seq, device),
                        move(self.tokens, device), self.n_seqs)

    @staticmethod
    def from_lists(index: list[int], targets: list[int], seq: list[int], n_seqs: int) -> HeadRows:
        seq_t = torch.tensor(seq, dtype=torch.long)
        return HeadRows(torch.tensor(index, dtype=torch.long), torch.tensor(targets, dtype=torch.long), seq_t,
                        torch.bincount(seq_t, minlength=n_seqs).float(), n_seqs)

    @staticmethod
    def from_completion_mask(input_ids: torch.Tensor, completion_mask: torch.Tensor) -> HeadRows:
        """The rows of a right-padded [N, T] batch: position t predicts token t + 1 wherever that token is a
        completion token. Finding them asks the device for their number (one sync); batch layouts built by
        `data.collate` carry their rows instead."""
        n, width = input_ids.shape
        target_mask = completion_mask[:, 1:].bool()
        seq, pos = target_mask.nonzero(as_tuple=True)
        return HeadRows(seq * width + pos, input_ids[seq, pos + 1], seq, target_mask.sum(1).float(), n)


def head_tiles(rows: int, vocab: int) -> tuple[int, int]:
    """(row tile, vocab tile) of the plain head for `rows` scored rows: as many rows as CHUNK_ROWS allows, and
    vocabulary columns so that one tile holds at most TILE_ELEMENTS (at most VOCAB_TILE, a multiple of 128)."""
    row_tile = max(1, min(rows, CHUNK_ROWS))
    vocab_tile = max(128, min(VOCAB_TILE, TILE_ELEMENTS // row_tile // 128 * 128))
    return row_tile, min(vocab, vocab_tile)


def head_transient_bytes(rows: int, vocab: int, hidden: int, compute_bytes: int) -> dict[str, int]:
    """The plain head's memory beyond its inputs, forward and backward, from its tile shapes (the model the
    benchmark prints; tests/train/test_logps.py measures it in float32).

    Forward: the float32 logits of a tile and their exponentials, 8 bytes per tile element (a half-precision
    tile exists only while it is converted, before the exponentials). Backward: the recomputed float32 tile
    turned into its gradient in place, plus, with half-precision weights on a GPU, that gradient in their
    dtype for the GEMMs (on a CPU the weight tile is cast to float32 instead, vocab_tile x hidden x 4 more).
    The float32 gradient of the scored rows (rows x hidden x 4) is the head's output, counted apart, as are
    the per-row running sums (a few rows x 4 bytes)."""
    r, v = head_tiles(rows, vocab)
    tile = r * v
    per_row = 8 * rows * 4  # running max and sums, log-sum-exp, target logit, entropy, mean logit, results
    return {"forward": 8 * tile + per_row, "backward": (4 + (compute_bytes if compute_bytes < 4 else 0)) * tile,
            "grad_hidden": rows * hidden * 4, "row_tile": r, "vocab_tile": v}


def _logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """One tile of float32 logits (the projection runs in the autocast / weight dtype)."""
    z = nn.functional.linear(h, weight, bias).float()
    return z.mul_(scale) if scale != 1.0 else z


class _TiledLinearLogProbs(torch.autograd.Function):
    """log softmax(scale * (h W^T + b))[target] per row, over row blocks and vocabulary tiles with a running
    log-sum-exp; with `stats`, the entropy and mean logit of each row as running sums (no gradient). The
    backward recomputes each tile's logits and turns them into their gradient in place."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk, stats, scale, vocab_tile):
        n, vocab = hidden.shape[0], weight.shape[0]
        f32 = dict(device=hidden.device, dtype=torch.float32)
        lse = torch.empty(n, **f32)
        target_logit = torch.empty(n, **f32)
        entropy = torch.empty(n, **f32) if stats else None
        mean_logit = torch.empty(n, **f32) if stats else None
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            h, tgt = hidden[s:e], targets[s:e]
            run_max = torch.full((e - s,), -math.inf, **f32)
            sum_exp = torch.zeros(e - s, **f32)
            sum_exp_z = torch.zeros(e - s, **f32) if stats else None
            sum_z = torch.zeros(e - s, **f32) if stats else None
            tl = target_logit[s:e]
            for v0 in range(0, vocab, vocab_tile):
                v1 = min(vocab, v0 + vocab_tile)
                z = _logits(h, weight[v0:v1], None if bias is None else bias[v0:v1], scale)
                local = tgt - v0
                hit = (local >= 0) & (local < v1 - v0)
                picked = z.gather(1, local.clamp(0, v1 - v0 - 1)[:, None]).squeeze(1)
                tl.copy_(picked if v0 == 0 else torch.where(hit, picked, tl))
                new_max = torch.maximum(run_max, z.amax(1))
                rescale = torch.exp(run_max - new_max)
                if stats:
                    sum_z += z.sum(1)
                ez = z.sub(new_max[:, None]).exp_()
                sum_exp.mul_(rescale).add_(ez.sum(1))
                if stats:
                    # sum_j e^(z_j - m) z_j, a row-wise dot product (no third tile)
                    sum_exp_z.mul_(rescale).add_(torch.bmm(ez[:, None, :], z[:, :, None]).view(-1))
                run_max = new_max
                del z, ez
            lse[s:e] = run_max + sum_exp.log()
            if stats:
                entropy[s:e] = lse[s:e] - sum_exp_z / sum_exp
                mean_logit[s:e] = sum_z / vocab
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk, ctx.scale, ctx.vocab_tile = chunk, scale, vocab_tile
        ctx.mark_non_differentiable(*(t for t in (entropy, mean_logit) if t is not None))
        return target_logit - lse, entropy, mean_logit

    @staticmethod
    def backward(ctx, grad_out, _g_ent, _g_mlog):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        n, vocab = hidden.shape[0], weight.shape[0]
        grad_h = torch.zeros(hidden.shape, device=hidden.device, dtype=torch.float32) if need_h else None
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros(bias.shape, device=bias.device, dtype=torch.float32) \
            if (need_b and bias is not None) else None
        for s in range(0, n, ctx.chunk):
            e = min(n, s + ctx.chunk)
            h, tgt = hidden[s:e], targets[s:e]
            g_row = grad_out[s:e].float() * ctx.scale
            for v0 in range(0, vocab, ctx.vocab_tile):
                v1 = min(vocab, v0 + ctx.vocab_tile)
                w = weight[v0:v1]
                # d logp[target] / d logits = onehot(target) - softmax(logits), times the scale of the logits
                g = _logits(h, w, None if bias is None else bias[v0:v1], ctx.scale)
                g.sub_(lse[s:e, None]).exp_().mul_(-g_row[:, None])
                local = tgt - v0
                hit = (local >= 0) & (local < v1 - v0)
                g.scatter_add_(1, local.clamp(0, v1 - v0 - 1)[:, None], torch.where(hit, g_row, 0.0)[:, None])
                if grad_h is not None:
                    _add_matmul(grad_h[s:e], g, w)
                if grad_w is not None:
                    _add_matmul(grad_w[v0:v1], g.t(), h)
                if grad_b is not None:
                    grad_b[v0:v1] += g.sum(0)
                del g
        return (None if grad_h is None else grad_h.to(hidden.dtype),
                None if grad_w is None else grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype), None, None, None, None, None)


def _add_matmul(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b into a float32 accumulator. On a GPU with half-precision weights the product runs in the
    weights' dtype with a float32 output (rounding each tile's product to bf16 first biases training)."""
    if acc.device.type == "cuda" and b.dtype in (torch.float16, torch.bfloat16):
        try:
            torch.addmm(acc, a.to(b.dtype), b, out_dtype=torch.float32, out=acc)
            return
        except (TypeError, RuntimeError):
            pass
    acc.addmm_(a.float(), b.float())


def _head_logprobs(lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, stats: bool,
                   chunk: int = CHUNK_ROWS, temperature: float = 1.0, vocab_tile: int | None = None):
    """(per-row log-probs, entropy or None, mean logit or None) of `targets` under `lm_head(hidden) / T`."""
    scale = 1.0 / temperature
    if type(lm_head) is nn.Linear:
        if fused_kernel(hidden.device, stats, lm_head.bias) == "liger":
            return _liger_logprobs(hidden, lm_head.weight, targets, scale), None, None
        rows, vt = head_tiles(min(chunk, hidden.shape[0]), lm_head.weight.shape[0])
        return _TiledLinearLogProbs.apply(hidden, lm_head.weight, lm_head.bias, targets, rows, stats, scale,
                                          vocab_tile or vt)
    # A wrapped head (e.g. LoRA on lm_head): row blocks under plain autograd, still completion rows only.
    parts = []
    for s in range(0, hidden.shape[0], chunk):
        logits = lm_head(hidden[s:s + chunk]).float() * scale
        lse = torch.logsumexp(logits, dim=-1)
        lp = logits.gather(-1, targets[s:s + chunk, None]).squeeze(-1) - lse
        if stats:
            with torch.no_grad():
                entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(-1)
                parts.append((lp, entropy, logits.mean(-1)))
        else:
            parts.append((lp, None, None))
    lp = torch.cat([p[0] for p in parts])
    if not stats:
        return lp, None, None
    return lp, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


# ---------------------------------------------------------------------------------------------- fused kernel


def fused_kernel(device: torch.device, stats: bool, bias: torch.Tensor | None) -> str:
    """'liger' where liger-kernel's fused linear cross-entropy serves (a CUDA device, the package installed,
    no statistics asked for: it computes log-probs only, and no lm_head bias), else 'plain'.
    STUDIO_HEAD_KERNEL=plain forces the plain tiles; =liger asks for liger wherever it can run."""
    choice = os.environ.get(KERNEL_ENV, "auto")
    if choice == "plain" or stats or bias is not None or device.type != "cuda":
        return "plain"
    return "liger" if _liger() is not None else "plain"


def _liger():
    try:
        from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction
    except ImportError:
        return None
    return LigerFusedLinearCrossEntropyFunction


def _liger_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
    """log p(target) per row from liger's fused linear cross-entropy (reduction 'none': -log p, with a backward
    that takes per-row gradients). A temperature scales the rows: (h / T) W^T = (h W^T) / T."""
    fn = _liger()
    h = hidden * scale if scale != 1.0 else hidden
    nll = fn.apply(h, weight, targets, None, None, -100, 0.0, 0.0, "none")[0]
    return -nll.float()


# ---------------------------------------------------------------------------------------------- the whole pass


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The transformer body and the lm_head of a causal LM, through a PEFT wrapper if there is one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def completion_logps(model: nn.Module, input_ids: torch.Tensor, rows: HeadRows,
                     attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                     stats: bool = False, per_token: bool = False, chunk: int = CHUNK_ROWS,
                     temperature: float = 1.0) -> SeqLogps:
    """Sum of log p(token | prefix) over each sequence's completion tokens: the decoder on `input_ids`
    (`attention_mask` 2D padding mask or a 4D mask of a packed layout, with its `position_ids`), the head on
    `rows` only. No step here waits for the device."""
    decoder, head = decoder_and_head(model)
    softcap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    if softcap:
        raise NotImplementedError("models with final_logit_softcapping (Gemma 2) are not supported yet")
    kwargs = {} if position_ids is None else {"position_ids": position_ids}
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs).last_hidden_state
    picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows.index)  # [K, H], completion rows only
    token_lp, entropy, mean_logit = _head_logprobs(head, picked, rows.targets, stats, chunk, temperature)
    n, device = rows.n_seqs, input_ids.device
    zeros = torch.zeros(n, device=device, dtype=torch.float32)
    out = SeqLogps(zeros.index_add(0, rows.seq, token_lp), rows.tokens.float())
    if stats:
        out.entropy_sum = zeros.index_add(0, rows.seq, entropy)
        out.logits_sum = zeros.index_add(0, rows.seq, mean_logit)
    if per_token:
        out.token_logps = token_lp
    return out


def sequence_logps(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   completion_mask: torch.Tensor, stats: bool = False, per_token: bool = False,
                   chunk: int = CHUNK_ROWS, temperature: float = 1.0) -> SeqLogps:
    """Sum of log p(token | prefix) over each sequence's completion tokens of a right-padded [N, T] batch.

    `completion_mask[i, t] = 1` marks token t of row i as a completion token (its log-prob counts).
    `temperature` divides the logits first: the log-probs of what `generation.generate` sampled at that
    temperature (PPO's ratios must use the distribution the rollouts came from). Finding the rows from the
    mask costs one sync; `completion_logps` takes rows laid out on the host instead."""
    rows = HeadRows.from_completion_mask(input_ids, completion_mask)
    return completion_logps(model, input_ids, rows, attention_mask, stats=stats, per_token=per_token, chunk=chunk,
                            temperature=temperature)
