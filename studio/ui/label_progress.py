"""The annotator's progress under the labeling workbench: today's labels against the daily goal (or all of
theirs), what is left in the queue, this session's labels and rate, the project's share labeled (a line and
a bar), the brief "Saved" confirmation and the strip of recent decisions.

`LabelProgress` owns these widgets and the counts behind them. The view tells it what the annotator is
looking at (`set_scope`) and what happened (`saved`, `undone`, `changed`); it reads the project only
when the numbers cannot be followed from what it was told (a filtered or shared queue, a new day).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar

from studio.core.types import LabelState
from studio.store import Project
from studio.ui.label_parts import ActiveTimer, Session, choice_to_side

if TYPE_CHECKING:
    from studio.core.types import Label
    from studio.ui.label_activity import RecentStrip, SavedNote

CONFIRM_MS = 60
"""How long after a label its confirmation ("Saved: …", today's count, the recent strip) follows the next pair."""

# Queues of the pairs the annotator has not labeled (the informative one orders them by store.informative's
# ranking): what is left in them follows from the project's totals, without a count.
UNLABELED_BY_ME = ("mine", "informative")


def _activity():
    """The annotator's side of the view (studio.ui.label_activity: recent strip, "Saved" note, flag bar,
    today's start), imported when first needed, after the first pair is on screen."""
    from studio.ui import label_activity

    return label_activity


class LabelProgress(QObject):
    """The progress line, bar, "Saved" note and recent strip of one labeling view."""

    revisit = Signal(int)
    """A recent decision was clicked: its pair id."""

    def __init__(self, project: Project, annotator: str, goal: int, clock: Callable[[], float],
                 parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
        self.annotator = annotator
        self.queue = "mine"
        self.filters: dict[str, str | None] = {}
        self.goal = goal
        self.session = Session()
        self._session_timer = ActiveTimer(clock)
        self.total_pairs = project.pair_count()
        self._queue_left: int | None = None
        self._mine: int | None = None  # this annotator's labels in force; None before the first read
        self._labeled = 0
        # today's labels and the recent strip: read once after the first pair is on screen, then kept up to
        # date from each label saved (no query per label)
        self._day = ""  # today's start (label_activity.day_start), set when today's labels are read
        self.today: int | None = None
        self._recent: list[tuple[Label, str]] = []
        self._parts: tuple[str, str, str] | None = None
        self._pending: list[int] = []  # labeled, not yet confirmed on screen

        self.text = QLabel()
        self.text.setObjectName("progressText")
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(6)
        self.row = QHBoxLayout()  # the recent strip, then the "Saved" note, built once there is something to say
        self.row.addStretch(1)
        self._recent_strip: RecentStrip | None = None
        self._saved_note: SavedNote | None = None

        self._recount = QTimer(self, singleShot=True, interval=1200, timeout=self._count_queue)
        self._tick = QTimer(self, interval=1000, timeout=self._show_rate)
        self._tick.start()
        self._activity_timer = QTimer(self, singleShot=True, interval=0, timeout=self._load_activity)
        self._confirm_timer = QTimer(self, singleShot=True, interval=CONFIRM_MS, timeout=self._confirm)
        self._session_timer.restart()

    # ------------------------------------------------------------------ widgets built when first needed

    @property
    def recent_strip(self) -> RecentStrip:
        if self._recent_strip is None:
            self._recent_strip = _activity().RecentStrip()
            self._recent_strip.revisit.connect(self.revisit)
            self.row.insertWidget(0, self._recent_strip)
            self._recent_strip.show()  # a widget added to a shown layout appears only after an event-loop turn
        return self._recent_strip

    @property
    def saved_note(self) -> SavedNote:
        if self._saved_note is None:
            self._saved_note = _activity().SavedNote()
            self.row.addWidget(self._saved_note)
            self._saved_note.show()
        return self._saved_note

    # ------------------------------------------------------------------ what the view tells it

    def set_scope(self, annotator: str, queue: str, filters: dict[str, str | None]) -> None:
        """The annotator, queue and filters (split, source, search) now on screen; counts what is left."""
        if annotator != self.annotator:
            self.annotator = annotator
            self.session = Session()
            self._session_timer.restart()
            self.today = None
            self._recent = []
            if self._recent_strip is not None:
                self._recent_strip.show_labels([])
            self.reload_activity()
        self.queue, self.filters = queue, dict(filters)
        self._queue_left = None
        self._count_queue()

    def set_goal(self, goal: int) -> None:
        self.goal = max(0, int(goal))
        self.display()

    def set_active(self, active: bool) -> None:
        """The session's clock runs only while the window is in use."""
        if active:
            self._session_timer.resume()
        else:
            self._session_timer.pause()

    def saved(self, pair_id: int) -> None:
        """A label of this window was stored: counted now, confirmed a moment later (CONFIRM_MS), once the
        next pair is on screen (the next pair comes first, and a burst of labels is confirmed once)."""
        self.session.labels += 1
        self.session.seconds = self._session_timer.seconds()
        if self._queue_left is not None and self.queue in (*UNLABELED_BY_ME, "needs_more"):
            self._queue_left = max(0, self._queue_left - 1)
        self._pending.append(pair_id)
        self._confirm_timer.start()
        self._schedule_recount()

    def undone(self) -> None:
        """This window's last label was undone: today's labels and the recent decisions are read again."""
        self.session.labels = max(0, self.session.labels - 1)
        if self._queue_left is not None and self.queue in (*UNLABELED_BY_ME, "needs_more"):
            self._queue_left += 1
        self.reload_activity()
        self._schedule_recount()

    def changed(self) -> None:
        """Pairs were added elsewhere (an import): the totals are read again."""
        self.total_pairs = self.project.pair_count()
        self._count_queue()

    def shown(self, has_pairs: bool) -> None:
        """The view was shown: the line is read again, and today's labels the first time."""
        if has_pairs:
            self.refresh()
        if self.today is None:
            self._activity_timer.start()

    def hidden(self) -> None:
        self._recount.stop()  # recounted when shown again; the project may be closing

    def reload_activity(self) -> None:
        """Read today's labels and the recent decisions again (after an undo, another annotator): whatever
        was waiting to be confirmed is in what is read."""
        self._confirm_timer.stop()
        self._pending.clear()
        self._activity_timer.start()

    # ------------------------------------------------------------------ counting

    def _filtered(self) -> bool:
        return any(self.filters.values())

    def _schedule_recount(self) -> None:
        if self.queue not in UNLABELED_BY_ME or self._filtered():
            self._recount.start()

    def _count_queue(self) -> None:
        if self.queue in UNLABELED_BY_ME and not self._filtered():
            self._queue_left = None  # derived from the totals in display(), no scan needed
        else:
            self._queue_left = self.project.queue_count(self.annotator, self.queue, **self.filters)
        self.refresh()

    def refresh(self) -> None:
        """Read the counts the line shows, then show it."""
        self._mine = self.project.label_count(self.annotator)
        self._labeled = self.project.labeled_pair_count()
        self.display()

    def _confirm(self) -> None:
        """Say what was saved and count it: read back from the project, so it says what is stored."""
        pending, self._pending = self._pending, []
        if self.project.closed:
            return
        activity = _activity()
        said = None
        for pair_id in pending:
            history = self.project.label_history(pair_id)
            label = next((h for h in reversed(history) if h.annotator == self.annotator
                          and h.state is LabelState.CURRENT), None)
            if label is None:
                continue  # undone (or relabeled by someone else's session) in the meantime
            side = choice_to_side(label.choice, label.shown_left)
            said = f"Saved: {activity.verdict_words(label, side)}"
            if self.today is not None and not activity.replaced_today(history, label, self._day):
                self.today += 1
            self._recent = [(label, side), *[r for r in self._recent if r[0].pair_id != pair_id]][:activity.RECENT]
        if said is None:
            return
        self.saved_note.say(said)
        self.recent_strip.show_labels(self._recent)
        self.display()

    def _load_activity(self) -> None:
        """Today's labels and the recent decisions, from the project (at start, after an undo, a new day)."""
        if self.project.closed:
            return
        activity = _activity()
        self._day = activity.day_start()
        self.today = self.project.label_count_since(self.annotator, self._day)
        labels = self.project.recent_labels(self.annotator, activity.RECENT)
        self._recent = [(lab, choice_to_side(lab.choice, lab.shown_left)) for lab in labels]
        if self._recent or self._recent_strip is not None:
            self.recent_strip.show_labels(self._recent)
        self.display()

    # ------------------------------------------------------------------ showing

    def display(self) -> None:
        """The line and bar from the counts already read (no query)."""
        if self._mine is None:
            return
        if self.today is not None and _activity().day_start() != self._day:
            self._activity_timer.start()  # past midnight: today starts again
        total, today = self.total_pairs, self.today
        left = self._queue_left if self._queue_left is not None else (
            max(0, total - self._mine) if self.queue in UNLABELED_BY_ME and not self._filtered() else None)
        if today is None:
            mine = f"{self._mine:,} labeled"
        elif self.goal:
            mine = f"{today:,} of {self.goal:,} today"
        else:
            mine = f"{today:,} today"
        pct = f"{100 * self._labeled / total:.1f}%" if total else "0%"
        self._parts = (
            f"<b>{html.escape(self.annotator)}</b>: {mine} · {self.session.labels:,} this session",
            f"{left:,} left in queue" if left is not None else "",
            f"project {pct} labeled ({self._labeled:,} / {total:,} pairs)",
        )
        self.text.setToolTip(
            f"{self.annotator}: {self._mine:,} labels in force in this project (imported labels are not "
            f"anyone's){'' if today is None else f'; {today:,} made today'}. Labels per hour: this "
            f"session's labels over its active time. The daily goal is in Settings.")
        if self.goal and today is not None:
            self.bar.setMaximum(self.goal)
            self.bar.setValue(min(today, self.goal))
            self.bar.setToolTip(f"Your labels today: {today:,} of your goal of {self.goal:,}")
        else:
            self.bar.setMaximum(max(total, 1))
            self.bar.setValue(self._labeled)
            self.bar.setToolTip("Project: pairs with at least one label")
        self._show_rate()

    def _show_rate(self) -> None:
        if self._parts is None:
            return
        rate = self.session.rate() if self.session.labels else None
        rate_text = f" · {rate:,.0f} /h" if rate is not None else ""
        me, left, proj = self._parts
        parts = [me + rate_text] + ([left] if left else []) + [proj]
        self.text.setText("&nbsp;&nbsp;│&nbsp;&nbsp;".join(parts))
