"""The Qt desktop interface (PySide6 + pyqtgraph). Never imports torch."""
