"""`studio bench dpo`: tokens/s and peak memory of our engine against TRL's DPOTrainer, same everything.

Each case runs in its own child process, so peak memory (GPU peak allocation, or on CPU the process's peak
RSS and the peak of one step's own tensors) is that case's alone. Both sides get the same random-weight
model shape, the same token ids (prompt_len + completion_len per sequence), batch, LoRA r=16 on all linear
layers, beta, optimizer and precision, and compute the reference log-probs in each step (TRL's default).
The first 2 optimizer steps are warmup and not timed.

TRL runs in its default configuration (gradient checkpointing on) and with checkpointing off. Its fused
lm_head scores only completion rows, with Triton kernels, on a GPU; on other devices it scores every
position with a torch fallback. To compare with its GPU code path on a CPU, the benchmark makes TRL take
its completion-rows path there too (`trl.trainer.utils._use_triton` answers yes for the row selection; the
per-tile arithmetic stays TRL's torch fallback, since Triton has no CPU backend); `--trl-head cpu` keeps
TRL's own CPU choice instead. Ours runs with its defaults (gradient checkpointing 'auto', the packed layout)
and with checkpointing on and off. The head's transient memory at a 152k vocabulary is printed for both.
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
VOCAB_152K = 151936  # Qwen2.5's vocabulary

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

    from studio.bench.tensor_memory import TensorMemory
    from studio.core.configs import DPOConfig, apply_overrides
    from studio.train import data, dpo, memory, model, packing, runtime

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
    scheduler = runtime.make_scheduler(optimizer, config, WARMUP + a.steps + 1)
    policy, optimizer = accelerator.prepare(model.PolicyLogps(peft_model), optimizer)
    peft_model.train()
    layout = "padded" if a.layout == "padded" or packing.unsupported_reason(peft_model) else "packed"
    examples = _examples(a.batch, a.prompt_len, a.completion_len, peft_model.config.vocab_size)
    batch = data.make_batch(examples, 0, layout).to(device)
    checkpointed = {"on": "all", "off": "none"}.get(a.gc)
    if a.gc == "auto":
        longest = data.make_batch(examples[:1], 0, layout).to(device)
        k, n, _ = memory.auto_checkpointing(peft_model, longest, a.batch, dpo.decoder_attention(longest, peft_model),
                                            device, 4 if mp == "no" else 2)
        checkpointed = f"{k}/{n} layers"
    if a.compile:  # after the measurement: its hooks are for eager layers
        model.compile_layers(peft_model.get_base_model())

    def step():
        # what a run with the default log_interval=1 does each step: statistics (entropy, KL, ...) and one read
        stats = dpo.step_stats(device)
        grad_norm = dpo.train_step(policy, peft_model, [batch], [None], config, accelerator, optimizer, scheduler,
                                   trainable, want_ref=True, stats=stats)
        stats.read()
        float(grad_norm)

    t0 = None
    for i in range(WARMUP + a.steps):
        if i == WARMUP:
            _sync(device)
            t0 = time.perf_counter()
        step()
    _sync(device)
    elapsed = time.perf_counter() - t0
    peak = _peak(device)
    with TensorMemory() as tm:  # one more step, its own tensors counted (weights and optimizer state exist)
        step()
    return {"tokens_per_s": batch.n_tokens * a.steps / elapsed, "peak_gib": peak, "step_tensors_gib": tm.peak / 2**30,
            "device": runtime.device_name(device), "precision": mp if mp != "no" else "fp32",
            "checkpointed": checkpointed, "layout": layout}


def run_trl(a: argparse.Namespace) -> dict:
    import torch
    import trl.trainer.utils as trl_utils
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from studio.bench.tensor_memory import TensorMemory
    from studio.train import runtime
    from studio.train.tiny import build_tokenizer

    class Pretokenized(DPOTrainer):
        """The same token ids as our side: skip TRL's text tokenization."""

        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

    cuda = torch.cuda.is_available()
    if a.trl_head == "gpu-path" and not cuda:
        trl_utils._use_triton = lambda device: True  # completion rows only, as on a GPU (see the module docstring)
    bf16 = cuda and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else (torch.float16 if cuda else torch.float32)
    model = _model(a.shape, dtype)
    examples = _examples(a.batch, a.prompt_len, a.completion_len, model.config.vocab_size)
    ds = Dataset.from_dict({"prompt_ids": [e.prompt_ids for e in examples],
                            "chosen_ids": [e.chosen_ids for e in examples],
                            "rejected_ids": [e.rejected_ids for e in examples]})
    tokenizer: PreTrainedTokenizerFast = build_tokenizer(256)  # only its pad/eos ids are used
    times: list[float] = []
    tracker = TensorMemory()

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == WARMUP + a.steps:  # the extra step: its own tensors counted
                tracker.__enter__()

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            if state.global_step == WARMUP + a.steps + 1:
                tracker.__exit__(None, None, None)

    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(output_dir=tmp, per_device_train_batch_size=a.batch, max_steps=WARMUP + a.steps + 1,
                         learning_rate=1e-6, lr_scheduler_type="constant", logging_steps=10_000, save_strategy="no",
                         report_to=[], bf16=bf16, fp16=cuda and not bf16, gradient_checkpointing=a.gc == "on",
                         max_length=None, beta=0.1, loss_type=["sigmoid"], dataloader_num_workers=0,
                         use_cpu=not cuda, seed=0, disable_tqdm=True, remove_unused_columns=False)
        trainer = Pretokenized(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                               peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                      target_modules="all-linear", task_type="CAUSAL_LM"),
                               callbacks=[Timer()])
        peak = None

        class PeakBeforeExtraStep(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                nonlocal peak
                if state.global_step == WARMUP + a.steps:
                    peak = _peak(trainer.accelerator.device)

        trainer.add_callback(PeakBeforeExtraStep())
        trainer.train()
    device = trainer.accelerator.device
    tokens_per_step = 2 * a.batch * (a.prompt_len + a.completion_len)
    elapsed = times[WARMUP + a.steps - 1] - times[WARMUP - 1]
    head = "completion rows (GPU code path), torch tile fold" if (cuda or a.trl_head == "gpu-path") \
        else "every position (CPU code path), torch tile fold"
    return {"tokens_per_s": tokens_per_step * a.steps / elapsed, "peak_gib": peak,
            "step_tensors_gib": tracker.peak / 2**30,
            "device": runtime.device_name(device), "precision": "bf16" if bf16 else ("fp16" if cuda else "fp32"),
            "checkpointed": "all" if a.gc == "on" else "none", "layout": "padded", "trl_head": head}


def run_head(a: argparse.Namespace) -> dict:
    """The lm_head alone at a 152k vocabulary, forward and backward over the benchmark's completion rows:
    bytes of its own tensors, ours (plain tiles) and TRL's fused head (its torch fallback, completion rows),
    measured here, and both heads' models on a GPU in bf16 (TRL's Triton fold keeps only its projection tile)."""
    import torch
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE, ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    from studio.bench.tensor_memory import TensorMemory
    from studio.train.logps import _head_logprobs, head_transient_bytes

    rows, hidden = 2 * a.batch * a.completion_len, a.head_hidden
    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, VOCAB_152K, bias=False)
    head.weight.requires_grad_(False)  # frozen under LoRA (tied or not)
    h = torch.randn(rows, hidden, requires_grad=True)
    targets = torch.randint(0, VOCAB_152K, (rows,))
    measured = {}
    for name in ("ours", "trl"):
        h.grad = None
        with TensorMemory() as m:
            if name == "ours":
                lp, _, _ = _head_logprobs(head, h, targets, stats=True)
            else:
                lp = ChunkedLogProbFunction.apply(h, head.weight, None, targets, 1.0, _CHUNKED_LOGPROB_CHUNK_SIZE,
                                                  None, 1.0, ("log_probs", "entropy", "mean_logits", "is_top1"))[0]
            forward, forward_kept = m.peak, m.current  # the backward's peak above what the forward left
            m.reset_peak()
            lp.sum().backward()
            measured[name] = {"forward": forward, "backward": m.peak - forward_kept}
            del lp
    ours_model = head_transient_bytes(rows, VOCAB_152K, a.model_hidden, 2)
    trl_tile = min(rows, TOKEN_CHUNK_SIZE) * _CHUNKED_LOGPROB_CHUNK_SIZE * 2
    return {"rows": rows, "hidden_measured": hidden, "measured_fp32": measured,
            "gpu_bf16_model": {"ours": max(ours_model["forward"], ours_model["backward"]) + ours_model["grad_hidden"],
                               "trl": trl_tile + rows * a.model_hidden * 4 + 8 * rows * 4},
            "ours_tiles": [ours_model["row_tile"], ours_model["vocab_tile"]],
            "trl_tile": [min(rows, TOKEN_CHUNK_SIZE), _CHUNKED_LOGPROB_CHUNK_SIZE]}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--side", choices=("ours", "trl", "head"))
    p.add_argument("--gc", choices=("off", "on", "auto"))
    p.add_argument("--shape")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--prompt-len", type=int)
    p.add_argument("--completion-len", type=int)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--layout", default="auto")
    p.add_argument("--compile", type=int, default=0)
    p.add_argument("--trl-head", default="gpu-path")
    p.add_argument("--head-hidden", type=int, default=64)
    p.add_argument("--model-hidden", type=int, default=896)
    a = p.parse_args(argv)
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    result = {"ours": run_ours, "trl": run_trl, "head": run_head}[a.side](a)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _child(args: argparse.Namespace, env: dict, side: str, **extra) -> dict | None:
    cmd = [sys.executable, "-m", "studio.bench.dpo", "--side", side, "--shape", args.model_shape, "--steps",
           str(args.steps), "--batch", str(args.batch), "--prompt-len", str(args.prompt_len), "--completion-len",
           str(args.completion_len), "--threads", str(args.threads), "--trl-head", args.trl_head]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        print(f"{side} {extra} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(line[len("RESULT "):])


def _cases(args: argparse.Namespace) -> list[dict]:
    """(side, checkpointing, layout, compile) of every case, in the order they run."""
    trl_gc = {"off": ["off"], "on": ["on"], "both": ["on", "off"]}[args.checkpointing]
    cases = [] if args.only == "ours" else [{"side": "trl", "gc": gc} for gc in trl_gc]
    if args.only != "trl":
        layouts = {"both": ["auto", "padded"]}.get(args.layout, [args.layout])
        for layout in layouts:
            ours_gc = (["auto"] if args.checkpointing == "both" else []) + trl_gc
            cases += [{"side": "ours", "gc": gc, "layout": layout, "compile": 0} for gc in ours_gc]
        if args.compile:
            cases.append({"side": "ours", "gc": "auto", "layout": layouts[0], "compile": 1})
    return cases


def main(args: argparse.Namespace) -> int:
    """Run every case in a child process and print the table, the ratios and the head's memory."""
    threads = args.threads
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    print(f"DPO benchmark: shape {args.model_shape}, {args.batch} pairs x ({args.prompt_len} prompt + "
          f"{args.completion_len} completion) tokens, LoRA r=16 all-linear, {args.steps} timed steps"
          + (f", {threads} CPU thread(s) per case" if threads > 0 else ""))
    rows = []
    for case in _cases(args):
        extra = {k: v for k, v in case.items() if k != "side"}
        r = _child(args, env, case["side"], **extra)
        if r is None:
            return 1
        r = case | r | {"gradient_checkpointing": case["gc"] == "on" if case["gc"] != "auto" else "auto"}
        rows.append(r)
        name = case["side"] + (" +compile" if case.get("compile") else "")
        print(f"  {name:14s} checkpointing={case['gc']:4s} ({r['checkpointed']:>10s}) {r['layout']:6s} "
              f"{r['tokens_per_s']:10,.0f} tokens/s  peak {r['peak_gib']:6.2f} GiB  step tensors "
              f"{r['step_tensors_gib']:6.3f} GiB  [{r['device']}, {r['precision']}]", flush=True)
    trl_rows = [r for r in rows if r["side"] == "trl"]
    if trl_rows:
        print(f"TRL's lm_head here: {trl_rows[0]['trl_head']}")
    for trl in trl_rows:
        label = "TRL default (checkpointing on)" if trl["gc"] == "on" else "TRL checkpointing off"
        for ours in (r for r in rows if r["side"] == "ours" and r["gc"] in ("auto", trl["gc"])):
            what = f"ours {ours['gc']}" + (f" {ours['layout']}" if ours["layout"] != "auto" else "") + \
                (" +compile" if ours.get("compile") else "")
            print(f"vs {label:31s}: {what:22s} tokens/s {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x, "
                  f"peak memory {ours['peak_gib'] / trl['peak_gib']:.2f}x, step tensors "
                  f"{ours['step_tensors_gib'] / trl['step_tensors_gib']:.2f}x")
    if args.head_memory and args.only != "ours":
        head = _child(args, env, "head", head_hidden=args.head_hidden)
        if head is None:
            return 1
        mib = 2**20
        m = head["measured_fp32"]
        print(f"lm_head transient memory at a {VOCAB_152K:,} vocabulary, {head['rows']} completion rows:")
        print(f"  measured here (fp32, hidden {head['hidden_measured']}, forward / backward): ours "
              f"{m['ours']['forward'] / mib:.0f} / {m['ours']['backward'] / mib:.0f} MiB, TRL "
              f"{m['trl']['forward'] / mib:.0f} / {m['trl']['backward'] / mib:.0f} MiB (its CPU torch fold)")
        g = head["gpu_bf16_model"]
        print(f"  on a GPU in bf16 (model, hidden 896): ours {g['ours'] / mib:.0f} MiB (tiles "
              f"{head['ours_tiles'][0]}x{head['ours_tiles'][1]}), TRL {g['trl'] / mib:.0f} MiB (tile "
              f"{head['trl_tile'][0]}x{head['trl_tile'][1]} bf16); both with the fp32 gradient of the rows")
        rows.append({"side": "head", **head})
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
