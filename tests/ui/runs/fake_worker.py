"""A stand-in for `studio train` without torch: writes status, metrics and samples like the real worker.

Usage: python fake_worker.py PROJECT (--run ID | --resume ID) [--steps N] [--rate STEPS_PER_S]
[--metrics N] [--fail-at STEP] [--kill-at STEP] [--eval-every N] (FAKE_KILL_RUN=ID: --kill-at applies to that
run only). It honours stop requests and SIGTERM between steps
(then status 'interrupted'), and like the real worker's claim it refuses a run in the wrong state
(--run: queued only; --resume: interrupted or failed only), so tests of Stop/Resume exercise the same
protocol as the real worker.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from studio.core import metrics as M
from studio.core import paths
from studio.store.project import Project, now_iso

TRAIN_NAMES = [M.LOSS, M.REWARDS_CHOSEN, M.REWARDS_REJECTED, M.REWARDS_MARGINS, M.REWARDS_ACCURACIES,
               M.LOGPS_CHOSEN, M.LOGPS_REJECTED, M.LOGITS_CHOSEN, M.LOGITS_REJECTED, M.ENTROPY, M.GRAD_NORM,
               M.LEARNING_RATE, M.TOKENS_PER_SECOND, M.MEMORY, M.LOGRATIO_CHOSEN, M.LOGRATIO_REJECTED, M.EPOCH, M.NLL,
               "logps/chosen_mean", "logps/rejected_mean"]
EVAL_NAMES = [M.eval_name(M.LOSS), M.eval_name(M.REWARDS_MARGINS), M.eval_name(M.REWARDS_ACCURACIES),
              M.eval_name(M.REWARDS_CHOSEN), M.eval_name(M.REWARDS_REJECTED), M.EVAL_KL]


def value(name: str, step: int, total: int) -> float:
    """Plausible, deterministic curves: margins rise while the chosen responses, too, become less likely
    than under the reference (both log-probs fall, logratio/chosen goes negative: likelihood displacement)."""
    p = step / max(total, 1)
    wobble = 0.05 * math.sin(step * 1.7)
    table = {
        M.LOSS: 0.693 * math.exp(-2 * p) + wobble,
        M.REWARDS_CHOSEN: -0.2 * p + wobble,
        M.REWARDS_REJECTED: -1.2 * p + wobble,
        M.REWARDS_MARGINS: 1.0 * p + wobble,
        M.REWARDS_ACCURACIES: min(1.0, 0.5 + 0.5 * p + wobble),
        M.LOGPS_CHOSEN: -40 - 6 * p + wobble,
        M.LOGPS_REJECTED: -45 - 14 * p + wobble,
        M.LEARNING_RATE: 5e-5 * min(1.0, 10 * p) * (1 - p),
        M.TOKENS_PER_SECOND: 900 + 50 * math.sin(step),
        M.MEMORY: 1.2 + 0.01 * p,
        M.LOGRATIO_CHOSEN: -0.1 * p,
        M.LOGRATIO_REJECTED: -0.4 * p,
        M.EVAL_KL: 0.4 * p,
    }
    return table.get(name if name in table else name.removeprefix(M.EVAL_PREFIX), p + wobble)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("project")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", type=int)
    g.add_argument("--resume", type=int)
    ap.add_argument("--steps", type=int, default=int(os.environ.get("FAKE_STEPS", 40)))
    ap.add_argument("--rate", type=float, default=float(os.environ.get("FAKE_RATE", 20)))
    ap.add_argument("--metrics", type=int, default=int(os.environ.get("FAKE_METRICS", len(TRAIN_NAMES))))
    ap.add_argument("--fail-at", type=int, default=int(os.environ.get("FAKE_FAIL_AT", 0)))
    ap.add_argument("--eval-every", type=int, default=int(os.environ.get("FAKE_EVAL_EVERY", 10)))
    ap.add_argument("--kill-at", type=int, default=int(os.environ.get("FAKE_KILL_AT", 0)),
                    help="die by SIGKILL at this step, saying nothing (as a worker killed outright)")
    args = ap.parse_args(argv)
    run_id = args.run or args.resume
    project = Project.open(args.project)
    stop = {"term": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("term", True))
    run = project.run(run_id)
    # the real worker's claim: --run takes a queued run, --resume an interrupted or failed one
    allowed = ("interrupted", "failed") if args.resume else ("queued",)
    if run["status"] not in allowed:
        print(f"studio: error: run {run_id}: is {run['status']}, not {' or '.join(allowed)}", flush=True)
        return 2
    start = run["step"] if args.resume else 0
    project.update_run(run_id, status="running", pid=os.getpid(), host=socket.gethostname(), device="cpu (fake)",
                       started_at=run["started_at"] or now_iso(), resumed_at=now_iso(), total_steps=args.steps,
                       stop_requested=0, error=None)
    print(f"fake worker: run {run_id} from step {start} to {args.steps}", flush=True)
    names = TRAIN_NAMES[: args.metrics]
    for step in range(start + 1, args.steps + 1):
        time.sleep(1.0 / args.rate)
        if args.kill_at and step == args.kill_at and os.environ.get("FAKE_KILL_RUN", str(run_id)) == str(run_id):
            os.kill(os.getpid(), signal.SIGKILL)
        if args.fail_at and step == args.fail_at:
            print("Traceback (most recent call last):\n  File \"fake_worker.py\"\nRuntimeError: CUDA out of memory "
                  "(fake)", flush=True)
            tail = paths.log_path(args.project, run_id).read_text() if paths.log_path(args.project, run_id).exists() \
                else None
            project.update_run(run_id, status="failed", error="RuntimeError: CUDA out of memory (fake)",
                               log_tail=tail, ended_at=now_iso())
            return 1
        rows = [(step, n, value(n, step, args.steps)) for n in names]
        if step % args.eval_every == 0 or step == args.steps:
            rows += [(step, n, value(n, step, args.steps)) for n in EVAL_NAMES]
            # two probe prompts, two samples each, with the measures the real worker keeps in meta
            project.add_samples(run_id, step, [
                {"prompt_id": i + 1, "prompt_text": f"Eval prompt {i}", "text": f"Sample {k} of {i} at step {step}.",
                 "meta": {"sample": k, "tokens": 8 + step // 10, "hit_cap": k == 1, "cap": 16, "repetition": 0.0}}
                for i in range(2) for k in range(2)])
        project.log_metrics(run_id, rows)
        project.update_run(run_id, step=step, heartbeat_at=now_iso())
        if stop["term"] or project.stop_requested(run_id):
            project.update_run(run_id, status="interrupted", ended_at=now_iso())
            print(f"fake worker: stopped at step {step}", flush=True)
            return 0
    project.update_run(run_id, status="done", ended_at=now_iso())
    print("fake worker: done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
