"""The lean lm_head: tiled log-probs and statistics equal the full log-softmax with its gradients, its memory is
one tile (measured at a 152k vocabulary), nothing in a DPO step asks the device for a count, and the fused
kernel is used only where it can serve."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from studio.bench.tensor_memory import TensorMemory
from studio.train import data, dpo, logps
from studio.train.logps import _head_logprobs, head_transient_bytes


def _full(head: torch.nn.Linear, hidden, targets, temperature=1.0):
    logits = head(hidden).float() / temperature
    lp = logits.log_softmax(-1)
    return lp.gather(-1, targets[:, None]).squeeze(-1), -(lp.exp() * lp).sum(-1), logits.mean(-1)


@pytest.mark.parametrize("trainable_head", [False, True])
def test_tiles_over_rows_and_vocabulary_equal_the_full_log_softmax_with_gradients(trainable_head):
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 23)  # with a bias; 23 columns in tiles of 7: the last tile is narrower
    head.requires_grad_(trainable_head)
    hidden = torch.randn(10, 8, requires_grad=True)
    targets = torch.tensor([0, 6, 7, 13, 14, 20, 21, 22, 3, 9])  # at both edges of every tile
    weights = torch.randn(10)  # a gradient that differs per row, as the DPO loss gives
    lp, entropy, mean_logit = _head_logprobs(head, hidden, targets, stats=True, chunk=3, temperature=0.7,
                                             vocab_tile=7)
    (lp * weights).sum().backward()
    ours = [hidden.grad.clone()] + ([head.weight.grad.clone(), head.bias.grad.clone()] if trainable_head else [])
    hidden.grad = None
    head.zero_grad()
    want_lp, want_entropy, want_mean = _full(head, hidden, targets, temperature=0.7)
    (want_lp * weights).sum().backward()
    want = [hidden.grad] + ([head.weight.grad, head.bias.grad] if trainable_head else [])
    torch.testing.assert_close(lp, want_lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy, want_entropy.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mean_logit, want_mean.detach(), atol=1e-5, rtol=1e-5)
    for a, b in zip(ours, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_head_memory_at_a_152k_vocabulary_is_one_tile_as_modelled_and_below_trls_tile():
    rows, hidden, vocab = 256, 16, 151_936
    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False).requires_grad_(False)  # frozen, as under LoRA
    h = torch.randn(rows, hidden, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,))
    model = head_transient_bytes(rows, vocab, hidden, compute_bytes=4)
    with TensorMemory() as m:
        lp, _, _ = _head_logprobs(head, h, targets, stats=True)
        forward, kept = m.peak, m.current
        m.reset_peak()
        lp.sum().backward()
        backward = m.peak - kept
    full_logits = rows * vocab * 4
    assert 0.95 * model["forward"] <= forward <= model["forward"] * 1.01 + 2**16
    assert backward <= model["backward"] + model["grad_hidden"] + 2**16
    assert forward < full_logits / 2  # the [rows, vocab] float32 logits never exist
    # at the GPU benchmark's shape (8 pairs x 2 x 256 completion tokens, hidden 896, bf16) the model is below the
    # one bf16 tile TRL's fused head keeps (4096 x 32768 x 2 bytes = 0.25 GiB)
    gpu = head_transient_bytes(8 * 2 * 256, vocab, 896, compute_bytes=2)
    assert max(gpu["forward"], gpu["backward"]) + gpu["grad_hidden"] < 4096 * 32768 * 2


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


# operators whose result size or value the host must read from the device: on CUDA each one is a sync
HOST_READS = ("nonzero", "_local_scalar_dense", "masked_select", "is_nonzero", "aten.equal", "unique",
              "repeat_interleave", "masked_scatter")


def test_a_packed_dpo_step_reads_nothing_back_from_the_device(tiny_model):
    """Structural on CPU: the forward (reference, policy, statistics) and backward of a packed micro-batch run no
    operator that returns a count or a value to the host (boolean-mask indexing is `nonzero`, `.item()` is
    `_local_scalar_dense`). It proves the code path has no such op; a CUDA run with
    torch.cuda.set_sync_debug_mode('error') is the test below. (The padded layout syncs inside transformers'
    mask construction, `padding_mask.all()`; the head itself does not.)"""
    from studio.train.model import PolicyLogps
    from tests.train.test_dpo import lora_model

    model, config = lora_model(tiny_model)
    exs = [data.Example(i, i, list(range(5, 5 + p)), list(range(40, 40 + c)), list(range(80, 80 + r)))
           for i, (p, c, r) in enumerate([(5, 3, 7), (2, 9, 1), (12, 4, 4)])]
    batch = data.pack(exs, 0)
    with _Ops() as ops:
        out = dpo.dpo_forward(PolicyLogps(model), model, batch, config, stats=dpo.step_stats(torch.device("cpu")))
        out.loss.backward()
    assert "aten.index_select.default" in ops.names  # the head picks its rows by index
    assert not [n for n in ops.names if any(k in n for k in HOST_READS)]
    assert "aten.index.Tensor" not in ops.names  # no boolean or advanced indexing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA syncs can only be observed on a GPU")
def test_a_packed_dpo_step_does_not_sync_on_a_gpu(tiny_model):
    from studio.train.model import PolicyLogps
    from tests.train.test_dpo import lora_model

    model, config = lora_model(tiny_model)
    model.cuda()
    exs = [data.Example(i, i, list(range(5, 5 + p)), list(range(40, 40 + c)), list(range(80, 80 + r)))
           for i, (p, c, r) in enumerate([(5, 3, 7), (2, 9, 1)])]
    batch = data.pack(exs, 0).to("cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = dpo.dpo_forward(PolicyLogps(model), model, batch, config, stats=dpo.step_stats(torch.device("cuda")))
        out.loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_fused_kernel_serves_only_cuda_passes_without_statistics(monkeypatch):
    calls = []

    class FakeLiger:
        """liger's LigerFusedLinearCrossEntropyFunction with reduction 'none': per-row -log p, in plain torch."""

        @staticmethod
        def apply(h, weight, targets, bias, ce_weight, ignore_index, lse_square_scale, label_smoothing, reduction):
            calls.append(reduction)
            nll = torch.nn.functional.cross_entropy(h @ weight.t(), targets, reduction="none")
            return nll, None, None, None

    monkeypatch.setattr(logps, "_liger", lambda: FakeLiger)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert logps.fused_kernel(cuda, stats=False, bias=None) == "liger"
    assert logps.fused_kernel(cuda, stats=True, bias=None) == "plain"  # it computes no entropy
    assert logps.fused_kernel(cuda, stats=False, bias=torch.zeros(3)) == "plain"
    assert logps.fused_kernel(cpu, stats=False, bias=None) == "plain"  # Triton kernels need a GPU
    monkeypatch.setenv(logps.KERNEL_ENV, "plain")
    assert logps.fused_kernel(cuda, stats=False, bias=None) == "plain"
    monkeypatch.setattr(logps, "_liger", lambda: None)
    monkeypatch.delenv(logps.KERNEL_ENV)
    assert logps.fused_kernel(cuda, stats=False, bias=None) == "plain"  # not installed

    # the mapping onto liger's call: log p = -nll, a temperature divides the rows
    monkeypatch.setattr(logps, "_liger", lambda: FakeLiger)
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    hidden, targets = torch.randn(5, 8), torch.randint(0, 11, (5,))
    got = logps._liger_logprobs(hidden, head.weight, targets, scale=1 / 0.7)
    torch.testing.assert_close(got, _full(head, hidden, targets, temperature=0.7)[0].detach(), atol=1e-5, rtol=1e-5)
    assert calls == ["none"]


@pytest.mark.skipif(not torch.cuda.is_available() or logps._liger() is None, reason="needs a GPU and liger-kernel")
def test_liger_head_equals_the_plain_tiles_on_a_gpu():
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 32000, bias=False).cuda().requires_grad_(False)
    hidden = torch.randn(300, 64, device="cuda", requires_grad=True)
    targets = torch.randint(0, 32000, (300,), device="cuda")
    weights = torch.randn(300, device="cuda")
    lp, _, _ = _head_logprobs(head, hidden, targets, stats=False)  # liger
    (lp * weights).sum().backward()
    fused = hidden.grad.clone()
    hidden.grad = None
    plain, _, _ = _head_logprobs(head, hidden, targets, stats=True)  # statistics: the plain tiles
    (plain * weights).sum().backward()
    torch.testing.assert_close(lp, plain.detach(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fused, hidden.grad, atol=1e-4, rtol=1e-3)
