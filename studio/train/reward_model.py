"""Scalar heads on a causal LM's last hidden state (the reward model's score, PPO's value), and the rewards a
PPO/RLOO run can be scored by: a reward run's adapter on the policy's own base, a sequence-classification model
folder, or a rule (a Python function, the test hook).

A reward is read at the last non-pad token of a right-padded prompt + response (for a finished response that
is its EOS), as a sequence-classification model reads it. The score head has no bias, like the `score` layer
of transformers' sequence-classification models, so a reward run can be exported as one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from studio.train import data
from studio.train.logps import decoder_and_head
from studio.train.preflight import TrainingError

HEAD_FILE = "score_head.safetensors"
"""The score head's weights, saved next to a reward run's adapter."""

RULE_REWARDS: dict[str, Callable[[str, str], float]] = {}
"""`reward_model = "rule:NAME"` scores each response with RULE_REWARDS[NAME](prompt text, response text): a hook
for tests (a rule whose optimum is known) and experiments run in-process; the app never registers one."""


class ScalarHead(nn.Module):
    """One number per position from the hidden state: a bias-free linear layer, kept in fp32."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


def new_head(hidden_size: int, seed: int) -> ScalarHead:
    """A head initialised N(0, 1 / sqrt(hidden + 1)), as the reward and value heads of Ziegler et al. 2019
    (Huang et al. 2022, "The N Implementation Details of RLHF with PPO"): scores start near 0, not saturated."""
    head = ScalarHead(hidden_size)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.linear.weight.copy_(torch.randn(head.linear.weight.shape, generator=g) / math.sqrt(hidden_size + 1))
    return head


def hidden_size(model: nn.Module) -> int:
    """The width of the decoder's last hidden state (the lm_head's input)."""
    return int(decoder_and_head(model)[1].weight.shape[1])


def save_head(head: ScalarHead, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"weight": head.linear.weight.detach().cpu().contiguous()}, str(folder / HEAD_FILE))


def load_head(folder: Path) -> ScalarHead:
    from safetensors.torch import load_file

    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        raise TrainingError(f"{path}: no score head next to the adapter; is {folder} the adapter of a reward run?")
    weight = load_file(str(path))["weight"]
    head = ScalarHead(weight.shape[1])
    with torch.no_grad():
        head.linear.weight.copy_(weight)
    return head


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The decoder's last hidden states [N, T, H] (no lm_head), under whichever adapter is active."""
    decoder, _ = decoder_and_head(model)
    return decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


def last_token_scores(model: nn.Module, head: ScalarHead, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
    """The head's output at each row's last non-pad token ([N]); rows are right-padded."""
    hidden = hidden_states(model, input_ids, attention_mask)
    last = attention_mask.sum(1) - 1
    return head(hidden[torch.arange(len(last), device=last.device), last])


def scores_of_batch(model: nn.Module, head: ScalarHead, batch: data.Batch) -> torch.Tensor:
    """Scores of a preference batch's rows: chosen rows first, then rejected ([2B])."""
    return last_token_scores(model, head, batch.input_ids, batch.attention_mask)


class RewardModel(nn.Module):
    """A causal LM with an adapter and a score head, as one module (so `accelerate` can wrap the whole forward)."""

    def __init__(self, peft_model: nn.Module, head: ScalarHead):
        super().__init__()
        self.peft_model, self.head = peft_model, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return last_token_scores(self.peft_model, self.head, input_ids, attention_mask)


# ---------------------------------------------------------------------------------------------- reward sources


@dataclass
class Responses:
    """Responses to score: right-padded prompt + response token rows of the policy's tokenizer, and for scorers
    that read text, each row's prompt (text and chat messages) and decoded response."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_texts: list[str]
    prompt_messages: list[list[dict] | None]
    response_texts: list[str]


class AdapterReward:
    """A reward run's adapter and score head on the policy's own base (named adapter 'reward', frozen)."""

    def __init__(self, shared, head: ScalarHead, adapter_name: str):
        self.shared, self.head, self.adapter_name = shared, head, adapter_name

    @torch.no_grad()
    def __call__(self, responses: Responses) -> torch.Tensor:
        with self.shared.adapter(self.adapter_name):
            return last_token_scores(self.shared.model, self.head, responses.input_ids, responses.attention_mask)


class ClassifierReward:
    """A sequence-classification model folder: its own weights and tokenizer, its own last-token pooling. Prompt
    and response are tokenized as training tokenizes them (chat template, EOS after the response)."""

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForSequenceClassification

        from studio.train.model import load_tokenizer

        self.tokenizer = load_tokenizer(Path(folder))
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype).to(device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device

    def token_rows(self, prompt_text: str, messages: list[dict] | None, response: str) -> list[int]:
        # the whole conversation as training renders it: a chat ends with the template's end of turn
        return data.full_token_ids(self.tokenizer, prompt_text, messages, response)

    @torch.no_grad()
    def __call__(self, responses: Responses, batch_size: int = 16) -> torch.Tensor:
        rows = [self.token_rows(p, m, r) for p, m, r in zip(responses.prompt_texts, responses.prompt_messages,
                                                            responses.response_texts, strict=True)]
        return self.score_rows(rows, batch_size)

    @torch.no_grad()
    def score_rows(self, rows: list[list[int]], batch_size: int = 16) -> torch.Tensor:
        out = []
        pad = self.model.config.pad_token_id
        for lo in range(0, len(rows), batch_size):
            chunk = rows[lo:lo + batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for i, r in enumerate(chunk):
                ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
                attn[i, :len(r)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=attn.to(self.device)).logits
            out.append(logits[:, 0].float())
        return torch.cat(out) if out else torch.zeros(0, device=self.device)


class RuleReward:
    """A Python function of (prompt text, response text) registered in RULE_REWARDS."""

    def __init__(self, name: str, device: torch.device):
        if name not in RULE_REWARDS:
            raise TrainingError(f"reward_model: no rule reward named {name!r} is registered in this process "
                                f"(rule rewards are a hook for tests; known: {', '.join(RULE_REWARDS) or 'none'})")
        self.fn, self.device = RULE_REWARDS[name], device

    def __call__(self, responses: Responses) -> torch.Tensor:
        values = [float(self.fn(p, r)) for p, r in zip(responses.prompt_texts, responses.response_texts, strict=True)]
        return torch.tensor(values, dtype=torch.float32, device=self.device)
