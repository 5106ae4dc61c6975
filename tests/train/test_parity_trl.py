"""Our loss, rewards and log-probs match TRL's DPOTrainer on the same model, batch and beta."""

import pytest
import torch

from studio.core import metrics as M
from studio.core.configs import DPOConfig, apply_overrides
from studio.train import data, dpo
from studio.train.model import PolicyLogps

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def trl_setup(tiny_model, tmp_path_factory):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    rows = [{"prompt": f"Question {i}: tell me about the cat.", "chosen": f" sure the cat is nice {i}.",
             "rejected": " no it is bad." + " very" * i} for i in range(4)]
    args = TRLConfig(output_dir=str(tmp_path_factory.mktemp("trl")), report_to=[], use_cpu=True, beta=0.1,
                     max_length=None, per_device_train_batch_size=4)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    peft_model = trainer.model
    # move the adapter away from zero, so policy and reference differ
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    peft_model.train()
    # the same token ids for both: TRL's collator on our tokenization
    examples = data.tokenize_rows([dict(r, pair_id=i, prompt_id=i) for i, r in enumerate(rows)], tokenizer,
                                  max_length=512, max_prompt_length=256)
    trl_inputs = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(
        [{"prompt_ids": e.prompt_ids, "chosen_ids": e.chosen_ids, "rejected_ids": e.rejected_ids}
         for e in examples])
    ours = data.collate(examples, tokenizer.pad_token_id)
    assert torch.equal(trl_inputs["input_ids"], ours.input_ids)
    assert torch.equal(trl_inputs["completion_mask"], ours.completion_mask)
    yield trainer, peft_model, trl_inputs, ours
    # TRL's Trainer leaves accelerate's process-wide state set up its way; later runs set up their own
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    PartialState._reset_state()


@pytest.mark.parametrize("loss_type,beta,smoothing", [("sigmoid", 0.1, 0.0), ("ipo", 0.3, 0.0),
                                                      ("robust", 0.2, 0.15), ("hinge", 0.5, 0.0)])
def test_matches_trl(trl_setup, loss_type, beta, smoothing):
    trainer, peft_model, trl_inputs, batch = trl_setup
    trainer.loss_types, trainer.loss_weights = [loss_type], [1.0]
    trainer.beta, trainer.label_smoothing = beta, smoothing
    trainer._metrics["train"].clear()
    trl_loss = trainer._compute_loss(peft_model, trl_inputs, return_outputs=False)
    theirs = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    config = apply_overrides(DPOConfig(), {"loss_type": loss_type, "beta": beta, "label_smoothing": smoothing})
    stats = dpo.step_stats(torch.device("cpu"))
    out = dpo.dpo_forward(PolicyLogps(peft_model), peft_model, batch, config, stats=stats)
    mine = stats.read()

    assert out.loss.item() == pytest.approx(trl_loss.item(), abs=1e-4)
    assert abs(out.loss.item()) > 1e-3  # a real, non-degenerate value
    for name in (M.REWARDS_CHOSEN, M.REWARDS_REJECTED, M.REWARDS_MARGINS, M.REWARDS_ACCURACIES, M.LOGPS_CHOSEN,
                 M.LOGPS_REJECTED, M.LOGITS_CHOSEN, M.LOGITS_REJECTED, M.ENTROPY):
        assert mine[name] == pytest.approx(theirs[name], abs=1e-4), name
    assert abs(theirs[M.REWARDS_MARGINS]) > 1e-3

    # gradients agree too
    peft_model.zero_grad()
    trainer._compute_loss(peft_model, trl_inputs, return_outputs=False).backward()
    theirs_grad = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    peft_model.zero_grad()
    dpo.dpo_forward(PolicyLogps(peft_model), peft_model, batch, config).loss.backward()
    for n, p in peft_model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, theirs_grad[n], atol=1e-5, rtol=1e-4)
    peft_model.zero_grad()
