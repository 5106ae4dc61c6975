"""The labeling workbench: a prompt, two responses side by side, and keyboard-first choices."""

from __future__ import annotations

import html
import itertools
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from studio.core.types import Choice, Label, Pair, Strength

if TYPE_CHECKING:
    from studio.ui.guidelines import GuidelinesPanel
    from studio.ui.label_activity import FlagBar
from studio.store import LabelConflict, Project, ProjectError
from studio.store.informative import current_ranking, describe_ranking
from studio.ui import prefs, theme
from studio.ui.label_controls import DisplayOptions, LabelFilters, VerdictControls, empty_queue_message
from studio.ui.label_parts import (
    SIDE_KEYS,
    SIDE_TITLES,
    SIDES,
    STRENGTH_KEYS,
    ActiveTimer,
    ShortcutOverlay,
    choice_to_side,
    describe,
    side_to_choice,
)
from studio.ui.label_progress import LabelProgress
from studio.ui.label_saver import NotUndone, Verdicts
from studio.ui.pair_view import PairPanes
from studio.ui.widgets import EmptyState

# The clock behind time-per-label; tests replace it (monkeypatch) to check what gets stored.
clock = time.monotonic

READ_ONLY_NOTE = "This project is read-only here: its files cannot be written, so {what} cannot be saved."


class LabelView(QWidget):
    """Shows one pair at a time from the annotator's queue; a verdict commits the label and moves on."""

    labeled = Signal(int, str)
    """A label was committed: (pair id, choice in pair terms)."""
    undone = Signal(int)
    """A label was undone: the pair id, now shown again."""
    pair_shown = Signal(int)
    """The pair now on screen (0 when the queue is empty)."""
    counts_changed = Signal()
    """Labels changed; the window refreshes its headline counts."""
    save_failed = Signal(str)
    """A label could not be saved (disk full, project busy): the message; the pair stays on screen."""
    import_requested = Signal()
    """The empty project's "Import…" was chosen: the window opens its import dialog."""

    def __init__(self, project: Project, annotator: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.annotator = annotator
        self.queue = "mine"
        self.split: str | None = None
        self.source: str | None = None
        self.search: str | None = None
        self.pair: Pair | None = None
        self.shown_left = "a"
        self.raw = False
        self.diff_on = False
        self.show_counts = project.show_length_counts
        self.timer = ActiveTimer(lambda: clock())  # looked up at each call: tests replace the clock
        # the progress line, the "Saved" note and the recent decisions (label_progress)
        self.progress = LabelProgress(project, annotator, int(prefs.get("daily_goal")), lambda: clock(), self)
        self.progress.revisit.connect(self.revisit)
        self._prompt_share = min(max(float(prefs.get("label/prompt_share")), 0.1), 0.85)
        # the save path: each verdict saved (in the background while another process writes), what Ctrl+Z undoes
        self.verdicts = Verdicts(project, self)
        self.verdicts.saved.connect(self._saved)
        self.verdicts.failed.connect(self._not_saved)
        self.verdicts.saving.connect(self._saving_in_background)
        self.guidelines: GuidelinesPanel | None = None  # built the first time it is shown
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._build()
        self._describe_ranking()
        self._bind_keys()
        self._share_timer = QTimer(self, singleShot=True, interval=400, timeout=self._save_prompt_share)
        app = QGuiApplication.instance()
        if app is not None:
            app.applicationStateChanged.connect(self._on_app_state)
        theme.notifier.changed.connect(self._on_theme)
        self.show_next()
        if prefs.get("label/guidelines_visible"):
            self.toggle_guidelines(True)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        # the queue and filters (label_controls); picking a value hands the keys back to the workbench
        self.filters = LabelFilters(self.project)
        self.filters.changed.connect(self._filters_changed)
        self.filters.done.connect(self.setFocus)
        self.queue_box, self.split_box = self.filters.queue_box, self.filters.split_box
        self.source_box, self.search_edit = self.filters.source_box, self.filters.search_edit
        self.pair_label = QLabel()
        self.pair_label.setObjectName("pairLabel")
        self.pair_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        filters = QHBoxLayout()
        filters.addWidget(self.filters, 1)
        filters.addSpacing(12)
        filters.addWidget(self.pair_label)

        # display options (label_controls), in the prompt pane's header
        options = DisplayOptions()
        self.raw_check, self.diff_check, self.sync_check = options.raw, options.diff, options.sync
        self.guidelines_button, help_button = options.guidelines, options.help
        self.raw_check.toggled.connect(self.set_raw)
        self.diff_check.toggled.connect(self.set_diff)
        self.sync_check.toggled.connect(self.set_sync_scroll)
        self.guidelines_button.clicked.connect(lambda checked: self.toggle_guidelines(checked))
        help_button.clicked.connect(self.toggle_help)

        # the prompt can grow: the share of the height it may take is the user's (dragging the handle)
        self.splitter = PairPanes("Left", "Right")
        self.prompt_pane = self.splitter.prompt
        self.prompt_browser = self.prompt_pane.browser
        self.prompt_title = self.prompt_pane.title
        for w in options.widgets:
            self.prompt_pane.add_control(w)
        self.left, self.right = self.splitter.first, self.splitter.second
        self.splitter.synced = True
        self.splitter.splitterMoved.connect(lambda _pos, _index: self._share_timer.start())

        # An empty queue replaces both panes with one message (`empty`, built when first needed), centred;
        # the guidelines go beside the body when first shown (`GuidelinesPanel.beside`). Neither is built at
        # start: every widget made before the first pair is time to wait.
        self.body = QWidget()
        body_layout = QVBoxLayout(self.body)
        body_layout.setContentsMargins(0, 0, 0, 0)
        body_layout.addWidget(self.splitter)
        self._empty: EmptyState | None = None

        # the verdict (label_controls): choices, strength, rationale, flag, undo
        self.verdict = VerdictControls()
        self.verdict.chosen.connect(self.choose)
        self.verdict.flag_requested.connect(self.open_flag_bar)
        self.verdict.undo_requested.connect(self.undo)
        self.verdict.rationale.returnPressed.connect(self.setFocus)
        self.choice_buttons, self.strength_buttons = self.verdict.choice_buttons, self.verdict.strength_buttons
        self.rationale, self.flag_button = self.verdict.rationale, self.verdict.flag_button
        self.undo_button = self.verdict.undo_button
        self._flag_bar: FlagBar | None = None  # built on the first F

        # notes, then the annotator's side: recent decisions, what was just saved, today's progress
        self.note = QLabel()
        self.note.setObjectName("labelNote")
        self.note.setWordWrap(True)
        status = QHBoxLayout()
        status.addWidget(self.note, 1)
        status.addWidget(self.progress.text)
        # who wrote the sides of a generated candidates pair, shown once it is labeled (never before; never for
        # an arena's pairs): stays up while the next pair is on screen
        self.revealed = QLabel()
        self.revealed.setObjectName("revealedProvenance")
        self.revealed.setWordWrap(True)
        self.revealed.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(6)
        layout.addLayout(filters)
        layout.addWidget(self.body, 1)
        layout.addWidget(self.verdict)
        self._flag_bar_index = layout.count()  # the flag bar goes here, under the details, when first needed
        layout.addLayout(self.progress.row)
        layout.addLayout(status)
        layout.addWidget(self.revealed)
        layout.addWidget(self.progress.bar)
        self._overlay: ShortcutOverlay | None = None
        self.rationale.installEventFilter(self)
        self.search_edit.installEventFilter(self)
        # Tab goes through the controls in reading order: filters, display options, texts, verdicts, details
        chain = [self.queue_box, self.split_box, self.source_box, self.search_edit, self.raw_check, self.diff_check,
                 self.sync_check, self.guidelines_button, help_button, self.prompt_browser, self.left.browser,
                 self.right.browser, *self.verdict.tab_chain()]
        for a, b in itertools.pairwise(chain):
            QWidget.setTabOrder(a, b)

    def _bind_keys(self) -> None:
        def bind(keys, slot) -> None:
            for k in keys:
                sc = QShortcut(QKeySequence(k), self)
                sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                sc.activated.connect(slot)

        for side in SIDES:
            bind(SIDE_KEYS[side], lambda s=side: self.choose(s))
        for s, key in STRENGTH_KEYS.items():
            bind([key], lambda s=s: self.set_strength(None if self.strength() is s else s))
        bind(["R"], self.focus_rationale)
        bind(["F"], self.open_flag_bar)
        bind(["G"], lambda: self.toggle_guidelines())
        bind([QKeySequence.StandardKey.Undo], self.undo)
        bind(["?", "Shift+?", "F1"], self.toggle_help)
        bind(["M"], lambda: self.raw_check.toggle())
        bind(["D"], lambda: self.diff_check.toggle())
        bind(["L"], lambda: self.sync_check.toggle())
        bind(["J"], lambda: self._scroll(+1))
        bind(["K"], lambda: self._scroll(-1))

    @property
    def empty(self) -> EmptyState:
        """The empty-queue message, in place of the prompt and both responses."""
        if self._empty is None:
            self._empty = EmptyState()
            self.body.layout().addWidget(self._empty)
            self._empty.hide()
        return self._empty

    @property
    def flag_bar(self) -> FlagBar:
        if self._flag_bar is None:
            from studio.ui import label_activity  # on the first F, not at start

            self._flag_bar = label_activity.FlagBar()
            self._flag_bar.flag.connect(self.flag_pair)
            self._flag_bar.unflag.connect(self.unflag_pair)
            self._flag_bar.closed.connect(self.setFocus)
            self.layout().insertWidget(self._flag_bar_index, self._flag_bar)
        return self._flag_bar

    def _show_body(self, empty: bool) -> None:
        """The pair, or the empty state in its place."""
        if empty:
            self.empty.show()
            self.splitter.hide()
        elif self.splitter.isHidden():
            self.splitter.show()
            self._empty.hide()
        if self._flag_bar is not None:
            self._flag_bar.hide()

    @property
    def overlay(self) -> ShortcutOverlay:
        """The `?` help, built the first time it is asked for: thirty labels the window need not build
        before the first pair is on screen."""
        if self._overlay is None:
            self._overlay = ShortcutOverlay(self)
        return self._overlay

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._overlay is not None:
            self._overlay.setGeometry(self.rect())
        QTimer.singleShot(0, self._fit_prompt)

    def eventFilter(self, obj, event) -> bool:
        # Esc in the rationale or the search box returns to the keys, as Enter does
        if obj in (self.rationale, self.search_edit) and event.type() == QEvent.Type.KeyPress and \
                event.key() == Qt.Key.Key_Escape:
            self.setFocus()
            return True
        return super().eventFilter(obj, event)

    # ------------------------------------------------------------------ activity (time per label)

    def _on_app_state(self, state: Qt.ApplicationState) -> None:
        self.set_active(state == Qt.ApplicationState.ApplicationActive)

    def set_active(self, active: bool) -> None:
        """Pause the label clock while the window is not in use (another app in front, minimised)."""
        if active:
            self.timer.resume()
        else:
            self.timer.pause()
        self.progress.set_active(active)

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.set_active(False)
        self.progress.hidden()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        app = QGuiApplication.instance()
        if app is None or app.applicationState() == Qt.ApplicationState.ApplicationActive or \
                QGuiApplication.platformName() in ("offscreen", "minimal"):
            self.set_active(True)
        self.progress.shown(self.pair is not None or bool(self.progress.total_pairs))
        self.setFocus()

    # ------------------------------------------------------------------ queue and filters

    def set_annotator(self, name: str) -> None:
        self.annotator = name
        self.verdicts.forget()
        self.show_next(after=None)
        self._count_progress()

    def set_queue(self, queue: str) -> None:
        self.filters.set_queue(queue)

    def set_filters(self, split: str | None = None, source: str | None = None, search: str | None = None) -> None:
        self.filters.set_filters(split, source, search)

    def _filters_changed(self) -> None:
        self.revealed.hide()  # it spoke of the pair labeled last, in the queue left behind
        self.queue = self.filters.queue
        self._describe_ranking()
        scope = self.filters.scope()
        self.split, self.source, self.search = scope["split"], scope["source"], scope["search"]
        self.show_next(after=None)
        self._count_progress()

    def _describe_ranking(self) -> None:
        """The informative queue's tooltip says what its order comes from (models, when), or that there is none."""
        now = describe_ranking(current_ranking(self.project))
        text = f"Pairs the models are least sure about first, split votes before all ({now})"
        self.filters.describe_queue("informative", text)

    def _filtered(self) -> bool:
        return bool(self.split or self.source or self.search)

    def _count_progress(self) -> None:
        """Tell the progress line what is on screen now (annotator, queue, filters): it counts what is left."""
        self.progress.set_scope(self.annotator, self.queue,
                                {"split": self.split, "source": self.source, "search": self.search})

    def show_next(self, after: int | None = None) -> None:
        """Show the next pair of the queue after pair `after` (or after the annotator's last label)."""
        pid = self.project.next_pair(self.annotator, self.queue, after=after, split=self.split,
                                     source=self.source, search=self.search)
        if pid is None:
            self._show_empty()
        else:
            self.show_pair(pid)

    def reload(self) -> None:
        """Re-read counts after data changed elsewhere (an import), and refill the view if empty."""
        self._describe_ranking()
        self.progress.changed()
        if self.pair is None:
            self.show_next()

    def _show_empty(self) -> None:
        self.pair = None
        self.prompt_pane.clear()
        self.left.clear()
        self.right.clear()
        self.empty.show_state(*self._empty_message())
        self._show_body(empty=True)
        self.pair_label.setText("")
        self._enable_verdicts(False)
        self.note.setText("")
        self.progress.refresh()
        self.pair_shown.emit(0)

    def _empty_message(self) -> tuple[str, str, list]:
        """What the empty view says, and its offers as buttons (label_controls.empty_queue_message)."""
        title, text, offers = empty_queue_message(self.queue, bool(self.progress.total_pairs), self._filtered())
        act = {"import": self.import_requested.emit, "clear": self.set_filters}
        return title, text, [(label, act.get(a) or (lambda q=a: self.set_queue(q))) for label, a in offers]

    def _enable_verdicts(self, on: bool) -> None:
        self.verdict.set_enabled(on and not self.project.read_only)  # a read-only project is never labeled

    def show_pair(self, pair_id: int, note: str | None = None, prefill: Label | None = None) -> None:
        """Put a pair on screen (from the queue, the data view or an undo) and start its clock."""
        self.pair = self.project.pair(pair_id)
        self.shown_left = self.project.shown_left(pair_id, self.annotator)
        self._show_body(empty=False)
        self._render()
        self._enable_verdicts(True)
        self.set_strength(prefill.strength if prefill else None)
        self.rationale.setText((prefill.rationale or "") if prefill else "")
        mine = self.project.current_label(pair_id, self.annotator)
        self.verdicts.showing(pair_id, mine.id if mine else None)
        if note is None and mine is not None:
            note = f"You labeled this pair: <b>{describe(mine, self.shown_left)}</b>. A new verdict replaces it."
        self.note.setText(note or "")
        self._show_pair_label()
        self.timer.restart()
        self.progress.refresh()
        self.pair_shown.emit(pair_id)
        if not self.rationale.hasFocus():
            self.setFocus()

    def _show_pair_label(self) -> None:
        p = self.pair.prompt
        bits = [f"Pair #{self.pair.id}", p.split]
        if self.pair.source:
            bits.append(self.pair.source)
        flags = self.project.flags(self.pair.id)
        if flags:
            bits.append(f"⚑ flagged{f' ({len(flags)})' if len(flags) > 1 else ''}")
        self.pair_label.setText(html.escape("  ·  ".join(bits)))
        self.pair_label.setToolTip("\n".join(f"⚑ {f.annotator}: {f.note or '(no note)'}" for f in flags))

    def revisit(self, pair_id: int) -> None:
        """Show a pair labeled earlier again (the recent strip); a new verdict replaces the label."""
        self.show_pair(pair_id)

    def _render(self) -> None:
        if self.pair is None:
            return
        self.prompt_pane.show_prompt(self.pair.prompt, self.raw)
        left, right = (self.pair.a, self.pair.b) if self.shown_left == "a" else (self.pair.b, self.pair.a)
        self.left.show_text(left.text, self.raw, self.show_counts)
        self.right.show_text(right.text, self.raw, self.show_counts)
        if self.diff_on:
            self._apply_diff()
        self._fit_prompt()
        self.prompt_pane.scroll_home()

    def _fit_prompt(self) -> None:
        if self.pair is not None:
            self.splitter.fit_prompt(self._prompt_share)

    def _save_prompt_share(self) -> None:
        sizes = self.splitter.sizes()
        if sum(sizes) <= 0:
            return
        self._prompt_share = min(max(sizes[0] / sum(sizes), 0.1), 0.85)
        prefs.put("label/prompt_share", round(self._prompt_share, 3))

    def _apply_diff(self) -> None:
        if not self.splitter.highlight_differences():
            self.note.setText("These responses are too long for a word diff.")

    # ------------------------------------------------------------------ display options

    def set_raw(self, raw: bool) -> None:
        self.raw = bool(raw)
        self.raw_check.setChecked(self.raw)
        self._render()

    def set_diff(self, on: bool) -> None:
        self.diff_on = bool(on)
        self.diff_check.setChecked(self.diff_on)
        if self.diff_on:
            self._apply_diff()
        else:
            self.splitter.clear_differences()

    def set_sync_scroll(self, on: bool) -> None:
        self.splitter.synced = bool(on)
        self.sync_check.setChecked(self.splitter.synced)

    def set_show_counts(self, shown: bool) -> None:
        """Show or hide the responses' character and word counts (a project setting)."""
        self.show_counts = bool(shown)
        self._render()

    def set_goal(self, goal: int) -> None:
        self.progress.set_goal(goal)

    def _on_theme(self, _palette) -> None:
        # rendered texts carry their colours (turn backgrounds, code blocks): render them again
        self._render()
        if self.guidelines is not None:
            self.guidelines.refresh()

    def _scroll(self, direction: int) -> None:
        self.splitter.scroll_responses(direction)

    def toggle_help(self) -> None:
        if self.overlay.isVisible():
            self.overlay.hide()
            self.setFocus()
        else:
            self.overlay.setGeometry(self.rect())
            self.overlay.show()
            self.overlay.raise_()
            self.overlay.setFocus()

    def toggle_guidelines(self, show: bool | None = None) -> None:
        """Show or hide the project's guidelines beside the pair (key G); remembered for next time."""
        if self.guidelines is None:
            if show is False:
                return
            from studio.ui.guidelines import GuidelinesPanel

            self.guidelines = GuidelinesPanel.beside(self.project, self.body, self.layout())
            self.guidelines.closed.connect(lambda: self.toggle_guidelines(False))
        show = not self.guidelines.isVisible() if show is None else bool(show)
        if show:
            self.guidelines.reveal(self.width())
        else:
            self.guidelines.hide()
            self.setFocus()
        self.guidelines_button.setChecked(show)
        prefs.put("label/guidelines_visible", show)
        QTimer.singleShot(0, self._fit_prompt)

    def focus_rationale(self) -> None:
        self.rationale.setFocus()
        self.rationale.selectAll()

    # ------------------------------------------------------------------ flags for review

    def open_flag_bar(self) -> None:
        """Flag the pair on screen for review (key F): the bar asks for a note; Enter flags, Esc cancels."""
        if self.pair is None:
            return
        if self.project.read_only:
            self.note.setText(READ_ONLY_NOTE.format(what="flags"))
            return
        mine = [f for f in self.project.flags(self.pair.id) if f.annotator == self.annotator]
        self.flag_bar.open_for(mine[-1].note if mine else "", flagged=bool(mine))

    def flag_pair(self, note: str) -> None:
        if self.pair is None:
            return
        try:
            self.project.flag_pair(self.pair.id, self.annotator, note)
        except ProjectError as e:
            self.note.setText(f"Not flagged: {html.escape(str(e))}")
            return
        self.progress.saved_note.say(f"Flagged pair #{self.pair.id} for review")
        self._show_pair_label()

    def unflag_pair(self) -> None:
        if self.pair is None:
            return
        try:
            self.project.clear_flags(self.pair.id, self.annotator)
        except ProjectError as e:
            self.note.setText(f"Flag not removed: {html.escape(str(e))}")
            return
        self.progress.saved_note.say(f"Removed your flag on pair #{self.pair.id}")
        self._show_pair_label()

    # ------------------------------------------------------------------ labeling

    def strength(self) -> Strength | None:
        return self.verdict.strength()

    def set_strength(self, strength: Strength | str | None) -> None:
        self.verdict.set_strength(strength)

    def choose(self, side: str) -> int | None:
        """Commit the verdict for the pair on screen and show the next pair. Returns the label id (None when
        it was not saved, or is being saved in the background because the project is busy)."""
        if self.pair is None:
            return None
        if self.verdicts.busy:
            self.note.setText("Still saving your last verdict (the project is busy)…")
            return None
        if self.project.read_only:
            self.note.setText(READ_ONLY_NOTE.format(what="labels"))
            return None
        if self._overlay is not None and self._overlay.isVisible():
            self._overlay.hide()
        choice = side_to_choice(side, self.shown_left)
        # never waits on the GUI thread: a held lock hands the label to a background save
        return self.verdicts.save({
            "pair_id": self.pair.id, "annotator": self.annotator, "choice": choice, "shown_left": self.shown_left,
            "strength": self.strength() if choice.decided else None,
            "rationale": self.rationale.text().strip() or None, "seconds": round(self.timer.seconds(), 3)})

    def _saved(self, label: dict, _label_id: int) -> None:
        pair_id = label["pair_id"]
        self.progress.saved(pair_id)
        choice = Choice(label["choice"])
        self.labeled.emit(pair_id, choice.value)
        self.reveal_provenance(pair_id, label["shown_left"], choice_to_side(choice, label["shown_left"]))
        if self.pair is not None and self.pair.id == pair_id:
            self.show_next(after=pair_id)
        self.counts_changed.emit()

    def _not_saved(self, label: dict, error: ProjectError) -> None:
        """Disk full, read-only, busy for too long, or changed in another window: the pair stays on screen
        with everything the annotator set, so the same key can simply be pressed again."""
        self.save_failed.emit(str(error))
        if self.pair is None or self.pair.id != label["pair_id"]:
            # a background save of a pair no longer on screen: still say it, so no verdict is lost unnoticed
            self.note.setText(f"Not saved: your verdict on pair #{label['pair_id']}: {error}")
        elif isinstance(error, LabelConflict):
            # the next key press replaces the other window's label knowingly (Verdicts expects it now)
            now = describe(error.current, self.shown_left) if error.current else "no label (undone)"
            self.note.setText(f"Not saved: this pair was labeled meanwhile as {self.annotator} in another window "
                              f"(now: {now}). Press a key again to replace that label.")
        else:
            self.note.setText(f"Not saved: {error}")

    def _saving_in_background(self, started: bool) -> None:
        if started:
            for b in self.choice_buttons.values():
                b.setEnabled(False)
            self.note.setText("Saving… the project is busy (another process is writing to it); your verdict and "
                              "rationale are kept and saved as soon as it is free.")
        else:
            self._enable_verdicts(self.pair is not None)

    def wait_for_save(self, timeout: float | None = None) -> bool:
        """Block until a background save has ended (the window is closing); False if it still runs."""
        return self.verdicts.wait(timeout)

    def reveal_provenance(self, pair_id: int, shown_left: str, side: str) -> None:
        """After a verdict on a generated candidates pair, say which source, adapter and sampling wrote each
        side; hidden for any other pair (an arena's pairs stay blind)."""
        # imported here: the generation store (and the job plans it loads) is not needed to open the window
        from studio.store.generations import candidate_provenance, describe_generation

        prov = candidate_provenance(self.project, pair_id)
        if prov is None:
            self.revealed.hide()
            self.revealed.setText("")
            return
        left, right = (prov["a"], prov["b"]) if shown_left == "a" else (prov["b"], prov["a"])
        self.revealed.setText(f"Pair #{pair_id}, labeled <b>{SIDE_TITLES[side]}</b>: left was "
                              f"<b>{html.escape(describe_generation(left))}</b>; right was "
                              f"<b>{html.escape(describe_generation(right))}</b>")
        self.revealed.show()

    def undo(self) -> int | None:
        """Undo this window's latest label, if still in force, and show its pair again, prefilled. Labels
        made in another window (even as the same annotator) are never undone from here."""
        try:
            undone, pair_id = self.verdicts.undo()
        except NotUndone as e:
            self.note.setText(str(e))
            return None
        self.progress.undone()
        shown = self.project.shown_left(pair_id, self.annotator)
        self.show_pair(pair_id, note=f"Undone: <b>{describe(undone, shown)}</b>. Choose again.", prefill=undone)
        self.undone.emit(pair_id)
        self.counts_changed.emit()
        return pair_id
