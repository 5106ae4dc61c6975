"""The live monitor with many points: chunked loading, what a redraw touches, axes and legends."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core import metrics as M
from studio.ui.runs import poller as poller_module
from studio.ui.runs.monitor import MonitorView
from studio.ui.runs.poller import Poller, RunData

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def log_run(project, steps: int, names=(M.LOSS, M.REWARDS_ACCURACIES, M.LOGPS_CHOSEN), growth: float = 1.0) -> int:
    """A run logged as a worker does: every metric of a step together, an eval every 10 steps."""
    run_id = project.create_run("dpo", "m", {})
    rows = []
    for step in range(1, steps + 1):
        rows += [(step, name, None if (name == M.LOSS and step == 5) else step / steps) for name in names]
        if step % 10 == 0:
            rows += [(step, M.EVAL_DISTINCT_2, 0.5), (step, M.EVAL_SAMPLE_LENGTH, 40.0 + step * growth)]
    project.log_metrics(run_id, rows)
    return run_id


def test_a_long_run_is_read_in_chunks_grouped_per_metric(project, monkeypatch):
    run_id = log_run(project, 100)
    rd = RunData(run_id)
    changed = rd.poll(project, limit=120)
    assert rd.behind and 0 < rd.progress < 1 and changed == {M.LOSS, M.REWARDS_ACCURACIES, M.LOGPS_CHOSEN,
                                                             M.EVAL_DISTINCT_2, M.EVAL_SAMPLE_LENGTH}
    while rd.behind:
        rd.poll(project, limit=120)
    assert rd.progress is None and rd.rows_read == 100 * 3 + 10 * 2
    loss = rd.series[M.LOSS]
    assert loss.step[: loss.n].tolist() == list(range(1, 101))
    assert np.isnan(loss.y[4]) and loss.y[9] == pytest.approx(0.1)
    assert rd.series[M.EVAL_SAMPLE_LENGTH].y.tolist() == [40.0 + s for s in range(10, 101, 10)]

    # the Poller reads the first chunk at once and the rest from the event loop, or all on demand
    monkeypatch.setattr(poller_module, "CHUNK_ROWS", 50)
    poller = Poller(project)
    rd = poller.watch(run_id)
    assert rd.behind and len(rd.series[M.LOSS]) < 100
    seen = []
    poller.data_changed.connect(lambda rid, names: seen.append(rid))
    poller.finish_loading(run_id)
    assert not rd.behind and len(rd.series[M.LOSS]) == 100 and seen == [run_id]


def test_redraw_touches_only_what_changed_and_waits_while_hidden(qtbot, project):
    run_id = log_run(project, 200)
    poller = Poller(project)
    view = MonitorView(project, poller)
    qtbot.addWidget(view)
    view.redraw_timer.stop()
    view.set_run(run_id)
    loss = view.charts["Loss"].curves[M.LOSS]
    acc = view.charts["Accuracy"].curves[M.REWARDS_ACCURACIES]
    drawn_loss, drawn_acc = loss.drawn, acc.drawn
    assert len(view.curve_data(M.LOSS)[0]) == 200

    view.rd.series[M.LOSS].extend([201, 202], [0, 0], [1.0, 2.0])
    view._dirty.add(M.LOSS)
    view._redraw_if_dirty()  # never shown: nothing is drawn yet
    assert loss.drawn == drawn_loss
    assert len(view.curve_data(M.LOSS)[0]) == 202  # asking for the data draws what is pending
    assert loss.drawn != drawn_loss and acc.drawn == drawn_acc

    view.smooth_slider.setValue(0)  # smoothing off: the raw curve is the main one, the faint one hides
    view.redraw()
    assert not loss.raw.isVisible()
    np.testing.assert_array_equal(view.curve_data(M.LOSS)[1], view.rd.series[M.LOSS].y)


def test_fractions_keep_their_0_to_1_axis_and_lengths_have_their_own_chart(qtbot, project):
    run_id = log_run(project, 50)
    view = MonitorView(project, Poller(project))
    qtbot.addWidget(view)
    view.resize(1280, 800)
    view.show()
    view.set_run(run_id)
    view.redraw()
    lo, hi = view.charts["Accuracy"].plot.getViewBox().viewRange()[1]
    assert lo < 0 and hi > 1  # accuracy only went to 1.0 by step 50, but the axis shows all of 0..1
    d_lo, d_hi = view.charts["Diversity"].plot.getViewBox().viewRange()[1]
    l_lo, l_hi = view.charts["Sample length"].plot.getViewBox().viewRange()[1]
    assert d_lo < 0 < 1 < d_hi and l_lo < 0 and l_hi > 90  # each on its own chart, on its own scale
    assert "dist-2" in view.charts["Diversity"].plot.getAxis("bottom").labelText
    assert "mean" in view.charts["Sample length"].plot.getAxis("bottom").labelText
    assert "eval" not in view.charts["Loss"].plot.getAxis("bottom").labelText  # only what the run logs
    assert view.charts["Loss"].plot.legend is None  # no legend box over the curves


def test_every_chart_shows_the_runs_steps_and_distinct_2_keeps_0_to_1(qtbot, project):
    """Early in a run, the step-0 evaluation is the only point of the sample charts: it used to get an
    x axis of +-1e-9 (or -400..400) and, with distinct-2 exactly 1.0, a y axis of 0.5..1.5."""
    run_id = project.create_run("dpo", "m", {})
    project.update_run(run_id, status="running")
    project.log_metrics(run_id, [(0, M.EVAL_DISTINCT_2, 1.0), (0, M.EVAL_SAMPLE_LENGTH, 64.0)]
                        + [(s, M.LOSS, 0.69) for s in range(1, 8)] + [(s, M.LOGPS_CHOSEN, -5.0 - s) for s in (6, 7)])
    view = MonitorView(project, Poller(project))
    qtbot.addWidget(view)
    view.resize(1280, 700)
    view.show()
    view.set_run(run_id)
    qtbot.wait(300)  # pyqtgraph's own range updates happen in the event loop
    view.redraw()
    ranges = {title: chart.plot.getViewBox().viewRange()[0] for title, chart in view.charts.items()
              if chart.curves}
    assert set(ranges) == {"Diversity", "Sample length", "Loss", "Log-probs"}
    for title, (lo, hi) in ranges.items():
        assert lo <= 0 and 7 <= hi <= 12, title  # all from 0 to the latest step, with room to grow
    d_lo, d_hi = view.charts["Diversity"].plot.getViewBox().viewRange()[1]
    assert d_lo <= 0 and d_hi >= 1


def test_legends_fit_under_their_charts_at_1280x800(qtbot, project):
    from PySide6.QtGui import QFont, QFontMetrics, QTextDocument

    from studio.ui.runs import charts as C
    from studio.ui.runs.panel import RunsPanel

    run_id = project.create_run("dpo", "m", {})
    names = [m for spec in C.CHARTS for line in spec.lines for m in (line.metric, M.eval_name(line.metric))]
    project.log_metrics(run_id, [(s, n, 0.5) for s in range(1, 11) for n in names])
    panel = RunsPanel(project)
    qtbot.addWidget(panel)
    panel.resize(1280, 720)  # the Runs section inside a 1280x800 window
    panel.show()
    panel.show_run(run_id)
    qtbot.wait(200)
    panel.monitor.redraw()
    font = QFont()
    font.setPointSize(8)
    metrics = QFontMetrics(font)
    for title, chart in panel.monitor.charts.items():
        axis = chart.plot.getAxis("bottom")
        doc = QTextDocument()
        doc.setHtml(axis.labelText)
        text = doc.toPlainText()
        assert metrics.horizontalAdvance(text) <= axis.width(), (title, text, axis.width())
    assert "train" in panel.monitor.charts["Accuracy"].plot.getAxis("bottom").labelText


def test_a_failed_runs_log_leaves_the_charts_room_at_1280x800(qtbot, project):
    from studio.ui.runs.panel import RunsPanel

    run_id = log_run(project, 50, growth=0.1)  # sample lengths steady: no warning line above the charts
    project.update_run(run_id, status="failed", error="RuntimeError: CUDA out of memory. " * 6,
                       log_tail="\n".join(f"log line {i}" for i in range(200)))
    panel = RunsPanel(project)
    qtbot.addWidget(panel)
    panel.resize(1280, 720)
    panel.show()
    panel.show_run(run_id)
    qtbot.waitUntil(lambda: panel.monitor.failure.isVisible())
    assert "log line 199" in panel.monitor.log_tail.toPlainText()
    assert panel.monitor.graphics.height() >= 330  # three rows of charts that can still be read


def test_the_warning_line_shows_the_health_rules_headlines_and_their_advice_on_hover(qtbot, project):
    from studio.core.health import headline, run_warnings

    run_id = project.create_run("dpo", "m", {})
    project.log_metrics(run_id, [(s, M.REWARDS_ACCURACIES, 1.0) for s in range(1, 41)]
                        + [(0, M.eval_name(M.REWARDS_ACCURACIES), 0.5), (40, M.eval_name(M.REWARDS_ACCURACIES), 0.55)])
    view = MonitorView(project, Poller(project))
    qtbot.addWidget(view)
    view.set_run(run_id)
    (warning,) = run_warnings(view.rd)
    assert warning.startswith("Overfitting: train accuracy 100%")
    assert view.warning.text() == "⚠ " + headline(warning) and view.warning.toolTip() == warning
    assert not view.warning.isHidden()
