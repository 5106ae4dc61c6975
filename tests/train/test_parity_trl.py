"""Our loss, rewards and log-probs match TRL's DPOTrainer on the same model, batch and beta; and from the
same raw rows, TRL's tokenization and masks are ours."""

import math

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


# ---------------------------------------------------------------------------------------------- from raw rows
# TRL's DPOTrainer gets the same raw rows as our snapshot holds (a datasets.Dataset), tokenizes them its own way,
# and its first batch's loss and rewards are compared with ours computed from our own tokenization.

PLAIN_PROMPTS = ["Question 1: tell me about the cat. ", "Question 2: the dog\n", "Tell me about the ca",
                 "Question 4 plus 5 equals"]
ANSWERS = [("sure the cat is nice.", "no it is bad."), ("sure it is a good dog.", "no."),
           ("t and the dog.", "r is red."), (" 9.", " 10 very big.")]


def trl_rows(chat: bool) -> tuple[list[dict], list[dict]]:
    """The same preferences as TRL's rows and as our snapshot's rows."""
    theirs, ours = [], []
    for i, (prompt, (chosen, rejected)) in enumerate(zip(PLAIN_PROMPTS, ANSWERS, strict=True)):
        if chat:
            messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt.strip()}]
            theirs.append({"prompt": messages, "chosen": [{"role": "assistant", "content": chosen.strip()}],
                           "rejected": [{"role": "assistant", "content": rejected.strip()}]})
            ours.append({"pair_id": i, "prompt_id": i, "prompt": prompt.strip(), "messages": messages,
                         "chosen": chosen.strip(), "rejected": rejected.strip()})
        else:
            theirs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
            ours.append({"pair_id": i, "prompt_id": i, "prompt": prompt, "messages": None, "chosen": chosen,
                         "rejected": rejected})
    return theirs, ours


def reset_accelerate():
    # TRL's Trainer leaves accelerate's process-wide state set up its way; later runs set up their own
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    PartialState._reset_state()


def perturb_adapter(peft_model, scale: float = 1.0) -> None:
    """Move the adapter away from zero, so policy and reference differ."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    peft_model.train()


def trl_trainer(tiny_model, tmp_path, rows, tokenizer, bf16: bool = False):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    reset_accelerate()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16 if bf16 else torch.float32)
    args = TRLConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=bf16, beta=0.1, max_length=None,
                     per_device_train_batch_size=len(rows))
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    perturb_adapter(trainer.model)
    return trainer


def assert_same_tokens_and_masks(trl_dataset, collator, examples: list[data.Example], pad_id: int) -> data.Batch:
    for i, ex in enumerate(examples):
        row = trl_dataset[i]
        assert (ex.prompt_ids, ex.chosen_ids, ex.rejected_ids) == (row["prompt_ids"], row["chosen_ids"],
                                                                  row["rejected_ids"]), i
    theirs = collator([trl_dataset[i] for i in range(len(examples))])
    ours = data.collate(examples, pad_id)
    for key in ("input_ids", "attention_mask", "completion_mask"):
        assert torch.equal(theirs[key], getattr(ours, key)), key
    return ours


def first_step(trainer, batch: data.Batch, loss_types=("sigmoid",), weights=(1.0,), nll_weight: float = 0.0):
    """TRL's loss and metrics on its own first batch, and ours on our batch of the same rows."""
    peft_model = trainer.model
    trainer.loss_types, trainer.loss_weights = list(loss_types), list(weights)
    trainer._metrics["train"].clear()
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(batch.n_pairs)])
    with trainer.accelerator.autocast():
        trl_loss = trainer._compute_loss(peft_model, inputs, return_outputs=False)
    theirs = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    config = apply_overrides(DPOConfig(), {"beta": 0.1, "nll_weight": nll_weight})
    stats = dpo.step_stats(torch.device("cpu"))
    with trainer.accelerator.autocast():
        out = dpo.dpo_forward(PolicyLogps(peft_model), peft_model, batch, config, stats=stats)
    return trl_loss.item(), theirs, out.loss.item(), stats.read()


REWARDS = (M.REWARDS_CHOSEN, M.REWARDS_REJECTED, M.REWARDS_MARGINS, M.LOGPS_CHOSEN, M.LOGPS_REJECTED)


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
def test_trl_given_the_same_raw_rows_tokenizes_masks_and_scores_them_as_we_do(tiny_model, tmp_path, chat):
    from transformers import AutoTokenizer

    from studio.train import tiny

    theirs_rows, our_rows = trl_rows(chat)
    # a chat template whose end of turn (<|im_end|>) is not EOS, so the completion's ending is tested too
    tokenizer = tiny.build_tokenizer(style="chatml") if chat else AutoTokenizer.from_pretrained(tiny_model)
    trainer = trl_trainer(tiny_model, tmp_path, theirs_rows, tokenizer)
    try:
        examples = data.tokenize_rows(our_rows, tokenizer, max_length=512, max_prompt_length=256)
        batch = assert_same_tokens_and_masks(trainer.train_dataset, trainer.data_collator, examples,
                                             tokenizer.pad_token_id)
        if chat:
            assert all(tokenizer.decode(e.chosen_ids).endswith("<|im_end|>\n") for e in examples)
        trl_loss, theirs, loss, mine = first_step(trainer, batch)
        assert loss == pytest.approx(trl_loss, abs=1e-5) and abs(loss - math.log(2)) > 1e-3
        for name in REWARDS:
            assert mine[name] == pytest.approx(theirs[name], abs=1e-4), name
        # RPO: TRL spells it as the sum of the sigmoid and sft losses, weighted
        trl_loss, theirs, loss, mine = first_step(trainer, batch, ("sigmoid", "sft"), (1.0, 0.5), nll_weight=0.5)
        assert loss == pytest.approx(trl_loss, abs=1e-5)
        assert mine[M.NLL] > 1.0  # the NLL term is in there
    finally:
        reset_accelerate()


def test_trl_in_bf16_scores_the_same_batch_as_we_do(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    theirs_rows, our_rows = trl_rows(chat=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    trainer = trl_trainer(tiny_model, tmp_path, theirs_rows, tokenizer, bf16=True)
    try:
        assert trainer.accelerator.mixed_precision == "bf16"
        layer = trainer.model.get_base_model().model.layers[0].self_attn.q_proj
        assert layer.base_layer.weight.dtype == torch.bfloat16
        examples = data.tokenize_rows(our_rows, tokenizer, max_length=512, max_prompt_length=256)
        batch = assert_same_tokens_and_masks(trainer.train_dataset, trainer.data_collator, examples,
                                             tokenizer.pad_token_id)
        trl_loss, theirs, loss, mine = first_step(trainer, batch)
        # bf16 keeps 8 bits of mantissa: the two heads may round differently, within bf16's resolution
        assert loss == pytest.approx(trl_loss, abs=1e-3) and abs(loss - math.log(2)) > 1e-2
        for name in REWARDS:
            assert mine[name] == pytest.approx(theirs[name], rel=1e-2, abs=1e-3), name
    finally:
        reset_accelerate()


def test_simpo_matches_trls_cpo_trainer_from_raw_rows(tmp_path, tiny_model, bos_tokenizer):
    """TRL's SimPO lives in its CPOTrainer (loss_type='simpo', cpo_alpha=0), which always writes a BOS: the
    comparison uses a tokenizer that adds one, as Llama's does."""
    import warnings

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.cpo import CPOConfig, CPOTrainer

    theirs_rows, our_rows = trl_rows(chat=False)
    theirs_rows, our_rows = theirs_rows[:2] + theirs_rows[3:], our_rows[:2] + our_rows[3:]  # CPO's own merge rule
    reset_accelerate()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    args = CPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, loss_type="simpo", cpo_alpha=0.0,
                     beta=2.0, simpo_gamma=0.5, max_length=512, per_device_train_batch_size=len(theirs_rows),
                     remove_unused_columns=False)
    trainer = CPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(theirs_rows),
                         processing_class=bos_tokenizer,
                         peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    try:
        peft_model = trainer.model
        perturb_adapter(peft_model)
        examples = data.tokenize_rows(our_rows, bos_tokenizer, max_length=512, max_prompt_length=256)
        rows = [trainer.train_dataset[i] for i in range(len(examples))]
        for ex, row in zip(examples, rows, strict=True):
            for side, ids in (("chosen", ex.chosen_ids), ("rejected", ex.rejected_ids)):
                assert row[f"{side}_input_ids"] == ex.prompt_ids + ids
                completion = [label != -100 for label in row[f"{side}_labels"]]
                assert completion == [False] * len(ex.prompt_ids) + [True] * len(ids)
        loss, metrics = trainer.get_batch_loss_metrics(peft_model, trainer.data_collator(rows))

        config = apply_overrides(DPOConfig(), {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5})
        stats = dpo.step_stats(torch.device("cpu"))
        out = dpo.dpo_forward(PolicyLogps(peft_model), peft_model, data.collate(examples, bos_tokenizer.pad_token_id),
                              config, want_ref=False, stats=stats)
        mine = stats.read()
        assert out.loss.item() == pytest.approx(loss.item(), abs=1e-5) and abs(out.loss.item()) > 1e-3
        for name in (M.REWARDS_CHOSEN, M.REWARDS_REJECTED, M.REWARDS_MARGINS, M.REWARDS_ACCURACIES):
            assert mine[name] == pytest.approx(metrics[name], abs=1e-4), name
        assert M.LOGRATIO_CHOSEN not in mine  # no reference forward ran
    finally:
        reset_accelerate()
