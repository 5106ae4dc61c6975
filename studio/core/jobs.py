"""Runs that are jobs rather than training: generation (candidates, arena) and measurement (rank, frontier).

A job is a run the worker carries out like any other (progress, stop, resume), but its config is a plan, not
training settings: it has no adapter, no training curves and nothing to duplicate.
"""

from __future__ import annotations

from typing import Any

from studio.core.frontier import FRONTIER, FrontierPlan
from studio.core.generations import ARENA, GENERATE, GenerationPlan
from studio.core.informative import RANK, RankPlan

JOB_PLANS: dict[str, type] = {GENERATE: GenerationPlan, ARENA: GenerationPlan, RANK: RankPlan,
                              FRONTIER: FrontierPlan}
JOB_METHODS = tuple(JOB_PLANS)
"""Run methods that are jobs, not training."""
MEASURE_METHODS = (RANK, FRONTIER)
"""Jobs that measure with models already trained and write no pairs."""


def job_plan(method: str, config: dict[str, Any]) -> Any:
    """The plan stored on a job's run."""
    return JOB_PLANS[method].from_dict(config)
