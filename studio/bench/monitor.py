"""`studio bench monitor`: the monitor's redraw time at 100k points per series, and the labeling
view's next-pair latency idle and while a run writes 20 metrics at 10 steps/s."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from studio.bench.common import format_ms
from studio.core import metrics as M

WRITER_METRICS = [*M.TRAIN_METRICS, M.EPOCH, M.NLL, "logps/chosen_mean", "logps/rejected_mean"][:20]


def write_metrics(project_folder: str, run_id: int, steps_per_s: float, seconds: float) -> None:
    """A worker stand-in: one transaction of 20 metric rows per step, at steps_per_s."""
    from studio.store import Project

    project = Project.open(project_folder)
    end = time.monotonic() + seconds
    step = 0
    while time.monotonic() < end:
        step += 1
        project.log_metrics(run_id, [(step, n, (step % 97) / 97) for n in WRITER_METRICS])
        project.update_run(run_id, step=step)
        time.sleep(1 / steps_per_s)


def _make_project(folder: Path, pairs: int):
    """A project with `pairs` prompts, each with a short and a long response as one pair."""
    from studio.store import Project, bulk

    project = Project.create(folder)
    bulk.add_prompts(project, ((i + 1, f"Prompt {i}: explain item {i} in a sentence or two.", "train", None)
                               for i in range(pairs)))
    bulk.add_responses(project, (row for i in range(pairs) for row in (
        (2 * i + 1, i + 1, f"Item {i} is short.", None),
        (2 * i + 2, i + 1, f"Item {i} is described here at somewhat greater length, with detail.", None))))
    bulk.add_pairs(project, ((i + 1, 2 * i + 1, 2 * i + 2, None) for i in range(pairs)))
    return project


def bench_redraw(points: int = 100_000, repeats: int = 10) -> dict:
    """Redraw times of the monitor with `points` per series for every metric it charts."""
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from studio.ui.runs.charts import CHARTS
    from studio.ui.runs.monitor import MonitorView
    from studio.ui.runs.poller import Poller

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        project = _make_project(Path(tmp) / "p", 0)
        run_id = project.create_run("dpo", "bench", {})
        names = [line.metric for spec in CHARTS for line in spec.lines]
        names += [M.eval_name(line.metric) for spec in CHARTS for line in spec.lines if line.eval_twin]
        t0 = time.time()
        rng = np.random.default_rng(0)
        walks = {name: np.cumsum(rng.normal(size=points + 1)) * 0.01 for name in names}
        # as a worker logs them: step by step, every metric of a step together, evals every 50 steps,
        # 2 steps per second of wall time (so the time axis is realistic too)
        block = 100
        for lo in range(1, points + 1, block):
            rows = []
            for step in range(lo, min(lo + block, points + 1)):
                rows += [(step, name, float(walks[name][step])) for name in names
                         if not name.startswith(M.EVAL_PREFIX) or step % 50 == 0]
            project.log_metrics(run_id, rows, at=t0 + lo / 2)
        project.update_run(run_id, status="running")  # new steps arrive only while a run runs
        poller = Poller(project)
        view = MonitorView(project, poller)
        view.redraw_timer.stop()
        view.resize(1600, 1000)
        view.show()
        # opening the run: the first chunk at once, the rest chunk by chunk in the event loop
        load = time.perf_counter()
        view.set_run(run_id)
        app.processEvents()
        first_ms = (time.perf_counter() - load) * 1000
        steps_ms: list[float] = []
        while view.rd.behind:
            t = time.perf_counter()
            app.processEvents()
            steps_ms.append((time.perf_counter() - t) * 1000)
        view.redraw()
        load_ms = (time.perf_counter() - load) * 1000

        def timed(fn) -> tuple[list[float], list[float]]:
            """(redraw ms: buffers to curves, paint ms: Qt painting the charts) per repeat."""
            redraw, paint = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                view.graphics.viewport().repaint()
                redraw.append((t1 - t) * 1000)
                paint.append((time.perf_counter() - t1) * 1000)
            return redraw, paint

        def full():
            view.x_combo.setCurrentIndex(1 - view.x_combo.currentIndex())
            view.redraw()

        def append():
            # 10 new steps for every train metric, as one poll brings them
            step = int(view.rd.series[M.LOSS].step[view.rd.series[M.LOSS].n - 1])
            for name, s in view.rd.series.items():
                if not name.startswith(M.EVAL_PREFIX):
                    s.extend(np.arange(step + 1, step + 11), t0 + np.arange(step + 1, step + 11) / 2,
                             rng.normal(size=10))
                    view._dirty.add(name)
            view.redraw()

        def smoothing_change():
            view.smooth_slider.setValue(59 if view.smooth_slider.value() == 60 else 60)
            view.redraw()

        result = {"series": len(view.rd.series), "points": points, "load_ms": load_ms, "first_ms": first_ms,
                  "load_steps": steps_ms, "rows": view.rd.rows_read,
                  "append": timed(append), "full": timed(full), "smoothing": timed(smoothing_change)}
        view.close()
        project.close()
    return result


def bench_labeling(pairs: int = 2000, seconds: float = 6.0, steps_per_s: float = 10.0) -> dict:
    """Next-pair latency of the labeling view (show_next), idle and while a run writes metrics with
    the Runs monitor polling in the same process (the worst case: both sections live)."""
    from PySide6.QtWidgets import QApplication

    from studio.ui.label_view import LabelView
    from studio.ui.runs.monitor import MonitorView
    from studio.ui.runs.poller import Poller

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "p"
        project = _make_project(folder, pairs)
        run_id = project.create_run("dpo", "bench", {})
        view = LabelView(project, "bench")
        view.resize(1200, 800)
        view.show()
        app.processEvents()

        def measure(duration: float) -> list[float]:
            out: list[float] = []
            end = time.monotonic() + duration
            after = 0
            while time.monotonic() < end:
                t = time.perf_counter()
                view.show_next(after=after)
                app.processEvents()
                out.append((time.perf_counter() - t) * 1000)
                after = view.pair.id if view.pair else 0
                time.sleep(0.02)  # a person does not press keys back to back; let timers run
                app.processEvents()
            return out

        idle = measure(seconds)
        writer = subprocess.Popen([sys.executable, "-m", "studio.bench.monitor", "--write", str(folder), str(run_id),
                                   str(steps_per_s), str(2 * seconds + 3)])
        time.sleep(1.0)
        # as in the app: the Runs section is hidden while labeling, so its poller is stopped
        busy_hidden = measure(seconds)
        # worst case: the monitor open in view (another window) and polling in the same process
        poller = Poller(project)
        monitor = MonitorView(project, poller)
        monitor.resize(1600, 1000)
        monitor.show()
        poller.start()
        monitor.set_run(run_id)
        busy = measure(seconds)
        writer.wait()
        rows = project.metric_count(run_id)
        monitor.close()
        poller.stop()
        view.close()
        project.close()
    return {"idle": idle, "busy_hidden": busy_hidden, "busy": busy, "rows_written": rows}


def run_bench(points: int = 100_000, seconds: float = 6.0) -> int:
    """Print the figures (the `studio bench monitor` entry point)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    r = bench_redraw(points)
    print(f"monitor redraw, {r['series']} series x {r['points']:,} points (eval series 1/50 of that):")
    print(f"  opening the run ({r['rows']:,} metric rows): first chunk shown after {r['first_ms']:.0f} ms, "
          f"all loaded after {r['load_ms']:.0f} ms; event loop blocked per chunk: {format_ms(r['load_steps'])}")
    for key, what in (("append", "10 new steps per series (incremental EMA + setData)"),
                      ("full", "everything redrawn (x axis switched between step and time)"),
                      ("smoothing", "smoothing slider moved (EMA recomputed)")):
        redraw, paint = r[key]
        print(f"  {what}:\n    redraw {format_ms(redraw)}\n    paint  {format_ms(paint)}")
    lab = bench_labeling(seconds=seconds)
    idle = statistics.median(lab["idle"])
    print("labeling view next-pair latency (LabelView.show_next + event processing):")
    print(f"  idle:                                        {format_ms(lab['idle'])}")
    print(f"  run writing 20 metrics at 10 steps/s:        {format_ms(lab['busy_hidden'])}")
    print(f"  same, monitor also shown and polling:        {format_ms(lab['busy'])}")
    print(f"  ratio of medians to idle: {statistics.median(lab['busy_hidden']) / idle:.2f} (Runs hidden), "
          f"{statistics.median(lab['busy']) / idle:.2f} (monitor shown); target <= 1.5; "
          f"{lab['rows_written']} rows written")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio.bench.monitor")
    ap.add_argument("--write", nargs=4, metavar=("PROJECT", "RUN", "STEPS_PER_S", "SECONDS"),
                    help="internal: act as a run writing metrics")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args(argv)
    if args.write:
        folder, run, rate, secs = args.write
        write_metrics(folder, int(run), float(rate), float(secs))
        return 0
    return run_bench(args.points, args.seconds)


if __name__ == "__main__":
    raise SystemExit(main())
