"""`studio bench dpo`: tokens/s and peak memory of our engine against TRL's DPOTrainer, same everything.

Each (engine, gradient checkpointing) case runs in its own child process, so peak memory (GPU peak
allocation, or the process's peak RSS on CPU) is that case's alone. Both sides get the same random-weight
model shape, the same token ids (prompt_len + completion_len per sequence), batch, LoRA r=16 on all linear
layers, beta, optimizer and precision. The first 2 optimizer steps are warmup and not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from studio.bench.common import peak_rss_mib

WARMUP = 2

SHAPES = {
    # name: (config class, kwargs)
    "tiny": ("LlamaConfig", dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)),
    "small": ("Qwen2Config", dict(vocab_size=32768, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                  num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
    # Qwen2.5-0.5B's published config
    "qwen2.5-0.5b": ("Qwen2Config", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                         tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6,
                                         max_position_embeddings=32768)),
}


def _model(shape: str, dtype):
    import torch
    import transformers

    cls_name, kw = SHAPES[shape]
    config = getattr(transformers, cls_name)(pad_token_id=0, eos_token_id=1, bos_token_id=2, **kw)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def _examples(n: int, prompt_len: int, completion_len: int, vocab: int):
    import torch

    from studio.train.data import Example

    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        ids = torch.randint(3, vocab, (prompt_len + 2 * completion_len,), generator=g).tolist()
        out.append(Example(i, i, ids[:prompt_len], ids[prompt_len:prompt_len + completion_len],
                           ids[prompt_len + completion_len:]))
    return out


def _peak(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return peak_rss_mib() / 1024


def run_ours(a: argparse.Namespace) -> dict:
    import torch

    from studio.core.configs import DPOConfig, apply_overrides
    from studio.train import data, dpo, model, runtime

    config = apply_overrides(DPOConfig(), {"lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.0,
                                           "lora.target_modules": "all-linear", "batch_size": a.batch,
                                           "gradient_checkpointing": a.gc, "learning_rate": 1e-6,
                                           "warmup_ratio": 0.0, "lr_schedule": "constant"})
    accelerator = runtime.make_accelerator(config)
    device = accelerator.device
    mp = accelerator.mixed_precision
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp, torch.float32)
    peft_model = model.wrap_lora(_model(a.shape, dtype), config)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate)
    scheduler = runtime.make_scheduler(optimizer, config, WARMUP + a.steps)
    policy, optimizer = accelerator.prepare(model.PolicyLogps(peft_model), optimizer)
    peft_model.train()
    examples = _examples(a.batch, a.prompt_len, a.completion_len, peft_model.config.vocab_size)
    batch = data.collate(examples, 0).to(device)
    tokens_per_step = int(batch.attention_mask.sum())
    t0 = None
    for i in range(WARMUP + a.steps):
        if i == WARMUP:
            _sync(device)
            t0 = time.perf_counter()
        # what a run with the default log_interval=1 does each step: statistics (entropy, KL, ...) and one read
        stats = dpo.step_stats(device)
        grad_norm = dpo.train_step(policy, peft_model, [batch], [None], config, accelerator, optimizer, scheduler,
                                   trainable, want_ref=True, stats=stats)
        stats.read()
        float(grad_norm)
    _sync(device)
    elapsed = time.perf_counter() - t0
    return {"tokens_per_s": tokens_per_step * a.steps / elapsed, "peak_gib": _peak(device),
            "device": runtime.device_name(device), "precision": mp if mp != "no" else "fp32"}


def run_trl(a: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from studio.train import runtime
    from studio.train.tiny import build_tokenizer

    class Pretokenized(DPOTrainer):
        """The same token ids as our side: skip TRL's text tokenization."""

        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else (torch.float16 if cuda else torch.float32)
    model = _model(a.shape, dtype)
    examples = _examples(a.batch, a.prompt_len, a.completion_len, model.config.vocab_size)
    ds = Dataset.from_dict({"prompt_ids": [e.prompt_ids for e in examples],
                            "chosen_ids": [e.chosen_ids for e in examples],
                            "rejected_ids": [e.rejected_ids for e in examples]})
    tokenizer: PreTrainedTokenizerFast = build_tokenizer(256)  # only its pad/eos ids are used
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(output_dir=tmp, per_device_train_batch_size=a.batch, max_steps=WARMUP + a.steps,
                         learning_rate=1e-6, lr_scheduler_type="constant", logging_steps=10_000, save_strategy="no",
                         report_to=[], bf16=bf16, fp16=cuda and not bf16, gradient_checkpointing=a.gc,
                         max_length=None, beta=0.1, loss_type=["sigmoid"], dataloader_num_workers=0,
                         use_cpu=not cuda, seed=0, disable_tqdm=True, remove_unused_columns=False)
        trainer = Pretokenized(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                               peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                      target_modules="all-linear", task_type="CAUSAL_LM"),
                               callbacks=[Timer()])
        trainer.train()
    device = trainer.accelerator.device
    tokens_per_step = 2 * a.batch * (a.prompt_len + a.completion_len)
    elapsed = times[-1] - times[WARMUP - 1]
    return {"tokens_per_s": tokens_per_step * a.steps / elapsed, "peak_gib": _peak(device),
            "device": runtime.device_name(device), "precision": "bf16" if bf16 else ("fp16" if cuda else "fp32")}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--side", choices=("ours", "trl"))
    p.add_argument("--gc", type=int)
    p.add_argument("--shape")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--prompt-len", type=int)
    p.add_argument("--completion-len", type=int)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    a.gc = bool(a.gc)
    result = run_ours(a) if a.side == "ours" else run_trl(a)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    """Run every case in a child process and print the table and the ratios."""
    sides = [args.only] if args.only else ["trl", "ours"]
    checkpointing = {"off": (False,), "on": (True,), "both": (False, True)}[args.checkpointing]
    rows = []
    threads = args.threads
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    print(f"DPO benchmark: shape {args.model_shape}, {args.batch} pairs x ({args.prompt_len} prompt + "
          f"{args.completion_len} completion) tokens, LoRA r=16 all-linear, {args.steps} timed steps"
          + (f", {threads} CPU thread(s) per case" if threads > 0 else ""))
    for gc in checkpointing:
        for side in sides:
            cmd = [sys.executable, "-m", "studio.bench.dpo", "--side", side, "--gc", str(int(gc)), "--shape",
                   args.model_shape, "--steps", str(args.steps), "--batch", str(args.batch), "--prompt-len",
                   str(args.prompt_len), "--completion-len", str(args.completion_len), "--threads", str(threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(f"{side} (gc={gc}) failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            r = json.loads(line[len("RESULT "):]) | {"side": side, "gradient_checkpointing": gc}
            rows.append(r)
            print(f"  {side:5s} checkpointing={'on ' if gc else 'off'}  {r['tokens_per_s']:10,.0f} tokens/s  "
                  f"peak {r['peak_gib']:6.2f} GiB  [{r['device']}, {r['precision']}]", flush=True)
    if len(sides) == 2:
        for gc in checkpointing:
            trl, ours = (next(r for r in rows if r["side"] == s and r["gradient_checkpointing"] == gc)
                         for s in ("trl", "ours"))
            speed = ours["tokens_per_s"] / trl["tokens_per_s"]
            memory = ours["peak_gib"] / trl["peak_gib"]
            print(f"checkpointing {'on ' if gc else 'off'}: ours/TRL tokens/s {speed:.2f}x, peak memory {memory:.2f}x")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
