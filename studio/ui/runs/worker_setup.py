"""The dialog that sets up the desktop bundle's training environment: says what it installs, then runs
the plan's commands one after another with progress and a Cancel that stops the running one."""

from __future__ import annotations

from PySide6.QtCore import QProcess, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from studio.ui.runs import worker_env


class WorkerSetupDialog(QDialog):
    """Accepted once every step succeeded and a worker can start."""

    finished_setup = Signal(bool)
    """True when the environment works, False when a step failed or was cancelled."""

    def __init__(self, plan: worker_env.SetupPlan, parent: QWidget | None = None):
        super().__init__(parent)
        self.plan = plan
        self.setWindowTitle("Set up training")
        self.setMinimumWidth(620)
        self._step = -1
        self._cancelled = False
        self._proc: QProcess | None = None
        layout = QVBoxLayout(self)
        self.text = QLabel(worker_env.describe(plan))
        self.text.setWordWrap(True)
        layout.addWidget(self.text)
        self.progress = QProgressBar()
        self.progress.setRange(0, len(plan.steps))
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        layout.addWidget(self.progress)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(400)
        self.log.setPlaceholderText("What the installer prints appears here.")
        layout.addWidget(self.log, 1)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.start_button = self.buttons.addButton("Set up", QDialogButtonBox.ButtonRole.AcceptRole)
        self.start_button.setEnabled(not plan.problems)
        self.start_button.clicked.disconnect()
        self.start_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.cancel)
        layout.addWidget(self.buttons)

    def start(self) -> None:
        self.start_button.setEnabled(False)
        self._next()

    def _next(self) -> None:
        self._step += 1
        if self._step >= len(self.plan.steps):
            self.progress.setFormat("done: a worker can start")
            self.finished_setup.emit(True)
            self.accept()
            return
        what, cmd = self.plan.steps[self._step]
        self.progress.setValue(self._step)
        self.progress.setFormat(f"step {self._step + 1} of {len(self.plan.steps)}: {what}")
        self.log.appendPlainText(f"$ {' '.join(cmd)}")
        proc = self._proc = QProcess(self)
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.readyReadStandardOutput.connect(self._read)
        proc.finished.connect(self._done)
        proc.errorOccurred.connect(self._error)
        proc.start(cmd[0], cmd[1:])

    def _read(self) -> None:
        if self._proc is not None:
            text = bytes(self._proc.readAllStandardOutput().data()).decode("utf-8", "replace")
            for line in text.splitlines():
                if line.strip():
                    self.log.appendPlainText(line)

    def _done(self, code: int, _status) -> None:
        if self._cancelled:
            return
        self._read()
        if code != 0:
            self._fail(f"step {self._step + 1} failed (exit {code}); the log above says why")
            return
        self._next()

    def _error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._fail(f"step {self._step + 1} could not start: {self.plan.steps[self._step][1][0]} not found")

    def _fail(self, message: str) -> None:
        self.progress.setFormat(message)
        self.log.appendPlainText(message)
        self.start_button.setText("Try again")
        self.start_button.setEnabled(True)
        self._step = -1
        self.finished_setup.emit(False)

    def cancel(self) -> None:
        self._cancelled = True
        if self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning:
            self._proc.kill()
            self._proc.waitForFinished(3000)
        self.finished_setup.emit(False)
        self.reject()
