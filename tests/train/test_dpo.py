"""The DPO recipe and the pieces under it a practitioner relies on: gradient checkpointing under LoRA,
precision set-up, dropout, the per-step statistics (KL and token counts), preflight checks."""

import pytest
import torch

from studio.core.configs import DPOConfig, apply_overrides
from studio.train import data, dpo, preflight, runtime
from studio.train.model import PolicyLogps, load_policy, wrap_lora


@pytest.fixture
def fresh_accelerate():
    """accelerate keeps one process-wide state; tests that pick another precision reset it around them."""
    from accelerate.state import AcceleratorState, PartialState

    def reset():
        AcceleratorState._reset_state(reset_partial_state=True)
        PartialState._reset_state()

    reset()
    yield
    reset()


@pytest.fixture(scope="module")
def batch(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = [{"pair_id": i, "prompt_id": i, "prompt": f"Question {i}: the cat" + " big" * i, "messages": None,
             "chosen": "sure it is nice.", "rejected": "no" + " red" * (3 - i)} for i in range(3)]
    return data.collate(data.tokenize_rows(rows, tok, 64, 32), tok.pad_token_id)


def lora_model(tiny_model, **overrides):
    from transformers import AutoModelForCausalLM

    config = apply_overrides(DPOConfig(), {"lora.r": 4, "lora.dropout": 0.0, **overrides})
    model = wrap_lora(AutoModelForCausalLM.from_pretrained(tiny_model), config)
    with torch.no_grad():  # move the adapter off zero so policy and reference differ
        g = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    model.train()
    return model, config


def test_gradient_checkpointing_recomputes_and_gives_the_same_lora_gradients(tiny_model, batch):
    grads, recomputed = {}, {}
    for gc in (False, True):
        model, config = lora_model(tiny_model, gradient_checkpointing=gc)
        calls: list[int] = []
        q_proj = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
        handle = q_proj.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        out = dpo.dpo_forward(PolicyLogps(model), model, batch, config)
        before_backward = len(calls)
        out.loss.backward()
        handle.remove()
        recomputed[gc] = len(calls) - before_backward
        grads[gc] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert recomputed == {False: 0, True: 1}  # the layer ran again in the backward pass: checkpointing is on
    assert all(g is not None and g.abs().sum() > 0 for g in grads[True].values())  # grads reach every LoRA weight
    for name, g in grads[False].items():
        torch.testing.assert_close(grads[True][name], g, atol=1e-6, rtol=1e-5)


def test_bf16_on_cpu_autocasts_with_bf16_base_and_fp32_lora(tiny_model, batch, fresh_accelerate):
    config = apply_overrides(DPOConfig(), {"precision": "bf16", "lora.r": 4, "lora.dropout": 0.0,
                                         "warmup_ratio": 0.0})
    accelerator = runtime.make_accelerator(config)
    assert accelerator.mixed_precision == "bf16"
    _, model = load_policy(tiny_model, config, accelerator.mixed_precision)
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    assert layer.base_layer.weight.dtype == torch.bfloat16  # half the memory for the frozen weights
    assert layer.lora_A["default"].weight.dtype == torch.float32  # the trained weights stay fp32
    with accelerator.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    scheduler = runtime.make_scheduler(optimizer, config, 4)
    policy, optimizer = accelerator.prepare(PolicyLogps(model), optimizer)
    stats = dpo.step_stats(accelerator.device)
    before = layer.lora_B["default"].weight.detach().clone()
    grad_norm = dpo.train_step(policy, model, [batch], [None], config, accelerator, optimizer, scheduler,
                               trainable, want_ref=True, stats=stats)
    assert torch.isfinite(grad_norm) and grad_norm > 0
    assert torch.isfinite(torch.tensor(stats.read()["loss"]))
    assert not torch.equal(layer.lora_B["default"].weight, before)


def test_fp16_without_cuda_is_refused_by_name(fresh_accelerate):
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid on CUDA")
    with pytest.raises(preflight.TrainingError, match="precision: fp16 needs a CUDA GPU"):
        runtime.pick_precision(apply_overrides(DPOConfig(), {"precision": "fp16"}))
    assert runtime.pick_precision(DPOConfig()) == "no"  # auto on CPU: fp32


def test_base_dropout_is_off_so_the_reference_is_deterministic_but_lora_dropout_stays(tmp_path, batch):
    from transformers import AutoModelForCausalLM

    from studio.train.logps import sequence_logps
    from studio.train.tiny import build_model

    # a model whose own config asks for dropout (as GPT-2's 0.1 does)
    model = build_model(1024)
    model.config.attention_dropout = 0.5
    model.save_pretrained(tmp_path)
    base = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert base.model.layers[0].self_attn.attention_dropout == 0.5
    config = apply_overrides(DPOConfig(), {"lora.r": 4, "lora.dropout": 0.3})
    peft_model = wrap_lora(base, config)
    peft_model.train()
    with torch.no_grad(), peft_model.disable_adapter():
        a, b = (sequence_logps(peft_model, batch.input_ids, batch.attention_mask, batch.completion_mask).logps
                for _ in range(2))
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # no noise in the reference
    assert peft_model.get_base_model().model.layers[0].self_attn.q_proj.lora_dropout["default"].p == 0.3


def test_step_stats_kl_and_token_counts_follow_their_definitions(tiny_model, batch):
    from studio.core import metrics as M
    from studio.train.logps import sequence_logps

    model, config = lora_model(tiny_model)
    model.eval()
    stats = dpo.step_stats(torch.device("cpu"))
    with torch.no_grad():
        dpo.dpo_forward(PolicyLogps(model), model, batch, config, stats=stats)
        pol = sequence_logps(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
        with model.disable_adapter():
            ref = sequence_logps(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
    values = stats.read()
    B = batch.n_pairs
    # logratio/chosen: mean per-token log pi - log pi_ref over all chosen completion tokens of the batch
    kl_c = (pol.logps[:B] - ref.logps[:B]).sum() / pol.tokens[:B].sum()
    kl_r = (pol.logps[B:] - ref.logps[B:]).sum() / pol.tokens[B:].sum()
    assert values[M.LOGRATIO_CHOSEN] == pytest.approx(kl_c.item(), abs=1e-5)
    assert values[M.LOGRATIO_REJECTED] == pytest.approx(kl_r.item(), abs=1e-5)
    assert abs(values[M.LOGRATIO_CHOSEN]) > 1e-4
    # rewards: beta * (log pi - log pi_ref) summed over completion tokens, averaged over pairs
    assert values[M.REWARDS_CHOSEN] == pytest.approx(config.beta * (pol.logps[:B] - ref.logps[:B]).mean().item(),
                                                     abs=1e-5)
    # tokens counted for tokens/s are the real ones: padding left out
    assert stats.tokens == batch.attention_mask.sum().item() < batch.input_ids.numel()


def test_config_changes_name_the_changed_settings_and_ignore_new_fields():
    saved = {"beta": 0.1, "lora": {"r": 16, "alpha": 32}, "removed_field": 1}
    current = {"beta": 0.2, "lora": {"r": 8, "alpha": 32}, "new_field": True}
    assert preflight.config_changes(saved, current) == ["beta: 0.1 -> 0.2", "lora.r: 16 -> 8"]
    assert preflight.config_changes(saved, saved) == []


def test_samples_come_from_the_policy_and_kl_from_the_adapter_disabled(tiny_model):
    from transformers import AutoTokenizer

    from studio.core import metrics as M
    from studio.train import sampling

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model, _ = lora_model(tiny_model)
    with torch.no_grad():  # a strong adapter, so the policy's samples and the base model's differ
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(5)
    prompts = [sampling.EvalPrompt(i, f"q{i}", tokenizer(f"Question {i}: tell me about the cat.").input_ids)
               for i in range(3)]
    generated = []  # what model.generate returned: the sampled token ids (text does not round-trip)
    real_generate = model.generate

    def spy(*args, **kwargs):
        generated.append(real_generate(*args, **kwargs))
        return generated[-1]

    model.generate = spy
    values, rows = sampling.sample_and_measure(model, tokenizer, prompts, 8, seed=3, device=torch.device("cpu"))
    del model.generate
    assert model.training  # put back in train mode
    [out] = generated
    width = out.shape[1] - 8

    # per sampled token, log p under the policy (adapter on) and the reference (adapter off), computed here
    # with a plain forward of each unpadded sequence
    policy_lp, ref_lp = [], []
    model.eval()
    with torch.no_grad():
        for p, row, seq in zip(prompts, rows, out[:, width:].tolist(), strict=True):
            gen = seq[:row["meta"]["tokens"]]
            ids = torch.tensor([p.ids + gen])
            targets = ids[0, len(p.ids):, None]
            policy_lp.append(model(ids).logits[0, len(p.ids) - 1:-1].log_softmax(-1).gather(-1, targets)[:, 0])
            with model.disable_adapter():
                ref_lp.append(model(ids).logits[0, len(p.ids) - 1:-1].log_softmax(-1).gather(-1, targets)[:, 0])
    model.train()
    ratio = torch.exp(torch.cat(ref_lp) - torch.cat(policy_lp))  # p_ref / p_pi per sampled token
    assert values[M.EVAL_KL] == pytest.approx(((ratio - 1) - ratio.log()).mean().item(), rel=1e-4)
    assert values[M.EVAL_KL] > 0.01
    # the policy wrote the samples: they are far likelier under it than under the base model
    assert torch.cat(policy_lp).sum() > torch.cat(ref_lp).sum() + 5

    # with the adapter at zero the policy is the reference: KL exactly 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.zero_()
    zero, _ = sampling.sample_and_measure(model, tokenizer, prompts, 8, seed=3, device=torch.device("cpu"))
    assert zero[M.EVAL_KL] == 0 and zero[M.EVAL_KL_SEQ] == 0


def test_a_process_other_than_the_main_one_trains_to_the_end_and_writes_nothing(trait_project, tiny_model,
                                                                                monkeypatch):
    """Under `accelerate launch` the other processes train their share and leave the writing to the main one;
    their last flush must not fail the run."""
    from studio.core import paths
    from studio.core.configs import to_dict

    real = runtime.make_accelerator

    class NotMain:
        is_main_process = False

        def __init__(self, config):
            self._accelerator = real(config)

        def __getattr__(self, name):
            return getattr(self._accelerator, name)

    monkeypatch.setattr(runtime, "make_accelerator", NotMain)
    config = apply_overrides(DPOConfig(), {"lora.r": 4, "batch_size": 4, "max_steps": 3, "eval_interval": 2,
                                           "eval_samples": 2, "sample_max_new_tokens": 4})
    run_id = trait_project.create_run("dpo", str(tiny_model), to_dict(config))
    steps = []
    ctx = runtime.RunContext(trait_project, run_id, config, tiny_model,
                             on_progress=lambda step, total, values: steps.append(step))
    assert dpo.train(ctx) == "done"
    assert steps == [1, 2, 3]  # it trained
    assert trait_project.metrics(run_id) == [] and trait_project.samples(run_id) == []
    assert not paths.checkpoint_dir(trait_project.folder, run_id).exists()
    assert trait_project.run(run_id)["step"] == 0


def test_gradients_are_all_reduced_once_per_optimizer_step(tiny_model, batch, fresh_accelerate):
    """Every micro-batch but the last backpropagates under no_sync: under DDP one all-reduce per optimizer step."""
    from contextlib import contextmanager

    model, config = lora_model(tiny_model)
    accelerator = runtime.make_accelerator(config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    scheduler = runtime.make_scheduler(optimizer, config, 4)
    policy, optimizer = accelerator.prepare(PolicyLogps(model), optimizer)
    events = []
    real_no_sync, real_backward = accelerator.no_sync, accelerator.backward

    @contextmanager
    def no_sync(module):
        assert module is policy  # the DDP-wrapped module, whose no_sync skips the all-reduce
        events.append("no_sync(")
        with real_no_sync(module):
            yield
        events.append(")")

    accelerator.no_sync = no_sync
    accelerator.backward = lambda loss, **kw: (events.append("backward"), real_backward(loss, **kw))
    dpo.train_step(policy, model, [batch] * 3, [None] * 3, config, accelerator, optimizer, scheduler, trainable,
                   want_ref=True, stats=None)
    assert events == ["no_sync(", "backward", ")", "no_sync(", "backward", ")", "backward"]


def test_a_step_the_fp16_scaler_skips_does_not_move_the_schedule_and_its_scale_is_checkpointed(
        trait_project, tiny_model, monkeypatch, fresh_accelerate):
    """fp16 needs CUDA; accelerate's loss scaling is the same with torch's CPU GradScaler put in its place."""
    from studio.core.configs import to_dict

    real = runtime.make_accelerator

    def with_scaler(config):
        accelerator = real(config)
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=1000)
        return accelerator

    monkeypatch.setattr(runtime, "make_accelerator", with_scaler)
    config = apply_overrides(DPOConfig(), {"lora.r": 4, "lora.dropout": 0.0, "batch_size": 4, "max_steps": 4,
                                           "warmup_ratio": 0.5, "max_grad_norm": 0.0, "eval_samples": 0})
    run_id = trait_project.create_run("dpo", str(tiny_model), to_dict(config))
    run = dpo.DPORun(runtime.RunContext(trait_project, run_id, config, tiny_model))
    scaler = run.accelerator.scaler
    lora_b = next(p for n, p in run.peft_model.named_parameters() if "lora_B" in n)
    overflow = [False]
    lora_b.register_hook(lambda g: g * float("inf") if overflow[0] else g)

    def step(inf: bool):
        overflow[0] = inf
        run.step([run.next_batch()], dpo.step_stats(run.device))
        run.position.step += 1
        return run.scheduler.get_last_lr()[0], lora_b.detach().clone()

    lr1, w1 = step(False)
    assert not run.accelerator.optimizer_step_was_skipped and scaler.get_scale() == 2.0 ** 10
    lr2, w2 = step(True)  # inf gradients: the scaler skips the update and halves its scale
    assert run.accelerator.optimizer_step_was_skipped
    assert torch.equal(w2, w1) and scaler.get_scale() == 2.0 ** 9
    assert lr2 == lr1 and run.scheduler.last_epoch == 1  # the schedule waits for the skipped step
    lr3, w3 = step(False)
    assert lr3 > lr2 and run.scheduler.last_epoch == 2 and not torch.equal(w3, w2)

    run.save_checkpoint()
    saved = scaler.state_dict()
    resumed = dpo.DPORun(runtime.RunContext(trait_project, run_id, config, tiny_model, resume=True))
    assert resumed.accelerator.scaler is not scaler
    assert resumed.accelerator.scaler.state_dict() == saved and resumed.accelerator.scaler.get_scale() == 2.0 ** 9
    assert resumed.scheduler.last_epoch == 2


def test_sharded_launches_are_refused_by_name_not_trained_wrong():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    for kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(preflight.TrainingError, match=f"distributed_type {kind.name}: .*data-parallel only"):
            runtime.check_distributed(SimpleNamespace(distributed_type=kind))
    for kind in (DistributedType.NO, DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        runtime.check_distributed(SimpleNamespace(distributed_type=kind))


def test_the_reference_pass_sorts_all_pairs_by_length_then_shards_them():
    """Sorted over all pairs before sharding: each process's batches run from long to short, its k-th batch
    holds pairs of about the length of every other process's k-th, and together they hold every pair once."""
    rows = [{"pair_id": i, "prompt": "p" * (i * 7 % 23), "messages": None, "chosen": "c" * (i % 5),
             "rejected": "r"} for i in range(20)]
    rows.append({"pair_id": 20, "prompt": "", "messages": [{"role": "user", "content": "x" * 40}], "chosen": "",
                 "rejected": ""})
    ordered = data.by_length(rows)
    assert ordered[0]["pair_id"] == 20  # a chat's turns count as its prompt
    shares = [data.shard(ordered, 2, rank) for rank in (0, 1)]
    for share in shares:
        lengths = [data.row_chars(r) for r in share]
        assert lengths == sorted(lengths, reverse=True)
    assert sorted(r["pair_id"] for share in shares for r in share) == list(range(21))
    assert all(data.row_chars(a) >= data.row_chars(b) for a, b in zip(shares[0], shares[1], strict=False))


def test_a_margin_within_float_rounding_of_zero_is_a_tie_and_a_real_one_is_kept():
    """With the adapter zero the policy is the reference, but a precomputed reference comes from other batches
    (other padding, other rounding): margins of ~1e-7 must log as exactly 0, a tie (series.untied), not as
    pairs ranked wrong; a small real margin is kept, and a loss without a reference is left alone."""
    from studio.train.losses import PairLogps

    ones = torch.ones(3)
    logps = torch.tensor([-320.0, -85.5, -12.25])
    p = PairLogps(logps, logps - 3.0, logps + 1e-5, logps - 3.0, ones, ones)
    noise = torch.tensor([-7.6e-7, 4e-7, 0.0])
    assert dpo.tied_to_zero(noise, p, beta=0.1).tolist() == [0.0, 0.0, 0.0]
    real = torch.tensor([5.7e-3, -2e-3, 1e-4])
    assert dpo.tied_to_zero(real, p, beta=0.1).tolist() == pytest.approx(real.tolist())
    no_ref = PairLogps(logps, logps - 3.0, None, None, ones, ones)
    assert dpo.tied_to_zero(noise, no_ref, beta=0.1).tolist() == pytest.approx(noise.tolist())
