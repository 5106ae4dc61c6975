"""Screenshot views of the Runs section (`studio screenshot --view runs|monitor|compare`), and a
small stand-alone grabber: `python -m studio.ui.runs.screens PROJECT --view monitor --out x.png`."""

from __future__ import annotations

import argparse
import sys

from PySide6.QtWidgets import QWidget


def _project(window, args):
    project = getattr(window, "project", None)
    if project is None:
        from studio.store import Project

        project = Project.open(args.project)
    return project


def _run_ids(project, args) -> list[int]:
    # `studio screenshot --run ID` stores its ids as `runs`; this module's own main() as `run`
    return [int(r) for r in (getattr(args, "runs", None) or getattr(args, "run", None) or [])]


def runs_view(window, args) -> QWidget:
    """The whole section: runs table above, the monitor of the chosen (or latest) run below."""
    from studio.ui.runs.panel import RunsPanel

    project = _project(window, args)
    panel = RunsPanel(project)
    panel.keeps_queue_going = False  # a screenshot starts no training
    panel.ensure_views()
    ids = _run_ids(project, args) or [r["id"] for r in project.runs()[-1:]]
    if ids:
        panel.show_run(ids[0])
        panel.poller.finish_loading(ids[0])
    panel.monitor.redraw()
    return panel


def monitor_view(window, args) -> QWidget:
    from studio.ui.runs.monitor import MonitorView
    from studio.ui.runs.poller import Poller

    project = _project(window, args)
    poller = Poller(project)
    view = MonitorView(project, poller)
    poller.setParent(view)
    ids = _run_ids(project, args) or [r["id"] for r in project.runs()[-1:]]
    poller.start()
    if ids:
        view.set_run(ids[0])
        poller.finish_loading(ids[0])
    view.redraw()
    return view


def compare_view(window, args) -> QWidget:
    from studio.ui.runs.compare import CompareView
    from studio.ui.runs.poller import Poller

    project = _project(window, args)
    poller = Poller(project)
    view = CompareView(project, poller)
    poller.setParent(view)
    poller.start()
    view.set_runs(_run_ids(project, args) or [r["id"] for r in project.runs()])
    return view


def arena_view(window, args) -> QWidget:
    """The Arena tab on the newest arena."""
    from studio.ui.runs.arena_view import ArenaView

    view = ArenaView(_project(window, args))
    view.refresh()
    return view


def register_screenshot_views(register) -> None:
    """Register screenshot views: register(name, factory(window, args) -> QWidget)."""
    register("runs", runs_view)
    register("monitor", monitor_view)
    register("compare", compare_view)
    register("arena", arena_view)


VIEWS = {"runs": runs_view, "monitor": monitor_view, "compare": compare_view, "arena": arena_view}


def grab(view: str, args, size: tuple[int, int] = (1600, 1000)):
    """Build a view, lay it out at `size` offscreen, and return its QPixmap."""
    from PySide6.QtWidgets import QApplication

    widget = VIEWS[view](None, args)
    widget.resize(*size)
    widget.show()
    for _ in range(5):  # let layouts and the first redraw settle
        QApplication.processEvents()
    if hasattr(widget, "redraw"):
        widget.redraw()
    elif hasattr(widget, "monitor") and widget.monitor is not None:
        widget.monitor.redraw()
    QApplication.processEvents()
    return widget.grab()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio.ui.runs.screens")
    ap.add_argument("project")
    ap.add_argument("--view", choices=sorted(VIEWS), required=True)
    ap.add_argument("--run", type=int, action="append", default=[])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", default="1600x1000")
    args = ap.parse_args(argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    w, h = (int(v) for v in args.size.lower().split("x"))
    ok = grab(args.view, args, (w, h)).save(args.out)
    app.processEvents()
    print(f"{'wrote' if ok else 'could not write'} {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
