"""The project store: one SQLite file per project, through sqlite-utils. No Qt, no torch."""

from studio.store.project import Project, ProjectError

__all__ = ["Project", "ProjectError"]
