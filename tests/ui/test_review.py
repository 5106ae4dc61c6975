"""The review dashboard in the Data section and the audit's warnings in the launch dialog."""

from __future__ import annotations

import pytest

from studio.core import stats as core
from studio.ui.data_view import DataView

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def crafted(project) -> None:
    """24 pairs, B always the longer response; lefty picks the side shown on the left (timed 1 s), longy the
    longer one, and an import says A everywhere."""
    for i in range(24):
        pid = project.add_prompt(f"Question {i}?")
        pair = project.add_pair(pid, project.add_response(pid, f"short {i}"),
                                project.add_response(pid, f"a much longer answer number {i}"))
        shown = "a" if i % 2 == 0 else "b"
        project.record_label(pair, "lefty", shown, shown, seconds=1.0)
        project.record_label(pair, "longy", "b", shown, seconds=12.0)
        project.record_label(pair, "import:file.jsonl", "a", "a")


def test_the_review_tab_shows_the_audit_with_the_warned_cells_marked(qtbot, project):
    crafted(project)
    view = DataView(project)
    qtbot.addWidget(view)
    view.resize(1280, 760)
    view.show()
    view.pages.setCurrentWidget(view.review)
    qtbot.waitUntil(lambda: view.review.stats is not None)
    review = view.review
    people = review.people
    assert [people.item(r, 0).text() for r in range(people.rowCount())] == ["lefty", "longy"]
    cells = {people.horizontalHeaderItem(c).text(): people.item(0, c).text() for c in range(people.columnCount())}
    lo, hi = core.wilson_interval(24, 24)
    assert cells["Chose left"] == f"100% ({100 * lo:.0f}%–{100 * hi:.0f}%, n=24)"
    assert cells["Median s"] == "1.0" and cells["Fast labels"].startswith("100% ")
    assert set(review.flagged_cells()) == {("lefty", "Chose left"), ("lefty", "Fast labels"),
                                           ("longy", "Chose longer")}
    assert [review.imported.item(r, 0).text() for r in range(review.imported.rowCount())] == ["import:file.jsonl"]
    assert not review.imported.isHidden()
    warnings = review.warnings.text()
    assert "lefty chose the response shown on the left in 100% of 24 decisions" in warnings
    assert "longy chose the longer response in 100% of 24 decisions" in warnings

    # labels change: the dashboard recomputes when next shown
    for pair_id in project.pair_ids()[:12]:
        project.record_label(pair_id, "lefty", "b", "a", seconds=9.0)
    view.mark_stale()
    qtbot.waitUntil(lambda: "Chose left" not in [h for _n, h in review.flagged_cells() if _n == "lefty"])


def test_the_launch_dialog_data_summary_carries_the_audit_warnings(project):
    from studio.ui.runs.resources import summarize_data

    crafted(project)
    summary = summarize_data(project)
    assert any(w.startswith("lefty chose the response shown on the left") for w in summary.warnings)
    assert any(w.startswith("lefty gave 24 of 24 timed labels (100%) in under 3 seconds") for w in summary.warnings)
