"""What reward models and PPO/RLOO runs read from a project beyond a run's snapshot: the label strength of each
snapshot preference (for a reward model's margin), and the reward a PPO/RLOO run is linked to (validated at
launch, so resume, compare and duplicate find the same one)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from studio.core.models import ModelNotFound, resolve_model
from studio.core.types import RunStatus
from studio.store.db import ProjectError
from studio.store.project import Project

# Label strength as a margin, as Llama 2 scaled its rating levels (Touvron et al. 2023, table 28); a label
# without a strength (an import) asks for no margin.
STRENGTH_MARGINS = {"slight": 1 / 3, "clear": 2 / 3, "decisive": 1.0}

RULE_PREFIX = "rule:"
"""`reward_model = "rule:NAME"`: a Python reward function registered under NAME in the worker (a test hook)."""


def preference_strengths(project: Project, run_id: int) -> dict[int, float]:
    """Per pair of the run's snapshot: the mean strength (as a margin, 0 to 1) of the current labels that voted
    for its chosen response. Labels made after the snapshot count too: strength is read when the run starts."""
    rows = project._query(
        "SELECT rp.pair_id, l.strength FROM run_preferences rp JOIN pairs p ON p.id = rp.pair_id "
        "JOIN labels l ON l.pair_id = rp.pair_id AND l.state = 'current' "
        "AND l.choice = CASE WHEN p.response_a_id = rp.chosen_id THEN 'a' ELSE 'b' END "
        "WHERE rp.run_id = ?", (run_id,))
    sums: dict[int, list[float]] = {}
    for r in rows:
        sums.setdefault(r["pair_id"], []).append(STRENGTH_MARGINS.get(r["strength"] or "", 0.0))
    return {pid: sum(v) / len(v) for pid, v in sums.items()}


@dataclass(frozen=True)
class RewardSource:
    """Where a PPO/RLOO run's reward comes from."""

    kind: str  # 'run' (a reward run of this project), 'folder' (a sequence-classification model), 'rule'
    value: str  # what to store in the run's config: the run id, the absolute folder, or rule:NAME
    run_id: int | None = None
    path: Path | None = None  # the reward run's adapter folder, or the classifier's folder

    @property
    def description(self) -> str:
        if self.kind == "run":
            return f"reward run {self.run_id}"
        return f"{self.kind} {self.value}"


def reward_runs(project: Project) -> list[dict]:
    """The project's finished reward runs, newest first (what a PPO/RLOO launch can pick)."""
    return [r for r in reversed(project.runs()) if r["method"] == "reward" and r["status"] == RunStatus.DONE]


def reward_source(project: Project, value: str | int | None, model: str | None = None) -> RewardSource:
    """Check the `reward_model` setting of a PPO/RLOO run: a finished reward run of this project trained on the
    same base `model` (its adapter then shares the policy's base weights), or a sequence-classification model
    folder (or hub id in the local cache). Raises ProjectError saying what to give instead."""
    from studio.core import paths

    text = str(value if value is not None else "").strip()
    if not text:
        done = reward_runs(project)
        hint = (f"finished reward runs here: {', '.join(str(r['id']) for r in done)}" if done else
                "train one first with `studio train PROJECT --method reward --model MODEL`")
        raise ProjectError(f"reward_model: a PPO/RLOO run needs a reward: give --reward RUN (a finished reward run "
                           f"of this project; {hint}) or the folder of a sequence-classification model")
    if text.startswith(RULE_PREFIX):
        return RewardSource("rule", text)
    if text.isdigit():
        run_id = int(text)
        try:
            run = project.run(run_id)
        except ProjectError:
            raise ProjectError(f"reward_model: run {run_id}: no such run in this project") from None
        if run["method"] != "reward":
            raise ProjectError(f"reward_model: run {run_id} is a {run['method']} run, not a reward model; train one "
                               f"with `--method reward`")
        if run["status"] != RunStatus.DONE:
            raise ProjectError(f"reward_model: reward run {run_id} is {run['status']}; a PPO/RLOO run needs a "
                               f"finished one (resume it with `studio train PROJECT --resume {run_id}`)")
        if model is not None and not _same_model(run["model"], model):
            raise ProjectError(f"reward_model: reward run {run_id} was trained on {run['model']}, this run trains "
                               f"{model}; the reward adapter shares the policy's base weights, so train the reward "
                               f"model on the same base (or give a sequence-classification model folder)")
        adapter = paths.adapter_dir(project.folder, run_id) if project.folder is not None else None
        if adapter is None or not (adapter / "adapter_config.json").is_file():
            raise ProjectError(f"reward_model: reward run {run_id} has no adapter at {adapter}; train it again")
        return RewardSource("run", str(run_id), run_id=run_id, path=adapter)
    try:
        folder = resolve_model(text)
    except ModelNotFound as e:
        raise ProjectError(f"reward_model: {text!r} is neither a reward run id of this project nor a model: {e}") \
            from None
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ProjectError(f"reward_model: {folder / 'config.json'}: cannot be read ({e})") from None
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise ProjectError(f"reward_model: {folder} holds a {', '.join(architectures) or 'model'}, not a "
                           f"sequence-classification model (a reward model has one score output); give a reward "
                           f"run id or a *ForSequenceClassification folder")
    # transformers saves the label names; a config without them has its default of 2 labels
    outputs = len(config["id2label"]) if config.get("id2label") else int(config.get("num_labels", 2))
    if outputs != 1:
        raise ProjectError(f"reward_model: {folder} has {outputs} outputs; a reward model has one (num_labels=1)")
    value = str(folder.resolve()) if Path(text).expanduser().is_dir() else text
    return RewardSource("folder", value, path=folder)


def _same_model(a: str, b: str) -> bool:
    """Whether two model names (folders or cached hub ids) are the same model."""
    try:
        return resolve_model(a).resolve() == resolve_model(b).resolve()
    except ModelNotFound:
        return a == b
