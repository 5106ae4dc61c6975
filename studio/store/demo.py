"""The demo project: prompts, response pairs and labels by two annotators, shipped in studio/resources/demo."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from studio.store.project import Project

DEMO_FILE = ("resources", "demo", "demo.json")


def demo_data() -> dict[str, Any]:
    """The shipped demo data (found inside the installed package, so it works from a wheel too)."""
    return json.loads(resources.files("studio").joinpath(*DEMO_FILE).read_text(encoding="utf-8"))


def fill_demo(project: Project, data: dict[str, Any] | None = None) -> None:
    """Add the demo prompts, pairs and labels to a project, in one transaction."""
    data = data or demo_data()
    with project.transaction():
        settings = data.get("project", {})
        if "overlap_target" in settings:
            project.overlap_target = int(settings["overlap_target"])
        for item in data["prompts"]:
            prompt = item["prompt"]
            if isinstance(prompt, list):
                pid = project.add_prompt(messages=prompt, split=item.get("split", "train"), source="demo")
            else:
                pid = project.add_prompt(prompt, split=item.get("split", "train"), source="demo")
            for pair in item["pairs"]:
                a = project.add_response(pid, pair["a"], pair.get("model_a"))
                b = project.add_response(pid, pair["b"], pair.get("model_b"))
                pair_id = project.add_pair(pid, a, b, source="demo")
                if pair_id is None:
                    continue
                for lab in pair.get("labels", []):
                    # earlier verdicts first, so the label history shows a change of mind
                    for old in lab.get("history", []):
                        project.record_label(pair_id, lab["annotator"], old["choice"], lab["shown_left"],
                                             seconds=old.get("seconds"))
                    project.record_label(pair_id, lab["annotator"], lab["choice"], lab["shown_left"],
                                         strength=lab.get("strength"), rationale=lab.get("rationale"),
                                         seconds=lab.get("seconds"))


def create_demo(folder: str | Path) -> Project:
    """Create a new project folder holding the demo data; refuses an existing project."""
    project = Project.create(folder, name=Path(folder).name or "demo")
    try:
        fill_demo(project)
    except BaseException:
        project.close()
        raise
    return project
