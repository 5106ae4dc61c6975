"""Compare's "Report…": ask where, write the self-contained HTML report of the compared runs, offer to open it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from studio.store.comparison import write_report
from studio.store.project import ProjectError


def default_report_path(project, run_ids: list[int]) -> Path:
    base = project.folder if project.folder is not None else Path.home()
    return base / f"report-runs-{'-'.join(map(str, run_ids[:6]))}.html"


def ask_and_write_report(parent: QWidget, project, run_ids: list[int], price: float | None,
                         by_group: bool = True) -> Path | None:
    """Ask for a file, write the report there, and offer to open it. Returns the file written, or None."""
    if not run_ids:
        QMessageBox.information(parent, "Report", "Tick the runs to compare first.")
        return None
    path, _ = QFileDialog.getSaveFileName(parent, "Save the comparison report",
                                          str(default_report_path(project, run_ids)), "HTML (*.html)")
    if not path:
        return None
    try:
        out = write_report(project, run_ids, path, price, by_group)
    except ProjectError as e:
        QMessageBox.warning(parent, "Report", f"The report was not written: {e}")
        return None
    answer = QMessageBox.question(parent, "Report written", f"Wrote {out}.\n\nOpen it now?",
                                  QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Close,
                                  QMessageBox.StandardButton.Open)
    if answer == QMessageBox.StandardButton.Open:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(out)))
    return out
