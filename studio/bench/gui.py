"""`studio bench gui`: window start time against bare PySide6, next-pair latency and memory at scale."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from studio.bench.common import rss_mib, summarize_ms, work_folder

# Timed in fresh interpreters: prints READY once the window is shown and the event loop has turned.
BARE_START = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.setCentralWidget(QLabel("bare")); w.resize(1280, 800); w.show()
QTimer.singleShot(0, lambda: (print("READY", flush=True), app.quit()))
app.exec()
"""

# The real `studio gui PROJECT` path (CLI parsing, the gui command, the store), quitting once ready, then
# naming the heavy modules it loaded (benchmark code included: the app's start must not load it).
STUDIO_START = """
import sys
{prelude}
from PySide6.QtCore import QTimer
import studio.ui.app as ui_app
make_app = ui_app.make_app
def ready_app(*args):
    app = make_app(*args)
    QTimer.singleShot(0, lambda: (print("READY", flush=True), app.quit()))
    return app
ui_app.make_app = ready_app
from studio.cli import main
main(["gui", sys.argv[1], "--annotator", "bench"])
heavy = [m for m in ("torch", "transformers", "pyqtgraph", "pandas", "numpy", "studio.bench") if m in sys.modules]
print("HEAVY", ",".join(heavy) or "-", flush=True)
"""
# pandas is in this environment only through the dev extra (trl -> datasets); sqlite-utils imports it
# when present. This variant hides it, as on a plain install.
NO_PANDAS = 'sys.modules["pandas"] = None'


FILLER = ("the model answers clearly and cites a source while the other rambles about unrelated details "
          "then gives a short list of steps with code and a summary")
WORDS = FILLER.split()


def _text(i: int, n_words: int) -> str:
    body = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n_words))
    return f"Answer {i}: **{body[:40]}** {body}\n\n- step one {i}\n- step two\n\n```python\nx = {i}\n```\n"


def build_project(folder: Path, n_pairs: int) -> Path:
    """A project with n_pairs pairs: ten pairs per prompt (every pair of five responses), bulk-inserted."""
    from studio.store import Project, bulk

    if (folder / "studio.db").exists():
        with Project.open(folder) as p:
            if p.pair_count() == n_pairs:
                return folder
        raise SystemExit(f"{folder}: holds a project of another size; remove it or use another --dir")
    n_prompts = (n_pairs + 9) // 10
    with Project.create(folder, name=f"bench {n_pairs:,} pairs") as p:
        bulk.add_prompts(p, ((i, f"Question {i}: explain step {i % 97} of the procedure, with an example.",
                              "eval" if i % 10 == 0 else "train", f"src{i % 4}") for i in range(1, n_prompts + 1)))
        bulk.add_responses(p, ((5 * (i - 1) + k + 1, i, _text(i * 5 + k, 30 + 15 * k), f"m{k}")
                               for i in range(1, n_prompts + 1) for k in range(5)))
        combos = [(x, y) for x in range(5) for y in range(x + 1, 5)]

        def pairs():
            made = 0
            for i in range(1, n_prompts + 1):
                for x, y in combos:
                    if made == n_pairs:
                        return
                    made += 1
                    yield (i, 5 * (i - 1) + x + 1, 5 * (i - 1) + y + 1, f"src{i % 4}")

        bulk.add_pairs(p, pairs())
    return folder


def _start_once(code: str, *args: str) -> tuple[float, str]:
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
           # the probe must not add the bench project to the user's recent projects
           "STUDIO_SETTINGS": os.path.join(tempfile.gettempdir(), "studio-bench-settings.ini")}
    # A user's start reads the app's cached bytecode (pip writes it at install, Python on the first start).
    # Where the environment forbids writing it (as on CI machines), every probe would compile every module
    # it loads from source, a cost that grows with the code and that users pay once, so it is allowed here.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env)
    ready = None
    heavy = ""
    for line in proc.stdout:
        if line.startswith("READY") and ready is None:
            ready = time.perf_counter() - t0
        elif line.startswith("HEAVY"):
            heavy = line.split()[1]
    proc.wait()
    if ready is None:
        raise SystemExit(f"bench gui: the start probe exited with status {proc.returncode} before it was ready")
    return ready, heavy


def measure_start(project: Path, repeat: int) -> None:
    bare, ours, lean, heavy = [], [], [], set()
    _start_once(STUDIO_START.format(prelude=""), str(project))  # untimed: caches the bytecode a user's start reads
    for _ in range(repeat):  # interleaved, so load on the machine hits all alike
        bare.append(_start_once(BARE_START)[0])
        t, h = _start_once(STUDIO_START.format(prelude=""), str(project))
        ours.append(t)
        heavy.add(h)
        lean.append(_start_once(STUDIO_START.format(prelude=NO_PANDAS), str(project))[0])
    mb, mo, ml = statistics.median(bare), statistics.median(ours), statistics.median(lean)
    print(f"start to interactive (median of {repeat} fresh processes each, offscreen, bytecode cached, project "
          f"{project.name}):")
    print(f"  bare PySide6 window               {mb * 1000:7.0f} ms")
    print(f"  studio gui PROJECT                {mo * 1000:7.0f} ms   ratio {mo / mb:.2f}x (target <= 1.5x)")
    print(f"  studio gui PROJECT, no pandas     {ml * 1000:7.0f} ms   ratio {ml / mb:.2f}x")
    print(f"  heavy modules loaded at start: {', '.join(sorted(heavy))}")


def rank_project(project_dir: Path) -> None:
    """Give the project an informative ranking from a made-up reward model (random margins for every pair), as a
    rank job would, unless it has one; prints how long scoring's store writes and the ranking took."""
    import numpy as np

    from studio.core.informative import REWARD, Scorer
    from studio.store import Project, informative

    with Project.open(project_dir) as project:
        if informative.current_ranking(project) is not None:
            return
        run = project.create_run("reward", "bench-model", {}, name="bench reward model", snapshot=[])
        project.update_run(run, status="done", step=1)
        scorer = Scorer(run, 1, REWARD)
        ids = project.pair_ids()
        margins = np.random.default_rng(0).normal(0.0, 2.0, len(ids))
        t = time.perf_counter()
        for lo in range(0, len(ids), 10_000):
            informative.write_scores(project, scorer, ids[lo:lo + 10_000], margins[lo:lo + 10_000].tolist())
        scored = time.perf_counter() - t
        t = time.perf_counter()
        informative.rebuild_ranking(project, [scorer])
        print(f"  {len(ids):,} pairs: margins stored in {scored:.1f} s, ranked in {time.perf_counter() - t:.1f} s "
              f"(in {informative.CHUNK:,}-row transactions)", flush=True)


def measure_labeling(project_dir: Path, n_labels: int, queue: str = "mine") -> None:
    from PySide6.QtWidgets import QApplication

    from studio.store import Project
    from studio.ui.app import make_app
    from studio.ui.data_view import DataView
    from studio.ui.label_view import LabelView

    app = make_app()
    rss0 = rss_mib()
    project = Project.open(project_dir)
    t0 = time.perf_counter()
    view = LabelView(project, f"bench-{time.time_ns()}")  # a fresh annotator: a full 'mine' queue
    view.resize(1280, 800)
    view.show()
    QApplication.processEvents()
    first = time.perf_counter() - t0
    if queue != "mine":
        view.set_queue(queue)
        QApplication.processEvents()
    sides = ("left", "right", "tie", "left", "both_bad", "right", "skip")
    times = []
    for i in range(n_labels + 5):
        t = time.perf_counter()
        view.choose(sides[i % len(sides)])
        QApplication.processEvents()
        view.repaint()  # paint now, so the figure includes drawing the new pair
        if i >= 5:  # the first few warm caches
            times.append((time.perf_counter() - t) * 1000)
    latency = summarize_ms(times)
    t = time.perf_counter()
    data = DataView(project)
    data.resize(1280, 800)
    data.show()
    data.refresh()
    QApplication.processEvents()
    data_first = time.perf_counter() - t
    rss = rss_mib()
    n = project.pair_count()
    print(f"{n:,} pairs, queue {queue!r}:")
    print(f"  label view ready       {first * 1000:7.0f} ms")
    print(f"  next pair (label + load + render), {len(times)} labels: p50 {latency['median_ms']:.1f} ms, "
          f"p95 {latency['p95_ms']:.1f} ms (target p95 <= 30 ms)")
    print(f"  data view first page   {data_first * 1000:7.0f} ms (count + first {data.model.rowCount()} rows)")
    print(f"  memory (RSS)           {rss:7.0f} MB with label + data views open ({rss - rss0:+.0f} MB for the "
          f"project)")
    data.close()
    view.close()
    data.deleteLater()
    view.deleteLater()
    app.processEvents()
    project.close()


LONG = 100_000
LONG_SHAPES = {
    "prose, many paragraphs": lambda i: ((FILLER + f" {i}.\n\n") * (LONG // len(FILLER) + 1))[:LONG],
    "one 100k paragraph": lambda i: ((FILLER + f" {i} ") * (LONG // len(FILLER) + 1))[:LONG],
    "no spaces (base64-like)": lambda i: (f"QUJD{i}" * LONG)[:LONG],
    "markdown, 19k (rendered)": lambda i: (f"## Part {i}\n\n**bold** text, `code` and a list:\n\n- one\n- two\n\n"
                                          "```python\nprint('x')\n```\n\n" * 400)[:19_000],
    "chat prompt, 200 turns": None,
}


def measure_long_responses(folder: Path, repeat: int = 5) -> None:
    """Next-pair latency (label + load + render + paint) onto pairs with 100k-character responses."""
    from PySide6.QtWidgets import QApplication

    from studio.store import Project
    from studio.ui.app import make_app
    from studio.ui.label_view import LabelView

    make_app()
    with Project.create(folder) as p:
        for name, make in LONG_SHAPES.items():
            for i in range(repeat + 1):
                if make is None:
                    turns = [{"role": "user" if k % 2 == 0 else "assistant", "content": f"Turn {k}: {FILLER}"}
                             for k in range(199)]
                    pid = p.add_prompt(messages=[*turns, {"role": "user", "content": f"Last question {i}?"}],
                                       source=name)
                    a, b = _text(i, 40), _text(i + 1, 60)
                else:
                    pid = p.add_prompt(f"{name} {i}", source=name)
                    a, b = make(i), make(i + 7)
                p.add_pair(pid, p.add_response(pid, a), p.add_response(pid, b), source=name)
    project = Project.open(folder)
    view = LabelView(project, "bench-long")
    view.resize(1280, 800)
    view.show()
    QApplication.processEvents()
    print(f"next pair onto long texts (label + load + render + paint; median and max of {repeat}, 1280x800):")
    for name in LONG_SHAPES:
        view.set_filters(source=name)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            view.choose("skip")
            QApplication.processEvents()
            view.repaint()
            times.append((time.perf_counter() - t) * 1000)
        print(f"  {name:26s} {statistics.median(times):7.1f} ms   max {max(times):7.1f} ms")
    view.close()
    view.deleteLater()
    QApplication.processEvents()
    project.close()


def run(sizes: list[int], starts: int = 5, labels: int = 200, keep_dir: Path | None = None,
        long_repeats: int = 5) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with work_folder(keep_dir, "studio-bench-gui-") as base:
        folders = {}
        for n in sizes:
            t = time.perf_counter()
            folders[n] = build_project(base / f"pairs-{n}", n)
            print(f"project with {n:,} pairs ready in {time.perf_counter() - t:.1f} s", flush=True)
        measure_start(folders[min(sizes)], starts)
        for n in sizes:
            measure_labeling(folders[n], labels)
            # the informative queue walks a ranking instead of ids: the same measure on it
            rank_project(folders[n])
            measure_labeling(folders[n], labels, "informative")
        if long_repeats > 0:
            long_dir = base / "long-texts"
            if long_dir.exists():
                shutil.rmtree(long_dir)
            measure_long_responses(long_dir, long_repeats)
