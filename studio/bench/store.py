"""`studio bench store`: import, stats, export and next-pair timings on synthetic pairs; prints figures."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.bench.common import peak_rss_mib, summarize_ms, time_calls, work_folder
from studio.store import bulk
from studio.store.export import export_file
from studio.store.import_writing import import_file
from studio.store.project import Project
from studio.store.statistics import project_stats

_TEXT = ("the model should answer clearly and briefly with a short example when it helps the reader understand why "
         "a preference pair teaches more than a single demonstration of good behaviour in context")
WORDS = tuple(_TEXT.split())


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_synthetic(path: Path, n: int, seed: int = 0) -> None:
    """A TRL standard JSONL file of n labeled pairs; every prompt has two pairs, texts of varied length."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            prompt = f"Question {i // 2}: {_sentence(rng, 8)}?"
            row = {"prompt": prompt, "chosen": f"{i}. {_sentence(rng, rng.randint(10, 40))}",
                   "rejected": f"{i}. {_sentence(rng, rng.randint(5, 30))}"}
            f.write(json.dumps(row) + "\n")


def _add_human_labels(project: Project, share: float, seed: int = 1) -> dict[str, int]:
    """Labels by two annotators on a share of the pairs, in bulk: alice labels a contiguous run from the
    start (as when working through the queue), bob a random subset; they disagree now and then."""
    rng = random.Random(seed)
    n = project.pair_count()
    k = int(n * share)
    rows = []
    for pid in range(1, k + 1):
        rows.append((pid, "alice", rng.choice("aab") if rng.random() < 0.9 else "tie", rng.choice("ab"),
                     rng.uniform(3, 40)))
    for pid in rng.sample(range(1, n + 1), k // 2):
        rows.append((pid, "bob", rng.choice("aabb"), rng.choice("ab"), rng.uniform(3, 60)))
    bulk.add_labels(project, rows)
    return {"alice": k, "bob": k // 2}


def bench_size(n: int, folder: Path, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"pairs_{n}.jsonl"
    log(f"[{n}] writing {data.name}")
    write_synthetic(data, n)
    proj_dir = folder / f"project_{n}"
    shutil.rmtree(proj_dir, ignore_errors=True)
    out: dict[str, Any] = {"pairs": n, "file_mib": round(data.stat().st_size / 2**20, 1)}
    with Project.create(proj_dir) as project:
        log(f"[{n}] importing")
        t = time.perf_counter()
        report = import_file(project, data)
        out["import_s"] = time.perf_counter() - t
        out["import_peak_rss_mib"] = peak_rss_mib()
        assert report.pairs_added == n, report
        log(f"[{n}] adding human labels")
        human = _add_human_labels(project, share=0.5)
        out["labels"] = n + sum(human.values())
        log(f"[{n}] stats")
        t = time.perf_counter()
        s = project_stats(project)
        out["stats_s"] = time.perf_counter() - t
        out["stats_labeled_pairs"] = s["counts"]["labeled_pairs"]
        log(f"[{n}] export")
        t = time.perf_counter()
        exp = export_file(project, folder / f"export_{n}.jsonl", "trl")
        out["export_s"] = time.perf_counter() - t
        out["export_rows"] = exp.rows
        log(f"[{n}] next pair")
        rng = random.Random(2)
        # Without a cursor: alice's session continues after her latest label (half the pairs done), and
        # each call is followed by a label, as in the labeling view.
        times = []
        for _ in range(200):
            t = time.perf_counter()
            pid = project.next_pair("alice")
            times.append((time.perf_counter() - t) * 1000)
            if pid is None:  # a small benchmark can run out of pairs
                break
            project.record_label(pid, "alice", "a", "a", seconds=1.0)
        out["next_pair_ms"] = summarize_ms(times)
        # With a cursor anywhere in the project (the view jumping around): bob's queue after a random pair.
        out["next_pair_cursor_ms"] = time_calls(lambda: project.next_pair("bob", after=rng.randint(1, n)), 200)
        # A new annotator with no labels at all, and the 'needs another label' queue.
        out["next_pair_new_annotator_ms"] = time_calls(lambda: project.next_pair("carol"), 100)
        out["next_pair_needs_more_ms"] = time_calls(
            lambda: project.next_pair("carol", queue="needs_more", after=rng.randint(1, n)), 100)
        out["next_pair_disagreements_ms"] = time_calls(
            lambda: project.next_pair("carol", queue="disagreements", after=rng.randint(1, n)), 100)
        # The worst case of the default queue: a cursor before a long run of the annotator's own labels
        # (alice labeled the first half contiguously), so the scan must step over all of them.
        out["next_pair_worst_ms"] = time_calls(lambda: project.next_pair("alice", after=1), 5)
        out["peak_rss_mib"] = peak_rss_mib()
    out["db_mib"] = round(sum(p.stat().st_size for p in proj_dir.glob("studio.db*")) / 2**20, 1)
    return out


def run_store_bench(sizes: list[int], out_dir: str | Path | None = None,
                    log: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:
    with work_folder(out_dir, "studio-bench-") as folder:
        return [bench_size(n, folder, log) for n in sizes]


def format_table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("pairs", "{pairs:,}"),
        ("input file MiB", "{file_mib}"),
        ("import s", "{import_s:.2f}"),
        ("stats s (labeled pairs)", "{stats_s:.2f} ({stats_labeled_pairs:,})"),
        ("export trl s", "{export_s:.2f}"),
        ("next pair ms, median / p95", "{next_pair_ms[median_ms]:.2f} / {next_pair_ms[p95_ms]:.2f}"),
        ("  with cursor, median / p95", "{next_pair_cursor_ms[median_ms]:.2f} / {next_pair_cursor_ms[p95_ms]:.2f}"),
        ("  new annotator, median / p95",
         "{next_pair_new_annotator_ms[median_ms]:.2f} / {next_pair_new_annotator_ms[p95_ms]:.2f}"),
        ("  needs_more queue, median / p95",
         "{next_pair_needs_more_ms[median_ms]:.2f} / {next_pair_needs_more_ms[p95_ms]:.2f}"),
        ("  disagreements queue, median / p95",
         "{next_pair_disagreements_ms[median_ms]:.2f} / {next_pair_disagreements_ms[p95_ms]:.2f}"),
        ("  worst: cursor before own labeled half", "{next_pair_worst_ms[median_ms]:.1f}"),
        ("peak RSS MiB after import", "{import_peak_rss_mib:.0f}"),
        ("peak RSS MiB overall", "{peak_rss_mib:.0f}"),
        ("database MiB", "{db_mib}"),
    ]
    cells = [[label] + [fmt.format(**r) for r in results] for label, fmt in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                 strict=True)))
                     for row in cells)
