"""The Runs section: the runs table with its actions above, the live monitor and Compare below."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core import paths
from studio.core.generations import ARENA, GENERATE
from studio.core.jobs import JOB_METHODS
from studio.core.types import RunStatus
from studio.store.db import hostname
from studio.store.project import ProjectError, pid_alive
from studio.store.run_queue import cancel_queued, queue_places, queue_runner
from studio.ui.runs import jobs, worker_env
from studio.ui.runs.export_dialog import ExportDialog, export_problem
from studio.ui.runs.poller import Poller
from studio.ui.runs.runs_list import RunsTable
from studio.ui.widgets import EmptyState


class RunsPanel(QWidget):
    """Launch, watch, stop, resume and compare runs. Everything shown is read from the project
    database, so runs started elsewhere (the CLI, an earlier session) appear and update the same way."""

    def __init__(self, project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.poller = Poller(project, parent=self)
        self.monitor = None  # built on first show: pyqtgraph is imported only when the section is opened
        self.compare = None
        self.job_view = None
        self.arena = None
        self._exports: list[tuple[int, Path, object, float]] = []
        # resumed workers that have not claimed their run yet; one that exits before claiming (the run
        # was not resumable after all) says why in its log, and that is shown here
        self._starting: dict[int, tuple[object, int]] = {}  # run id: (process, step it resumes from)
        self._queue_runner = None  # the queue runner this window started last (a Popen)
        self.keeps_queue_going = True  # start a runner for waiting runs nobody runs (screenshots do not)
        # exports and starting workers finish without any run row changing, so they get their own timer
        self._child_timer = QTimer(self)
        self._child_timer.setInterval(500)
        self._child_timer.timeout.connect(self._check_children)
        # one timer (a child, so it dies with the panel) checks stop requests against their deadline
        self._stop_deadlines: dict[int, float] = {}
        self._stop_timer = QTimer(self)
        self._stop_timer.setInterval(1000)
        self._stop_timer.timeout.connect(self._escalate_stops)
        self._build()
        self.poller.runs_changed.connect(self._on_runs)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()

        def button(text: str, tip: str, slot) -> QPushButton:
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            bar.addWidget(b)
            return b

        self.new_button = button("New run…", "Configure and launch a training run on the labeled pairs",
                                 lambda: self.open_launch_dialog())
        self.generate_button = button("Generate…", "Sample responses from the base model or runs' adapters: "
                                      "candidates to label, or a blind arena of several sources",
                                      lambda: self.open_generate_dialog())
        self.stop_button = button("Stop", "Ask the run to stop after its current step (it saves first)",
                                  self.stop_selected)
        self.resume_button = button("Resume", "Continue an interrupted run from its checkpoint", self.resume_selected)
        self.duplicate_button = button("Duplicate…", "Launch a new run with this run's settings, changed as you like",
                                       self.duplicate_selected)
        self.delete_button = button("Delete…", "Delete the run and its files (adapters, checkpoints, logs)",
                                    self.delete_selected)
        self.folder_button = button("Open folder", "Open the run's folder", self.open_folder)
        self.export_button = button("Export model…", "Save the adapter, or the merged model, to a folder",
                                    self.export_selected)
        self.compare_button = button("Compare", "Compare the selected runs", self.compare_selected)
        bar.addStretch(1)
        layout.addLayout(bar)
        self.message = QLabel()
        self.message.setWordWrap(True)
        layout.addWidget(self.message)

        self.split = QSplitter(Qt.Orientation.Vertical)
        self.table = RunsTable(self.project)
        self.table.selection_changed.connect(self._on_selection)
        self.split.addWidget(self.table)
        self.tabs = QTabWidget()
        self.split.addWidget(self.tabs)
        # the table needs a few rows; the charts need every pixel they can get
        self.split.setStretchFactor(0, 0)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([150, 1000])
        # no run yet: say what a run is and how to start one, instead of an empty table and blank charts
        self.empty = EmptyState()
        self.body = QStackedWidget()
        self.body.addWidget(self.split)
        self.body.addWidget(self.empty)
        layout.addWidget(self.body, 1)
        self._update_buttons()

    def showEvent(self, event) -> None:
        self.ensure_views()
        self.poller.start()
        super().showEvent(event)

    def hideEvent(self, event) -> None:
        # nothing to watch while another section is shown: labeling gets the database to itself
        self.poller.stop()
        super().hideEvent(event)

    def closeEvent(self, event) -> None:
        self.poller.stop()
        self._stop_timer.stop()
        self._child_timer.stop()
        super().closeEvent(event)

    def ensure_views(self) -> None:
        """Build the monitor and Compare (and import pyqtgraph) the first time they are needed."""
        if self.monitor is not None:
            return
        from studio.ui.runs.compare import CompareView
        from studio.ui.runs.monitor import MonitorView

        self.monitor = MonitorView(self.project, self.poller)
        self.monitor.retry_requested.connect(self.retry_run)
        self.compare = CompareView(self.project, self.poller)
        from studio.ui.runs.arena_view import ArenaView
        from studio.ui.runs.job_view import JobView

        self.job_view = JobView(self.project)
        self.job_view.results_requested.connect(self.show_arena)
        self.arena = ArenaView(self.project)
        self.tabs.addTab(self.monitor, "Monitor")
        self.tabs.addTab(self.job_view, "Job")
        self.tabs.addTab(self.compare, "Compare")
        self.tabs.addTab(self.arena, "Arena")
        self.poller.start()
        ids = self.table.selected_ids()
        if ids:
            self.monitor.set_run(ids[0])
            self._show_details(ids[0])
        else:
            self._follow_active()

    # ------------------------------------------------------------------ state

    def _on_runs(self, runs: list[dict]) -> None:
        self._show_empty(not runs)
        self.table.set_runs(runs)
        self._keep_queue_going(runs)
        self._check_children()
        self._update_buttons()
        if self.monitor is not None and self.monitor.run_id is None:
            self._follow_active()
        if self.job_view is not None and self.job_view.run_id is not None:
            self.job_view.refresh()

    def _follow_active(self) -> None:
        """With nothing chosen, show the newest active run (one started from the CLI included)."""
        active = [r for r in self.table.runs if RunStatus(r["status"]).active]
        if active and self.monitor is not None:
            self.show_run(active[0]["id"])

    def show_run(self, run_id: int) -> None:
        self.table.select_ids([run_id])
        if self.monitor is not None:
            self.monitor.set_run(run_id)
            self.tabs.setCurrentWidget(self.monitor)
            self._show_details(run_id)

    def _on_selection(self, ids: list[int]) -> None:
        self._update_buttons()
        if ids and self.monitor is not None:
            self.monitor.set_run(ids[0])
            self._show_details(ids[0])

    def _show_details(self, run_id: int) -> None:
        """A generation job is shown in the Job tab (the monitor's charts are for training); a training run
        chosen while the Job tab is up brings the monitor back."""
        run = self.table.run_by_id(run_id)
        if run is not None and run["method"] in JOB_METHODS:
            self.job_view.set_run(run_id)
            self.tabs.setCurrentWidget(self.job_view)
        else:
            self.job_view.set_run(None)
            if self.tabs.currentWidget() is self.job_view:
                self.tabs.setCurrentWidget(self.monitor)

    def show_arena(self, arena_id: int) -> None:
        self.ensure_views()
        self.arena.set_arena(arena_id)
        self.tabs.setCurrentWidget(self.arena)

    def selected_runs(self) -> list[dict]:
        return [r for r in (self.table.run_by_id(i) for i in self.table.selected_ids()) if r]

    def _update_buttons(self) -> None:
        runs = self.selected_runs()
        one = runs[0] if len(runs) == 1 else None
        writable = not self.project.read_only  # a read-only project's runs are read: none starts, stops or goes
        for b in (self.new_button, self.generate_button):
            b.setEnabled(writable)
        self.stop_button.setEnabled(writable and any(RunStatus(r["status"]).active for r in runs))
        self.resume_button.setEnabled(writable and bool(one) and one["id"] not in self._starting
                                      and jobs.resumable(self.project.folder, one))
        job = bool(one) and one["method"] in JOB_METHODS  # a job: no adapter, no training settings
        self.duplicate_button.setEnabled(writable and bool(one) and not job)
        self.delete_button.setEnabled(writable and bool(runs)
                                      and not any(RunStatus(r["status"]).active for r in runs))
        self.folder_button.setEnabled(bool(one) and self.project.folder is not None)
        self.export_button.setEnabled(bool(one) and not job and one["status"] in (RunStatus.DONE, RunStatus.INTERRUPTED)
                                      and not any(e[0] == one["id"] for e in self._exports))
        self.compare_button.setEnabled(len(runs) >= 2)

    def _show_empty(self, empty: bool) -> None:
        if empty and self.body.currentWidget() is not self.empty:
            self.empty.show_state(
                "No runs yet",
                "A run fine-tunes a model with LoRA (DPO or a variant) on this project's resolved preferences: "
                "the pairs whose labels have a majority. Label some pairs, then start one with New run (Ctrl+N); "
                "it trains in the background and shows here live.",
                [("New run…", self.open_launch_dialog)])
        self.body.setCurrentWidget(self.empty if empty else self.split)

    def say(self, text: str) -> None:
        self.message.setText(text)

    # ------------------------------------------------------------------ launching

    def open_launch_dialog(self, initial: dict | None = None) -> int | None:
        """Show the launch dialog; on Launch, create the run and start its worker. Returns the run id."""
        from studio.ui.runs.launch_dialog import LaunchDialog

        if self.project.read_only:
            self.message.setText("This project is read-only: runs can be watched and compared, not started.")
            return None
        dialog = LaunchDialog(self.project, self, initial=initial)
        if dialog.exec() != QDialog.DialogCode.Accepted or dialog.run_id is None:
            return None
        if dialog.queued:
            self.start_queue(dialog.run_ids)
        else:
            self.start_run(dialog.run_id)
        return dialog.run_id

    def open_generate_dialog(self, kind: str = GENERATE) -> int | None:
        """Show the Generate dialog; on Start, create the job and start its worker. Returns the job's run id."""
        from studio.ui.runs.generate_dialog import GenerateDialog

        if self.project.read_only:
            self.message.setText("This project is read-only: nothing can be generated into it.")
            return None
        dialog = GenerateDialog(self.project, self, kind=kind)
        if dialog.exec() != QDialog.DialogCode.Accepted or dialog.run_id is None:
            return None
        self.start_run(dialog.run_id)
        if kind == ARENA or self.project.run(dialog.run_id)["method"] == ARENA:
            self.say(f"Started arena job {dialog.run_id}: label its blind pairs in the Label section as they come; "
                     f"results in the Arena tab.")
        return dialog.run_id

    def start_queue(self, run_ids: list[int] | None = None) -> None:
        """Make sure a queue runner trains the queued runs one after another (it survives the window), and
        show the first of `run_ids`."""
        if self.project.folder is None:
            self.say("This project lives in memory; runs need a project folder.")
            return
        runner = queue_runner(self.project)
        mine = self._queue_runner is not None and self._queue_runner.poll() is None
        if runner is None and not mine:
            if not self.ensure_worker_env():
                self.say("The queued runs wait: training needs its Python environment first.")
                return
            try:
                self._queue_runner = jobs.start_queue(self.project.folder)
            except OSError as e:
                self.say(f"Could not start the queue runner: {e}")
                return
        if run_ids:
            ids = ", ".join(map(str, run_ids))
            self.say(f"Queued run{'s' if len(run_ids) > 1 else ''} {ids}: the queue trains them one after another "
                     f"(log: {self.project.folder / paths.RUNS_DIR / 'queue.log'}).")
            self.poller.refresh_runs()
            self.ensure_views()
            self.show_run(run_ids[0])

    def _keep_queue_going(self, runs: list[dict]) -> None:
        """Runs waiting in the queue with no runner (it was killed, or the project was copied) get one."""
        if self.keeps_queue_going and self.project.folder is not None and queue_places(runs) \
                and not self.project.closed and worker_env.available():
            self.start_queue()

    def start_run(self, run_id: int, resume: bool = False) -> None:
        """Spawn the worker for a run and show it. The spawned pid is stored at once, so a worker that
        dies before it reports is found by mark_dead_runs instead of staying queued forever."""
        if self.project.folder is None:
            self.say("This project lives in memory; runs need a project folder.")
            return
        self._stop_deadlines.pop(run_id, None)
        if not self.ensure_worker_env():
            self.say(f"Run {run_id} was not started: training needs its Python environment first "
                     "(the desktop app sets it up once).")
            self.poller.refresh_runs()
            return
        try:
            proc = jobs.start_training(self.project.folder, run_id, resume=resume)
        except OSError as e:
            if not resume:  # a resumable run keeps its state: Resume can be tried again
                self.project.update_run(run_id, status="failed", error=f"could not start the worker: {e}")
            self.say(f"Could not start the worker for run {run_id}: {e}")
            self.poller.refresh_runs()
            return
        # A resumed run stays interrupted/failed until its worker claims it: `studio train --resume`
        # only accepts those states, so marking it queued here made every resume fail.
        if resume:
            self._starting[run_id] = (proc, self.project.run(run_id)["step"])
            self._child_timer.start()
        else:
            self.project.update_run(run_id, pid=proc.pid, host=hostname())
        log = paths.log_path(self.project.folder, run_id)
        self.say(f"{'Resuming' if resume else 'Started'} run {run_id} (worker pid {proc.pid}; log: {log}).")
        self.poller.refresh_runs()
        self.ensure_views()
        self.show_run(run_id)

    def ensure_worker_env(self) -> bool:
        """True when workers can start; in the desktop bundle without its training environment, offer to
        set it up (what it installs, then progress) and say whether that worked."""
        try:
            worker_env.worker_python()
            return True
        except worker_env.WorkerEnvMissing:
            pass
        from studio.ui.runs.worker_setup import WorkerSetupDialog

        dialog = WorkerSetupDialog(worker_env.plan_setup(), self)
        return dialog.exec() == QDialog.DialogCode.Accepted

    def retry_run(self, run_id: int) -> int | None:
        from studio.ui.runs.launch_fields import initial_from_run

        run = self.project.run(run_id)
        if run["method"] in JOB_METHODS:  # no settings to change: the job goes on with the prompts not done
            self.start_run(run_id, resume=True)
            return run_id
        return self.open_launch_dialog(initial_from_run(run, retry=True))

    def duplicate_selected(self) -> int | None:
        from studio.ui.runs.launch_fields import initial_from_run

        runs = self.selected_runs()
        if len(runs) != 1:
            return None
        return self.open_launch_dialog(initial_from_run(self.project.run(runs[0]["id"])))

    # ------------------------------------------------------------------ stopping, resuming

    def stop_run(self, run_id: int) -> None:
        """Ask the worker to stop between steps; SIGTERM it if it has not stopped after a grace period. A run
        waiting in the queue is taken out of it."""
        if cancel_queued(self.project, run_id):
            self.say(f"Run {run_id} will not start: taken out of the queue (Duplicate… makes a new one).")
            self.poller.refresh_runs()
            return
        self.project.request_stop(run_id)
        run = self.project.run(run_id)
        if run["status"] == RunStatus.QUEUED and not (run["pid"] and pid_alive(run["pid"])):
            self.project.update_run(run_id, status="interrupted")  # never started: nothing to wait for
        self.say(f"Asked run {run_id} to stop after its current step.")
        self._stop_deadlines[run_id] = time.monotonic() + jobs.STOP_GRACE_S
        self._stop_timer.start()
        self.poller.refresh_runs()

    def _escalate_stops(self) -> None:
        """SIGTERM the workers that have not stopped within the grace period (same graceful path)."""
        now = time.monotonic()
        for run_id, deadline in list(self._stop_deadlines.items()):
            try:
                run = self.project.run(run_id)
            except ProjectError:
                self._stop_deadlines.pop(run_id)
                continue
            alive = RunStatus(run["status"]).active and pid_alive(run["pid"])
            if not alive:
                self._stop_deadlines.pop(run_id)
                # "Asked run N to stop" otherwise stays up, even after the run is resumed from the CLI
                self.say(f"Run {run_id} stopped at step {run['step']} ({run['status']}).")
            elif now >= deadline:
                self._stop_deadlines.pop(run_id)
                if jobs.terminate(run["pid"]):
                    self.say(f"Run {run_id} did not stop within {jobs.STOP_GRACE_S:.0f} s; sent it SIGTERM.")
        if not self._stop_deadlines:
            self._stop_timer.stop()

    def stop_selected(self) -> None:
        for r in self.selected_runs():
            if RunStatus(r["status"]).active:
                self.stop_run(r["id"])

    def resume_selected(self) -> None:
        runs = self.selected_runs()
        if len(runs) == 1 and jobs.resumable(self.project.folder, runs[0]):
            self.start_run(runs[0]["id"], resume=True)

    # ------------------------------------------------------------------ delete, folder, export

    def confirm(self, title: str, text: str) -> bool:
        """Ask a yes/no question (tests replace this)."""
        answer = QMessageBox.question(self, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def delete_selected(self) -> None:
        runs = self.selected_runs()
        if not runs:
            return
        names = ", ".join(r["name"] for r in runs)
        if not self.confirm("Delete runs", f"Delete {names} with their metrics, adapters and checkpoints? "
                                           f"This cannot be undone."):
            return
        for r in runs:
            try:
                self.project.delete_run(r["id"], files=True)
                self.poller.forget(r["id"])
            except ProjectError as e:
                self.say(str(e))
        if self.monitor is not None and self.monitor.run_id in [r["id"] for r in runs]:
            self.monitor.set_run(None)
        self.poller.refresh_runs()

    def open_folder(self) -> None:
        runs = self.selected_runs()
        if len(runs) == 1 and self.project.folder is not None:
            folder = paths.run_dir(self.project.folder, runs[0]["id"])
            folder.mkdir(parents=True, exist_ok=True)
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def export_selected(self) -> None:
        runs = self.selected_runs()
        if len(runs) != 1:
            return
        dialog = ExportDialog(runs[0], self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.export_run(runs[0]["id"], dialog.out_path(), dialog.merged.isChecked())

    def export_run(self, run_id: int, out: Path, merged: bool) -> bool:
        """Spawn `studio export-model`; its end (success or the error it printed) shows in the message
        line. False, with the reason shown, when it cannot start."""
        problem = export_problem(out)
        if problem:
            self.say(f"Cannot export run {run_id}: {problem}")
            return False
        try:
            proc = jobs.start_export(self.project.folder, run_id, out, merged)
        except OSError as e:
            self.say(f"Could not start the export of run {run_id}: {e}")
            return False
        self._exports.append((run_id, out, proc, time.monotonic()))
        self._child_timer.start()
        self.say(f"Exporting run {run_id} {'as a merged model ' if merged else ''}to {out}…")
        self._update_buttons()
        return True

    def exporting(self) -> bool:
        return bool(self._exports)

    def _check_children(self) -> None:
        """Report exports that ended and workers that exited before claiming their run."""
        for entry in list(self._exports):
            run_id, out, proc, started = entry
            code = proc.poll()
            if code is None:
                self.say(f"Exporting run {run_id} to {out}… {time.monotonic() - started:.0f} s")
                continue
            self._exports.remove(entry)
            log = paths.run_dir(self.project.folder, run_id) / "export.log"
            if code == 0:
                self.say(f"Exported run {run_id} to {out}.")
            else:
                self.say(f"Export of run {run_id} failed: {jobs.last_error(log) or f'exit {code}'} (log: {log})")
            self._update_buttons()
        for run_id, (proc, from_step) in list(self._starting.items()):
            try:
                run = self.project.run(run_id)
            except ProjectError:  # deleted meanwhile
                self._starting.pop(run_id)
                continue
            claimed = run["pid"] == proc.pid  # the worker stores its pid when it claims the run
            code = proc.poll()
            if claimed or code is not None:
                self._starting.pop(run_id)
                self._update_buttons()
            if claimed:
                self.say(f"Run {run_id} resumed from its last checkpoint (it had reached step {from_step}).")
            if not claimed and code is not None:
                log = paths.log_path(self.project.folder, run_id)
                self.say(f"Run {run_id} did not resume: {jobs.last_error(log) or f'exit {code}'} (log: {log})")
        if not self._exports and not self._starting:
            self._child_timer.stop()

    def compare_selected(self) -> None:
        self.ensure_views()
        self.compare.set_runs(sorted(self.table.selected_ids()))
        self.tabs.setCurrentWidget(self.compare)

    # ------------------------------------------------------------------ closing

    def active_runs(self) -> list[dict]:
        self.project.mark_dead_runs()
        return [r for r in self.project.runs() if RunStatus(r["status"]).active]

    def ask_close(self, runs: list[dict]) -> str:
        """'keep', 'stop' or 'cancel' (tests replace this)."""
        box = QMessageBox(self)
        box.setWindowTitle("Runs are still training")
        names = ", ".join(r["name"] for r in runs)
        box.setText(f"{names} {'is' if len(runs) == 1 else 'are'} still training.")
        box.setInformativeText("Training goes on without the window; reopen the project to watch it again.")
        keep = box.addButton("Keep running", QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop and close", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        clicked = box.clickedButton()
        return "keep" if clicked is keep else ("stop" if clicked is stop else "cancel")

    def confirm_close(self) -> bool:
        """Called by the main window before it closes; False cancels the close. Workers run in their
        own sessions, so 'keep running' needs nothing more than letting the window go."""
        runs = self.active_runs()
        if runs:
            answer = self.ask_close(runs)
            if answer == "cancel":
                return False
            if answer == "stop":
                for r in runs:  # runs waiting in the queue are taken out of it, the others asked to stop
                    if not cancel_queued(self.project, r["id"]):
                        self.project.request_stop(r["id"])
        self.poller.stop()
        return True
