"""`studio bench ppo`: where a PPO (and RLOO) step's time goes — sampling, the no-grad forwards, the reward model,
the optimisation — with tokens/s and peak memory, next to a DPO step on the same prompts and model shape.

Each case is a real run of the project's recipes (the worker's own code path, on a synthetic project), in a child
process so that its peak memory is its own: a random-weight model of the chosen shape, `batch` prompts of
`prompt_len` tokens; DPO trains on pairs of `completion_len`-token responses to them, PPO and RLOO sample
responses of up to `completion_len` tokens (a random model rarely ends one early) scored by a reward adapter on
the same base. The first 2 steps are warmup; the figures are the recipes' own metrics of the timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from studio.bench.common import work_folder

WARMUP = 2
METHODS = ("dpo", "ppo", "rloo")
RLOO_K = 4


def build_project(folder: Path, shape: str, batch: int, prompt_len: int, completion_len: int) -> tuple[Path, int]:
    """The synthetic project: the model folder, `batch` labeled pairs, and a finished reward run (an untrained
    adapter and head: its cost is a trained one's). Returns the model folder and the reward run's id."""
    import torch

    from studio.bench.dpo import _model
    from studio.core import paths
    from studio.core.configs import RewardConfig, apply_overrides, to_dict
    from studio.store import Project
    from studio.train import checkpoint
    from studio.train.model import wrap_lora
    from studio.train.reward_model import hidden_size, new_head, save_head
    from studio.train.tiny import build_tokenizer, corpus

    model_dir = folder / "model"
    tokenizer = build_tokenizer(1024)  # ids 0, 1, 2 are pad, EOS, BOS, as _model's config says
    model = _model(shape, torch.float32)
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)

    rng, vocabulary = random.Random(0), corpus(0)[0].split()  # common words: about a token each

    def words(n: int) -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(n))

    project = Project.create(folder / "proj")
    for _ in range(batch):
        pid = project.add_prompt(words(prompt_len))
        a, b = project.add_response(pid, words(completion_len)), project.add_response(pid, words(completion_len))
        project.record_label(project.add_pair(pid, a, b), "bench", "a", shown_left="a")
    config = apply_overrides(RewardConfig(), LORA)
    reward_run = project.create_run("reward", str(model_dir), to_dict(config))
    adapter = paths.adapter_dir(project.folder, reward_run)
    peft_model = wrap_lora(model, config)
    checkpoint.save_adapter(peft_model, tokenizer, adapter)
    save_head(new_head(hidden_size(peft_model), 0), adapter)
    project.update_run(reward_run, status="done")
    project.close()
    return model_dir, reward_run


LORA = {"lora.r": 16, "lora.alpha": 32, "lora.dropout": 0.0, "lora.target_modules": "all-linear"}


def run_case(a: argparse.Namespace) -> dict:
    """One run of `a.method` on the project; the mean of its timed steps' metrics."""
    from studio.core import metrics as M
    from studio.core.configs import apply_overrides, config_for, to_dict
    from studio.store import Project
    from studio.train.worker import run_worker

    folder = Path(a.folder)
    common = {**LORA, "max_steps": WARMUP + a.steps, "warmup_ratio": 0.0, "lr_schedule": "constant",
              "learning_rate": 1e-6, "eval_interval": 0, "eval_samples": 0, "checkpoint_interval": 0,
              "max_prompt_length": a.prompt_len, "gradient_checkpointing": bool(a.gc)}
    if a.method == "dpo":
        settings = {**common, "batch_size": a.batch, "max_length": a.prompt_len + a.completion_len}
    else:
        settings = {**common, "max_new_tokens": a.completion_len, "reward_model": str(a.reward_run),
                    "missing_eos_penalty": 0.0}
        settings |= {"batch_size": a.batch} if a.method == "ppo" else {"batch_size": a.batch // RLOO_K,
                                                                       "rloo_k": RLOO_K}
    with Project.open(folder / "proj") as project:
        config = apply_overrides(config_for(a.method)(), settings)
        run_id = project.create_run(a.method, a.model_dir, to_dict(config))
    status = run_worker(folder / "proj", run_id)
    with Project.open(folder / "proj") as project:
        run = project.run(run_id)
        if status != "done":
            raise RuntimeError(f"{a.method} run failed: {run['error']}")
        rows = [(step, name, value) for _, step, name, value, _ in project.metrics(run_id) if step > WARMUP]
    by_name: dict[str, list[float]] = {}
    for _, name, value in rows:
        if value is not None:
            by_name.setdefault(name, []).append(value)
    mean = {name: sum(v) / len(v) for name, v in by_name.items()}
    out = {"method": a.method, "tokens_per_s": mean[M.TOKENS_PER_SECOND], "peak_gib": max(by_name[M.MEMORY]),
           "device": run["device"], "gradient_checkpointing": bool(a.gc)}
    phases = (M.TIME_GENERATE, M.TIME_FORWARD, M.TIME_SCORE, M.TIME_OPTIMISE)
    if a.method == "dpo":
        tokens = 2 * a.batch * (a.prompt_len + a.completion_len)  # chosen and rejected rows, no padding to speak of
        out |= {"step_s": tokens / out["tokens_per_s"], "optimise_s": tokens / out["tokens_per_s"]}
    else:
        out |= {p.split("/")[1] + "_s": mean[p] for p in phases}
        out["step_s"] = sum(mean[p] for p in phases)
        out["response_tokens"] = mean[M.RESPONSE_LENGTH]
    return out


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--method", choices=METHODS)
    p.add_argument("--folder")
    p.add_argument("--model-dir")
    p.add_argument("--reward-run", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--prompt-len", type=int)
    p.add_argument("--completion-len", type=int)
    p.add_argument("--gc", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads > 0:
        os.environ["STUDIO_TORCH_THREADS"] = str(a.threads)  # the worker applies it
    print("RESULT " + json.dumps(run_case(a)), flush=True)
    return 0


COLUMNS = (("step s", "step_s", 9), ("generate", "generate_s", 10), ("forward", "forward_s", 9),
           ("score", "score_s", 8), ("optimise", "optimise_s", 10))


def format_table(rows: list[dict]) -> str:
    """The cases side by side: a step's seconds split by phase, tokens/s, peak memory; then each RL method's
    share of the step per phase."""
    lines = [f"{'':6s}" + "".join(f"{title:>{w}s}" for title, _, w in COLUMNS) + f"{'tokens/s':>11s}{'peak GiB':>10s}"]
    for r in rows:
        cells = "".join(f"{r[key]:{w}.3f}" if key in r else f"{'-':>{w}s}" for _, key, w in COLUMNS)
        lines.append(f"{r['method']:6s}{cells}{r['tokens_per_s']:11,.0f}{r['peak_gib']:10.2f}")
    for r in rows:
        if "generate_s" in r:
            split = ", ".join(f"{title} {100 * r[key] / r['step_s']:.0f}%" for title, key, _ in COLUMNS[1:])
            lines.append(f"{r['method']}: {split} of the step")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Build the project once, run every case in a child process, print the table."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        print(f"studio: error: --methods: {', '.join(unknown) or 'none given'}; choose from {', '.join(METHODS)}",
              file=sys.stderr)
        return 2
    if "rloo" in methods and args.batch % RLOO_K:
        print(f"studio: error: --batch: RLOO samples {RLOO_K} responses per prompt; give a multiple of {RLOO_K}",
              file=sys.stderr)
        return 2
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    print(f"PPO benchmark: shape {args.model_shape}, {args.batch} prompts of {args.prompt_len} tokens, responses of "
          f"{args.completion_len} tokens (DPO: {args.batch} pairs of them), LoRA r=16 all-linear, PPO/RLOO "
          f"4 epochs x 1 minibatch (RLOO: {args.batch // RLOO_K} prompts x {RLOO_K}), {args.steps} timed steps"
          + (f", {args.threads} CPU thread(s)" if args.threads > 0 else ""), flush=True)
    rows = []
    with work_folder(args.dir, "studio-bench-ppo-") as folder:
        model_dir, reward_run = build_project(folder, args.model_shape, args.batch, args.prompt_len,
                                              args.completion_len)
        for method in methods:
            cmd = [sys.executable, "-m", "studio.bench.ppo", "--method", method, "--folder", str(folder),
                   "--model-dir", str(model_dir), "--reward-run", str(reward_run), "--steps", str(args.steps),
                   "--batch", str(args.batch), "--prompt-len", str(args.prompt_len), "--completion-len",
                   str(args.completion_len), "--gc", str(int(args.checkpointing == "on")),
                   "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(f"{method} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            rows.append(json.loads(line[len("RESULT "):]))
    print(f"device: {rows[0]['device']}")
    print(format_table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
