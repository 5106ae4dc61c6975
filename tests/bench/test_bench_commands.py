"""`studio bench store|dpo|gui|monitor` at tiny sizes through the CLI: each runs and prints its figures.

Speed itself is never asserted (the machines are shared); the figures must be there and make sense.
The Qt and torch benchmarks run as `python -m studio` in a child process, as a user runs them, so their
QApplication, settings and imports stay out of the test process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from studio.cli import main

NUMBER = r"(\d+(?:\.\d+)?)"


def studio(tmp_path, *args: str, timeout: float = 300) -> str:
    """Run `python -m studio ARGS` offscreen with its settings in tmp_path; its stdout, or fail with stderr."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "STUDIO_SETTINGS": str(tmp_path / "settings.ini")}
    proc = subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def figures(pattern: str, out: str) -> list[float]:
    """The numbers that `pattern` captures in `out` (at least one match required)."""
    found = re.findall(pattern, out)
    assert found, f"no line matches {pattern!r} in:\n{out}"
    return [float(x) for match in found for x in (match if isinstance(match, tuple) else (match,))]


def test_bench_store_prints_the_table_and_json_figures(tmp_path, capsys):
    assert main(["bench", "store", "--sizes", "300", "--out", str(tmp_path / "b"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "import s" in out and "next pair ms, median / p95" in out
    [result] = json.loads(out[out.index("["):])
    assert result["pairs"] == 300 and result["stats_labeled_pairs"] == 300
    assert 0 < result["export_rows"] <= 300  # resolved preferences: ties and split votes are left out
    # 300 imported labels, then alice on half the pairs and bob on a quarter
    assert result["labels"] == 300 + 150 + 75
    for key in ("import_s", "stats_s", "export_s", "file_mib", "db_mib", "peak_rss_mib"):
        assert result[key] > 0, key
    for key in ("next_pair_ms", "next_pair_cursor_ms", "next_pair_new_annotator_ms", "next_pair_needs_more_ms",
                "next_pair_disagreements_ms", "next_pair_worst_ms"):
        assert result[key]["calls"] > 0 and 0 < result[key]["median_ms"] <= result[key]["max_ms"], key
    assert (tmp_path / "b" / "project_300" / "studio.db").exists()  # --out keeps the projects


@pytest.mark.parametrize("what", ["store", "gui"])
@pytest.mark.parametrize("sizes, message", [("lots", "--sizes 'lots': expected comma-separated integers"),
                                            ("0", "--sizes: give at least one positive pair count")])
def test_bench_sizes_are_checked(capsys, what, sizes, message):
    assert main(["bench", what, "--sizes", sizes]) == 2
    assert message in capsys.readouterr().err


def test_bench_gui_prints_start_latency_memory_and_long_text_figures(tmp_path):
    out = studio(tmp_path, "bench", "gui", "--sizes", "200", "--starts", "1", "--labels", "20",
                 "--long-repeats", "1", "--dir", str(tmp_path / "projects"))
    assert "project with 200 pairs ready in" in out
    bare, ours, ratio = figures(rf"bare PySide6 window\s+{NUMBER} ms\n\s+studio gui PROJECT\s+{NUMBER} ms\s+ratio "
                                rf"{NUMBER}x", out)
    assert bare > 0 and ours > 0 and ratio > 0
    # opening the app loads neither torch nor any benchmark code
    [heavy] = re.findall(r"heavy modules loaded at start: (.*)", out)
    assert "torch" not in heavy and "studio.bench" not in heavy
    assert "numpy" not in heavy  # about 135 ms of the window's start: the modules it loads import numpy where used
    assert "200 pairs, queue 'mine':" in out and "200 pairs, queue 'informative':" in out
    latencies = figures(rf"20 labels: p50 {NUMBER} ms, p95 {NUMBER} ms", out)
    assert len(latencies) == 4
    assert all(0 < p50 <= p95 for p50, p95 in zip(latencies[::2], latencies[1::2], strict=True))
    assert len(figures(rf"200 pairs: margins stored in {NUMBER} s, ranked in {NUMBER} s", out)) == 2
    assert figures(rf"memory \(RSS\)\s+{NUMBER} MB", out)[0] > 0
    long_texts = figures(rf"\n  [a-z0-9 ,()-]+?\s+{NUMBER} ms   max\s+{NUMBER} ms", out)
    assert len(long_texts) == 2 * 5 and min(long_texts) > 0  # median and max for each of the five shapes


def test_bench_monitor_prints_redraw_and_labeling_figures(tmp_path):
    out = studio(tmp_path, "bench", "monitor", "--points", "300", "--seconds", "0.3")
    series, points = figures(rf"monitor redraw, {NUMBER} series x {NUMBER} points", out)
    assert series > 10 and points == 300
    redraw = figures(rf"redraw median {NUMBER} ms, p95 {NUMBER} ms, max {NUMBER} ms \(n=10\)", out)
    paint = figures(rf"paint  median {NUMBER} ms, p95 {NUMBER} ms, max {NUMBER} ms \(n=10\)", out)
    assert len(redraw) == len(paint) == 3 * 3 and min(redraw + paint) > 0  # append, full, smoothing
    idle = figures(rf"idle:\s+median {NUMBER} ms", out)
    assert idle[0] > 0
    assert figures(rf"ratio of medians to idle: {NUMBER} \(Runs hidden\)", out)[0] > 0
    assert figures(rf"{NUMBER} rows written", out)[0] > 0  # the fake run did write


@pytest.mark.slow
def test_bench_dpo_ours_prints_tokens_per_second_and_memory(tmp_path):
    # one case in one child process (~10 s, nearly all of it importing torch and transformers); TRL's side
    # doubles that and more, so it is left to manual runs (its API is covered by tests/train/test_parity_trl.py)
    out = studio(tmp_path, "bench", "dpo", "--model-shape", "tiny", "--steps", "1", "--batch", "2",
                 "--prompt-len", "8", "--completion-len", "8", "--threads", "1", "--checkpointing", "off",
                 "--only", "ours", "--json")
    rows = json.loads(out[out.index("\n[") + 1:])
    assert "DPO benchmark: shape tiny, 2 pairs x (8 prompt + 8 completion) tokens" in out
    [row] = rows
    assert row["side"] == "ours" and row["gradient_checkpointing"] is False
    assert row["tokens_per_s"] > 0 and row["peak_gib"] > 0 and row["precision"] in ("fp32", "bf16", "fp16")


@pytest.mark.slow
def test_bench_ppo_splits_a_step_into_its_phases(tmp_path):
    # the PPO case alone (the DPO case is the DPO recipe, run by the DPO benchmark's test): a real run of the
    # recipe in a child process, on a synthetic project built in the parent
    out = studio(tmp_path, "bench", "ppo", "--methods", "ppo", "--steps", "1", "--batch", "2", "--prompt-len", "8",
                 "--completion-len", "4", "--threads", "1", "--json", "--dir", str(tmp_path / "b"))
    assert "PPO benchmark: shape tiny, 2 prompts of 8 tokens, responses of 4 tokens" in out
    [row] = json.loads(out[out.index("\n[") + 1:])
    phases = [row[k] for k in ("generate_s", "forward_s", "score_s", "optimise_s")]
    assert row["method"] == "ppo" and min(phases) > 0
    assert row["step_s"] == pytest.approx(sum(phases))
    assert row["tokens_per_s"] > 0 and row["peak_gib"] > 0 and 1 <= row["response_tokens"] <= 4
    share = figures(rf"ppo: generate {NUMBER}%, forward {NUMBER}%, score {NUMBER}%, optimise {NUMBER}% of the step",
                    out)
    assert sum(share) == pytest.approx(100, abs=2)
    assert main(["bench", "ppo", "--methods", "rloo", "--batch", "6"]) == 2  # 4 responses per prompt


def test_the_cli_loads_no_benchmark_code_until_a_benchmark_runs():
    # every other command builds the full parser; `studio gui` builds only its own (see the gui bench test)
    code = ("import sys; from studio.cli import build_parser; build_parser().parse_args(['bench', 'dpo']); "
            "print(sorted(m for m in sys.modules if m.startswith('studio.bench') or m in ('torch', 'PySide6')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_bench_startup_times_a_run_from_launch_to_its_first_step(tmp_path):
    out = studio(tmp_path, "bench", "startup", "--pairs", "60", "--max-steps", "50", "--stop-after", "0", "--json",
                 "--out", str(tmp_path / "startup"))
    [first, rss] = figures(rf"launch to first optimizer step\s+{NUMBER} s\s+peak RSS {NUMBER} MiB", out)
    assert 0 < first < 300 and 50 < rss < 64_000
    result = json.loads(out[out.index("{"):])
    assert result["pairs"] == 60 and result["to_first_step"]["status"] == "interrupted"  # stopped after step 1
    assert "stop_while_preparing" not in result  # --stop-after 0 skips it
