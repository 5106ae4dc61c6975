"""The live monitor with many points: chunked loading, what a redraw touches, axes and legends."""

from __future__ import annotations

import math

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


def evaluated(project, lengths=(40.0, 60.0, 90.0), hit_cap=(0.1, 0.2, 0.2), distinct=(0.8, 0.8, 0.78)) -> int:
    """A run evaluated at steps 0, 20 and 40, with train rows in between, as the worker logs it."""
    run_id = project.create_run("dpo", "m", {})
    rows = [(s, M.LOSS, 0.69 - s / 400) for s in range(1, 41)] + [(s, M.REWARDS_MARGINS, s / 40) for s in range(1, 41)]
    for step, n, cap, d in zip((0, 20, 40), lengths, hit_cap, distinct, strict=True):
        rows += [(step, M.EVAL_SAMPLE_LENGTH, n), (step, M.EVAL_SAMPLE_HIT_CAP, cap), (step, M.EVAL_SAMPLE_CAP, 128.0),
                 (step, M.EVAL_DISTINCT_2, d), (step, M.eval_name(M.REWARDS_ACCURACIES), 0.0 if step == 0 else 0.7),
                 (step, M.eval_name(M.REWARDS_MARGINS), 0.0 if step == 0 else 0.4), (step, M.EVAL_PAIRS, 12.0)]
    project.log_metrics(run_id, sorted(rows, key=lambda r: r[0]))
    return run_id


def monitor(qtbot, project, size=(1280, 800)) -> MonitorView:
    view = MonitorView(project, Poller(project))
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    return view


def test_health_tiles_take_their_colour_from_the_rules_behind_the_warnings(qtbot, project):
    from studio.core.health import length_drift, run_findings

    run_id = evaluated(project)
    view = monitor(qtbot, project)
    view.set_run(run_id)
    tiles = view.health.tiles
    length = tiles["Length vs step 0"].state
    assert length.status == "warn" and length.value == "2.25x" and length.tooltip == length_drift(view.rd)
    assert length.detail == "90 tokens · 20% at the 128 cap"
    assert tiles["Diversity"].state.status == "ok" and tiles["Diversity"].state.value == "distinct-2 0.78"
    accuracy = tiles["Eval accuracy"].state
    assert accuracy.status == "ok" and accuracy.value == "70%" and accuracy.detail == "of 12 pairs · best 70%"
    assert accuracy.x.tolist() == [20, 40]  # step 0 ranks nothing (every margin 0): not a point
    assert set(run_findings(view.rd)) == {"length_drift"}
    assert tiles["Sampled KL"].isHidden()  # this run logs no sampled KL: no empty tile
    # a tile opens its chart large; Esc (or the button) goes back to the grid
    tiles["Length vs step 0"].clicked.emit("Sample length")
    assert view.enlarged == "Sample length" and list(view.graphics.ci.items) == [view.charts["Sample length"].plot]
    view.back.click()
    assert view.enlarged is None and len(view.graphics.ci.items) == len(view.charts)


def test_the_grid_reflows_to_fewer_columns_and_a_double_click_enlarges_a_chart(qtbot, project):
    run_id = evaluated(project)
    view = monitor(qtbot, project, (1600, 900))
    view.set_run(run_id)

    def columns():
        return 1 + max(col for cells in view.graphics.ci.items.values() for _row, col in cells)

    assert columns() == 4
    view.resize(900, 700)
    qtbot.waitUntil(lambda: columns() < 4)
    assert view.graphics.minimumHeight() >= 150 * math.ceil(len(view.charts) / columns())  # rows scroll, not shrink

    class DoubleClick:
        def __init__(self, pos):
            self.pos = pos

        def double(self):
            return True

        def scenePos(self):
            return self.pos

    loss = view.charts["Loss"].plot
    view._on_click(DoubleClick(loss.sceneBoundingRect().center()))
    assert view.enlarged == "Loss" and list(view.graphics.ci.items) == [loss]
    view._on_click(DoubleClick(loss.sceneBoundingRect().center()))
    assert view.enlarged is None


def test_a_flat_noisy_curve_keeps_a_least_y_range_and_axes_have_units(qtbot, project):
    run_id = project.create_run("dpo", "m", {})
    project.log_metrics(run_id, [(s, M.LOSS, 0.69 + 0.005 * (-1) ** s) for s in range(1, 51)])
    view = monitor(qtbot, project)
    view.set_run(run_id)
    lo, hi = view.charts["Loss"].plot.getViewBox().viewRange()[1]
    assert hi - lo >= 0.1  # a 0.01-wide band of noise is not stretched over the whole chart
    assert "nats" in view.charts["Loss"].plot.getAxis("left").labelText
    units = {title: chart.plot.getAxis("left").labelText for title, chart in view.charts.items()}
    assert "nats/token" in units["Sampled KL"] and "tokens" in units["Sample length"] and "GiB" in units["Memory"]


def test_accuracy_is_not_drawn_where_every_margin_is_exactly_zero(qtbot, project):
    view = monitor(qtbot, project)
    view.set_run(evaluated(project))
    x, y = view.curve_data(M.eval_name(M.REWARDS_ACCURACIES))
    assert x.tolist() == [20, 40] and y.tolist() == [0.7, 0.7]  # step 0 ranks nothing: every margin was 0


def test_the_crosshair_follows_on_every_chart_and_its_readout_clears_with_the_run(qtbot, project):
    first, second = evaluated(project), evaluated(project)
    view = monitor(qtbot, project)
    view.set_run(first)
    loss = view.charts["Loss"].plot
    view._on_mouse((loss.sceneBoundingRect().center(),))
    x = view.charts["Loss"].cursor.value()
    assert all(c.cursor.isVisible() and c.cursor.value() == x for c in view.charts.values())
    assert view.readout.text().startswith("<b>Loss</b> at step") and view.readout.text().endswith(" nats")
    view.set_run(second)
    assert view.readout.text() == "" and not any(c.cursor.isVisible() for c in view.charts.values())


def test_the_header_shows_the_eta_while_a_run_trains(qtbot, project):
    run_id = evaluated(project)
    started = "2026-01-01T00:00:00+00:00"
    project.update_run(run_id, status="running", step=10, total_steps=40, started_at=started, resumed_at=started)
    view = monitor(qtbot, project)
    view.set_run(run_id)
    assert " · ETA " in view.header.text()
    project.update_run(run_id, status="done", step=40)
    view._on_runs(project.runs())
    assert "ETA" not in view.header.text()
