"""`studio bench import-wait`: how long another writer waits while a large file is imported.

A second process labels a pair every ~50 ms (as a person in the labeling view would, only faster) while
this one imports a synthetic TRL file of N pairs into the same project; it records how long each label
took to save. The longest of those waits is what a person labeling during an import would feel, and
what a training worker's metric writes would stall for.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.bench.common import work_folder
from studio.bench.store import write_synthetic
from studio.store.db import ProjectError
from studio.store.import_writing import import_file
from studio.store.project import Project

LABELER = "bench-labeler"
INTERVAL_S = 0.05


def label_loop(folder: str, out: str, stop_file: str) -> None:
    """Label the project's pairs one after another every INTERVAL_S until `stop_file` exists; write each
    save's wait (seconds) and the errors to `out` as JSON."""
    waits: list[float] = []
    errors: list[str] = []
    with Project.open(folder) as project:
        pair_ids = project.pair_ids()
        print("ready", flush=True)
        i = 0
        while not Path(stop_file).exists():
            pair_id = pair_ids[i % len(pair_ids)]
            i += 1
            t = time.monotonic()
            try:
                project.record_label(pair_id, LABELER, "a" if i % 2 else "b", "a")
            except ProjectError as e:
                errors.append(str(e).splitlines()[0][:200])
            wait = time.monotonic() - t
            waits.append(wait)
            time.sleep(max(0.0, INTERVAL_S - wait))
    Path(out).write_text(json.dumps({"waits": waits, "errors": errors}))


def _seed_file(path: Path, n: int) -> None:
    """Pairs for the labeler, with prompts the big file does not have."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"Seed {i}?", "response_a": f"yes {i}", "response_b": f"no {i}"}) + "\n")


def measure(pairs: int, folder: Path, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Import `pairs` pairs while a labeler process writes; the import's time and the labeler's waits."""
    data = folder / f"pairs_{pairs}.jsonl"
    log(f"writing {data.name}")
    write_synthetic(data, pairs)
    seed = folder / "seed.jsonl"
    _seed_file(seed, 1000)
    proj = folder / "project"
    shutil.rmtree(proj, ignore_errors=True)
    with Project.create(proj) as project:
        import_file(project, seed)
    stop = folder / "stop"
    stop.unlink(missing_ok=True)
    out = folder / "labeler.json"
    code = ("import sys; from studio.bench.import_wait import label_loop; "
            "label_loop(sys.argv[1], sys.argv[2], sys.argv[3])")
    labeler = subprocess.Popen([sys.executable, "-c", code, str(proj), str(out), str(stop)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert labeler.stdout is not None
        labeler.stdout.readline()  # "ready"
        time.sleep(0.5)  # a few labels before the import starts
        log(f"importing {pairs:,} pairs while the labeler writes every {INTERVAL_S * 1000:.0f} ms")
        with Project.open(proj) as project:
            t = time.perf_counter()
            report = import_file(project, data)
            import_s = time.perf_counter() - t
        time.sleep(0.5)
    finally:
        stop.touch()
        labeler.wait(timeout=60)
    result = json.loads(out.read_text())
    waits = sorted(result["waits"])
    return {
        "pairs": pairs, "pairs_added": report.pairs_added, "import_s": import_s,
        "labels_written": len(waits) - len(result["errors"]), "label_errors": len(result["errors"]),
        "first_error": result["errors"][0] if result["errors"] else None,
        "longest_wait_s": waits[-1] if waits else None,
        "p99_wait_s": waits[int(0.99 * (len(waits) - 1))] if waits else None,
        "median_wait_s": statistics.median(waits) if waits else None,
        "waits_over_1s": sum(w > 1.0 for w in waits),
    }


def run(pairs: int, out_dir: str | Path | None = None, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    with work_folder(out_dir, "studio-import-wait-") as folder:
        return measure(pairs, folder, log)


def format_result(r: dict[str, Any]) -> str:
    lines = [
        f"import of {r['pairs']:,} pairs: {r['import_s']:.1f} s ({r['pairs_added']:,} added)",
        f"labeler: {r['labels_written']:,} labels saved, {r['label_errors']} failed"
        + (f" (first: {r['first_error']})" if r["first_error"] else ""),
        f"longest wait of a label save: {r['longest_wait_s']:.2f} s; p99 {r['p99_wait_s'] * 1000:.0f} ms; "
        f"median {r['median_wait_s'] * 1000:.1f} ms; {r['waits_over_1s']} waits over 1 s",
    ]
    return "\n".join(lines)
