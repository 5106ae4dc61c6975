"""The Job tab: a job's progress and plan, what it has written, and its worker log: a generation job's sources,
sampling and where its pairs are labeled; a rank or frontier job's models and results. The charts of the monitor
are for training runs."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget

from studio.core import paths
from studio.core.frontier import FRONTIER
from studio.core.generations import ARENA, GenerationPlan
from studio.core.jobs import MEASURE_METHODS, job_plan
from studio.store import ProjectError, informative
from studio.store import frontier as frontier_store
from studio.store import generations as gen_store


class JobView(QWidget):
    """Shows one generation job, re-read whenever the runs change (its step is its prompts done)."""

    results_requested = Signal(int)
    """The user asked for an arena's results: the arena id."""

    def __init__(self, project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.run_id: int | None = None
        self.arena_id: int | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.title)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m prompts")
        layout.addWidget(self.progress)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.details)
        row = QHBoxLayout()
        self.results_button = QPushButton("Arena results")
        self.results_button.setToolTip("Win rates and scores of this arena's sources from the labels so far")
        self.results_button.clicked.connect(lambda: self.arena_id is not None and self.results_requested.emit(
            self.arena_id))
        row.addWidget(self.results_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(QLabel("<b>Worker log</b>"))
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        layout.addWidget(self.log, 1)
        self.set_run(None)

    def set_run(self, run_id: int | None) -> None:
        self.run_id = run_id
        self.refresh()

    def refresh(self) -> None:
        run = None
        if self.run_id is not None:
            try:
                run = self.project.run(self.run_id)
            except ProjectError:
                run = None
        if run is None:
            self.title.setText("Select a job (generate, arena, rank or frontier) in the table above.")
            self.details.setText("")
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.results_button.hide()
            self.log.setPlainText("")
            return
        self.title.setText(f"<b>{html.escape(run['name'])}</b> · {run['method']} · <b>{run['status']}</b>"
                           + (f" · {html.escape(run['device'])}" if run.get("device") else ""))
        error = (f"<p style='color:#d62728'>{html.escape(run['error'])}</p>" if run["status"] == "failed"
                 and run.get("error") else "")
        tail = paths.log_tail(self.project.folder, run["id"]) if self.project.folder is not None else None
        self.log.setPlainText(tail or run.get("log_tail") or "")
        self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())
        if run["method"] in MEASURE_METHODS:
            self._show_measure(run, error)
            return
        plan = GenerationPlan.from_dict(run["config"])
        counts = gen_store.job_counts(self.project, run["id"])
        self.arena_id = gen_store.job_arena(self.project, run["id"])
        where = gen_store.pair_source(run["id"], self.arena_id)
        self.progress.setFormat("%v / %m prompts")
        self.progress.setRange(0, max(1, run["total_steps"] or len(plan.prompt_ids)))
        self.progress.setValue(run["step"])
        sources = "".join(f"<li>{html.escape(s.describe())}</li>" for s in plan.sources)
        sampling = (f"temperature {plan.temperature:g}, top-p {plan.top_p:g}, top-k {plan.top_k}, at most "
                    f"{plan.max_new_tokens} new tokens, seed {plan.seed}")
        blind = ("Which source wrote which response is never shown while labeling."
                 if plan.kind == ARENA else "Who wrote each side is shown after each choice.")
        self.details.setText(
            f"{error}<p><b>Sources</b><ul>{sources}</ul></p>"
            f"<p><b>Sampling</b>: {sampling}; {plan.samples} sample(s) per prompt and source; "
            f"{len(plan.prompt_ids)} prompts of the {plan.split or 'whole'} split.</p>"
            f"<p><b>Written</b>: {counts['generations']} generations ({counts['hit_max_new_tokens']} cut at the "
            f"token limit), {counts['pairs']} pairs, labeled in the Label section under source "
            f"<b>{where}</b>. {blind}</p>")
        self.results_button.setVisible(self.arena_id is not None)

    def _show_measure(self, run: dict, error: str) -> None:
        """A rank job (models that score pairs, the ranking it made) or a frontier job (policies, their points)."""
        plan = job_plan(run["method"], run["config"])
        self.arena_id = None
        self.results_button.hide()
        self.progress.setFormat("%v / %m policies" if run["method"] == FRONTIER else "%v / %m pairs scored")
        self.progress.setRange(0, max(1, run["total_steps"] or 1))
        self.progress.setValue(run["step"])
        if run["method"] == FRONTIER:
            points = frontier_store.points(self.project, plan.measure())
            rows = "".join(f"<li>{html.escape(p['name'])} (step {p['step']}): reward {p['reward']:+.3f}, KL "
                           f"{p['kl']:.3f} nats</li>" for p in points)
            self.details.setText(
                f"{error}<p><b>Policies</b>: {', '.join(html.escape(s.describe()) for s in plan.sources)}</p>"
                f"<p><b>Measure</b>: reward by {html.escape(plan.describe())}, against KL(policy || base model) on "
                f"the same samples.</p><p><b>Points</b> (drawn in Runs ▸ Compare)<ul>{rows or '<li>none yet</li>'}"
                f"</ul></p>")
            return
        ranking = informative.current_ranking(self.project)
        now = html.escape(informative.describe_ranking(ranking))
        made = (f"The 'Informative first' queue follows its ranking ({now})."
                if ranking is not None and ranking["job_id"] == run["id"] else
                "Its ranking is made when it ends (or stops).")
        share = f"at most {plan.max_pairs:,} pairs" if plan.max_pairs else "every pair"
        self.details.setText(
            f"{error}<p><b>Models</b>: {html.escape(plan.describe())}</p>"
            f"<p><b>Scores</b> {share} short of the overlap target (seed {plan.seed}), then ranks every pair: split "
            f"votes first, then what the models are least sure about. {made}</p>")
