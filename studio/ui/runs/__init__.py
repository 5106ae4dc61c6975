"""The Runs section: launch, watch live, stop, resume and compare training runs.

The main window embeds `RunsPanel` and registers the screenshot views through
`register_screenshot_views`. pyqtgraph is imported only when the monitor is first shown.
"""

from __future__ import annotations

from studio.ui.runs.panel import RunsPanel
from studio.ui.runs.screens import register_screenshot_views

__all__ = ["RunsPanel", "register_screenshot_views"]
