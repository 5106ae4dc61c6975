"""The project store: one SQLite file per project, through sqlite-utils. No Qt, no torch; all the SQL."""

from studio.store.db import ProjectBusy, ProjectError, ProjectReadOnly, StorageError
from studio.store.pairs import LabelConflict, PairFilter, PairRow
from studio.store.project import Project

__all__ = ["LabelConflict", "PairFilter", "PairRow", "Project", "ProjectBusy", "ProjectError", "ProjectReadOnly",
           "StorageError"]
