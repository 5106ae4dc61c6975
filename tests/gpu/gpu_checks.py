"""Checks that need a CUDA GPU, kept out of the CPU suite (CI has no GPU, and the suite skips nothing): run them
on a GPU machine with `python -m pytest tests/gpu/gpu_checks.py` (pytest collects a file named on the command line
although its name does not start with test_). Without CUDA, or without liger-kernel for the fused head, they fail
with a message saying so rather than passing."""

from __future__ import annotations

import pytest
import torch

from studio.train import data, dpo, logps
from studio.train.logps import _head_logprobs


@pytest.fixture(autouse=True)
def _cuda():
    if not torch.cuda.is_available():
        pytest.fail("tests/gpu needs a CUDA GPU")


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


def test_liger_head_equals_the_plain_tiles_on_a_gpu():
    assert logps._liger() is not None, "liger-kernel is not installed"
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
