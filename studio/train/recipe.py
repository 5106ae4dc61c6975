"""What the DPO, reward, PPO and RLOO recipes do the same way: where a run is (step, epoch, batch, last
evaluation), when a step is logged, evaluated or checkpointed, the device report, the checkpoint (its settings
check, the rows written before it, the position put back after it) and the stop check all processes agree on.
Each recipe's `train()` still reads top to bottom on top of it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

from studio.core import paths
from studio.core.configs import to_dict
from studio.train import checkpoint, preflight, runtime
from studio.train.metrics_writer import MetricSink
from studio.train.preflight import TrainingError
from studio.train.runtime import RunContext

log = logging.getLogger("studio.train")


@dataclass
class Position:
    """Optimizer (or rollout) steps done, the next batch (epoch, index in epoch), and the step whose evaluation
    finished (-1: none yet; a stop during an evaluation leaves it behind `step`, so the resumed run evaluates
    that step first instead of leaving a hole or doubling the rows)."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0
    evaluated_step: int = -1
    # the run's cost counters (M.NUM_TOKENS, M.SAMPLES_GENERATED): real tokens trained on by this process,
    # sequences the policy generated (evaluation samples, rollouts)
    tokens: int = 0
    samples_generated: int = 0

    def state_dict(self) -> dict:
        """The position's own fields (a recipe's subclass keeps what it adds elsewhere in its checkpoint)."""
        return {f.name: getattr(self, f.name) for f in fields(Position)}


def load_checked_checkpoint(ckpt_dir, config, run_id: int) -> dict:
    """The checkpoint to resume from, refused when the run's settings are no longer the ones it was saved with
    (adapter shapes, data order and schedule depend on them). Every recipe resumes through this."""
    ckpt = checkpoint.load(ckpt_dir)
    changes = preflight.config_changes(ckpt.get("config") or {}, to_dict(config))
    if changes:
        raise TrainingError(f"run {run_id}: its settings differ from its checkpoint's "
                            f"({'; '.join(changes)}), so it cannot continue where it stopped; duplicate the "
                            f"run to train with new settings")
    return ckpt


class RecipeRun:
    """The parts of a run every recipe has: context, settings, accelerator, position, schedule predicates,
    checkpoint folder. A recipe sets `total_steps` once it knows its data."""

    def __init__(self, ctx: RunContext):
        self.ctx, self.config = ctx, ctx.config
        assert ctx.project.folder is not None, "training needs a project folder for its adapter and checkpoints"
        self.folder = ctx.project.folder
        preflight.check_settings(self.config)
        self.accelerator = runtime.make_accelerator(self.config)
        self.device = self.accelerator.device
        # under `accelerate launch` every process trains its share; only the main one writes
        self.main = self.accelerator.is_main_process
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.ckpt_dir = paths.checkpoint_dir(self.folder, ctx.run_id)
        self.position = Position()
        self.total_steps = 0

    # -- what a recipe provides: its evaluation (False when a stop cut it short) and its checkpoint

    writer: MetricSink

    def evaluate(self) -> bool:
        raise NotImplementedError

    def save_checkpoint(self) -> None:
        raise NotImplementedError

    # -- the frame of every recipe's loop: its start, what follows each step, its end

    def evaluate_baseline(self) -> None:
        """Before the first step: the baseline evaluation at step 0, or an evaluation a stop cut short."""
        if self.eval_due() and not self.stop_requested():
            self.evaluate()

    def evaluate_and_checkpoint(self) -> None:
        """After a step: an evaluation and a checkpoint when due."""
        if self.eval_due():
            self.evaluate()
        if self.checkpoint_due():
            self.save_checkpoint()

    def finish(self, status: str) -> str:
        """The end: the final evaluation (a stop during it leaves it to the resume), the checkpoint, the last
        rows. Returns the run's final status."""
        pos = self.position
        if status == "done" and pos.evaluated_step != pos.step and not self.evaluate():
            status = "interrupted"
        self.save_checkpoint()
        self.writer.flush(wait=True)
        return status

    def report_device(self) -> None:
        where = runtime.device_name(self.device)
        log.info("device: %s, precision: %s, processes: %d", where, self.accelerator.mixed_precision, self.world)
        if self.main:
            self.ctx.project.update_run(self.ctx.run_id, device=where + (f" x{self.world}" if self.world > 1 else ""))

    # -- stop and schedule

    def stop_requested(self) -> bool:
        """A stop asked of any process (every process must leave together, see `runtime.any_process`)."""
        return runtime.any_process(self.accelerator, self.ctx.should_stop())

    def is_log_step(self) -> bool:
        """Whether the coming step is logged (every log_interval steps, and the last)."""
        step = self.position.step + 1
        return step % self.config.log_interval == 0 or step == self.total_steps

    def eval_due(self) -> bool:
        """An evaluation at this step, unless it is the last (the end evaluates) or done already."""
        step, interval = self.position.step, self.config.eval_interval
        return (interval > 0 and step % interval == 0 and step < self.total_steps
                and self.position.evaluated_step != step)

    def checkpoint_due(self) -> bool:
        """A checkpoint every checkpoint_interval steps before the last (the end always saves one)."""
        interval = self.config.checkpoint_interval
        return bool(interval) and self.position.step % interval == 0 and self.position.step < self.total_steps

    # -- checkpoint

    def load_checkpoint(self) -> dict:
        return load_checked_checkpoint(self.ckpt_dir, self.config, self.ctx.run_id)

    def training_state(self) -> dict:
        """What every recipe's checkpoint holds besides its weights: config, optimizer, schedule, RNG, position
        (the recipe's `optimizer` and `scheduler`). `restore_training_state` is its mirror."""
        return {"config": to_dict(self.config), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": checkpoint.rng_state(),
                "position": self.position.state_dict()}

    def restore_training_state(self, ckpt: dict) -> None:
        """Put back optimizer, schedule, position and RNG of a checkpoint; metric and sample rows logged after
        it are dropped."""
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        position = dict(ckpt["position"])
        position.setdefault("evaluated_step", position["step"])  # checkpoints of versions before it
        self.position = type(self.position)(**position)
        checkpoint.set_rng_state(ckpt["rng"])
        if self.main:
            self.ctx.project.truncate_run_after(self.ctx.run_id, self.position.step)
        log.info("resumed at step %d (epoch %d, batch %d)", self.position.step, self.position.epoch,
                 self.position.batch_index)

    def record_checkpoint(self, ckpt: dict) -> None:
        """Write a checkpoint dict (the main process only) and register it with the run. The rows logged up to
        it are written first: a kill after the checkpoint must not lose the rows of the steps it holds, since a
        resume starts after them (`restore_training_state` drops only rows logged after it)."""
        if self.main:
            self.writer.flush(wait=True)
            path = checkpoint.save(self.ckpt_dir, ckpt)
            self.ctx.project.add_checkpoint(self.ctx.run_id, self.position.step, path)
            log.info("checkpoint at step %d", self.position.step)
