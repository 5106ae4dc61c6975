"""The reward-model recipe: a LoRA adapter plus a scalar score head on the base model, trained with the
Bradley-Terry loss on the run's frozen snapshot of resolved preferences.

Chosen and rejected run through one forward pass (one [2B, T] batch); each one's reward is the head's output at
its last non-pad token. Optional: a margin from the labels' strength (Llama 2) and a term centring the rewards
on 0. The adapter goes to `runs/<id>/adapter/` with the score head beside it (`score_head.safetensors`); a
PPO/RLOO run on the same base loads both as its frozen reward adapter, and `export-model --merged` writes a
sequence-classification model. `train()` at the bottom reads top to bottom, like the DPO recipe's.
"""

from __future__ import annotations

import logging
import math

import torch

from studio.core import metrics as M
from studio.core import paths
from studio.core.configs import RewardConfig
from studio.store.rlhf import preference_strengths
from studio.train import checkpoint, data, runtime
from studio.train.data import StoppablePass
from studio.train.metrics_writer import metric_sink
from studio.train.model import eval_mode, load_policy
from studio.train.preflight import TrainingError
from studio.train.recipe import RecipeRun
from studio.train.reward_model import RewardModel, hidden_size, new_head, save_head
from studio.train.rl_losses import bradley_terry_loss
from studio.train.runtime import RunContext, TrainingClock
from studio.train.step_stats import StepStats

log = logging.getLogger("studio.train")

REWARD_SQUARE = "reward_square"  # the mean squared reward, from which std_reward is read; not written
STEP_METRICS = (M.LOSS, M.ACCURACY, M.MARGIN, M.MEAN_REWARD, REWARD_SQUARE)


def reward_forward(model, batch: data.Batch, margins: torch.Tensor | None, config: RewardConfig,
                   stats: StepStats | None = None) -> torch.Tensor:
    """Scores of chosen and rejected (one forward), the Bradley-Terry loss; statistics added to `stats`."""
    B = batch.n_pairs
    scores = model(batch.input_ids, batch.attention_mask)
    chosen, rejected = scores[:B], scores[B:]
    loss = bradley_terry_loss(chosen, rejected, margins, config.center_rewards_coefficient)
    if stats is not None:
        with torch.no_grad():
            s = scores.detach()
            stats.add({M.LOSS: (loss.detach(), 1), M.ACCURACY: ((chosen > rejected).float().sum(), B),
                       M.MARGIN: ((chosen - rejected).detach().sum(), B), M.MEAN_REWARD: (s.sum(), 2 * B),
                       REWARD_SQUARE: ((s ** 2).sum(), 2 * B)}, tokens=batch.attention_mask.sum())
    return loss


def read_stats(stats: StepStats) -> dict[str, float]:
    """The statistics as metrics: the reward's spread from its mean square and mean."""
    values = stats.read()
    square = values.pop(REWARD_SQUARE, None)
    if square is not None and M.MEAN_REWARD in values:
        values[M.STD_REWARD] = math.sqrt(max(0.0, square - values[M.MEAN_REWARD] ** 2))
    return values


class RewardRun(RecipeRun):
    """One reward run's model, data, optimizer, position and metric sink."""

    def __init__(self, ctx: RunContext):
        """Settings and data are checked before the model loads, then model, data, optimizer and checkpoint."""
        assert isinstance(ctx.config, RewardConfig), "the reward recipe trains reward runs"
        super().__init__(ctx)
        config, project, run_id = self.config, ctx.project, ctx.run_id
        train_rows, eval_rows = data.split_eval(project.run_snapshot(run_id), config.eval_fraction, config.seed)
        if not train_rows:
            raise TrainingError(f"run {run_id}: its snapshot holds no train preferences; label some pairs (a or b) "
                                f"in the train split before starting a run")
        self.strengths = preference_strengths(project, run_id) if config.strength_margin else {}
        ckpt = self.load_checkpoint() if ctx.resume else None
        self.report_device()

        # model and data: the base with a fresh adapter and score head; the snapshot, tokenized once
        self.tokenizer, self.peft_model = load_policy(ctx.model_path, config, self.accelerator.mixed_precision)
        self.head = new_head(hidden_size(self.peft_model), config.seed).to(self.device)
        self.pad_id = self.tokenizer.pad_token_id
        tok = dict(max_length=config.max_length, max_prompt_length=config.max_prompt_length,
                   truncation=config.truncation)
        self.tokenize = data.PairTokenizer(self.tokenizer, **tok)
        self.train_ex = self.tokenize.rows(train_rows)
        self.eval_rows = eval_rows  # tokenized by each evaluation's pass, a batch at a time
        self.total_steps = runtime.total_steps_for(config, math.ceil(len(self.train_ex) / self.world))
        log.info("%d train pairs, %d eval pairs, %d optimizer steps", len(self.train_ex), len(self.eval_rows),
                 self.total_steps)

        # optimizer and schedule over the adapter and the head
        self.trainable = [p for p in self.peft_model.parameters() if p.requires_grad] + list(self.head.parameters())
        optimizer = torch.optim.AdamW(self.trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = runtime.make_scheduler(optimizer, config, self.total_steps)
        self.model, self.optimizer = self.accelerator.prepare(RewardModel(self.peft_model, self.head), optimizer)
        self.peft_model.train()
        if ckpt is not None:
            self.restore(ckpt)
        if self.main:
            project.update_run(run_id, total_steps=self.total_steps, step=self.position.step)
        self.writer = metric_sink(project, run_id, self.main)
        self._epoch_batches: tuple[int, list[list[data.Example]]] | None = None

    # -- data

    def next_batch(self) -> data.Batch:
        """The next micro-batch of this process's share, on the device; moves on to the next epoch's order."""
        pos = self.position
        while True:
            batches = self.epoch_batches()
            if pos.batch_index < len(batches):
                pos.batch_index += 1
                examples = batches[pos.batch_index - 1]
                pos.tokens += sum(e.n_tokens for e in examples)  # counted on the host: no device sync
                return data.collate(examples, self.pad_id).to(self.device)
            pos.epoch, pos.batch_index = pos.epoch + 1, 0

    def epoch_batches(self) -> list[list[data.Example]]:
        epoch = self.position.epoch
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            idx = data.epoch_batches(len(self.train_ex), self.config.batch_size, self.config.seed, epoch,
                                     self.world, self.rank)
            self._epoch_batches = (epoch, [[self.train_ex[i] for i in b] for b in idx])
        return self._epoch_batches[1]

    def margins(self, batch: data.Batch) -> torch.Tensor | None:
        """strength_margin x each pair's label strength, or None without a margin."""
        if not self.config.strength_margin:
            return None
        values = [self.config.strength_margin * self.strengths.get(pid, 0.0) for pid in batch.pair_ids]
        return torch.tensor(values, dtype=torch.float32, device=self.device)

    # -- step, log, evaluate

    def step(self, micro_batches: list[data.Batch], stats: StepStats | None) -> torch.Tensor:
        """One optimizer step: forward, loss, backward per micro-batch; clip; step. Returns the grad norm."""
        for batch in micro_batches:
            with self.accelerator.autocast():
                loss = reward_forward(self.model, batch, self.margins(batch), self.config, stats)
            self.accelerator.backward(loss / len(micro_batches))
        grad_norm = self.accelerator.clip_grad_norm_(self.trainable, self.config.max_grad_norm or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def log_metrics(self, stats: StepStats, grad_norm: torch.Tensor, lr: float,
                    clock: TrainingClock) -> dict[str, float]:
        """Read the statistics (one sync) and write the step's metrics; a loss no longer finite fails the run."""
        config, pos = self.config, self.position
        values = read_stats(stats)
        tokens = stats.tokens * clock.micro_batches / config.grad_accumulation
        values.update({M.GRAD_NORM: float(grad_norm), M.LEARNING_RATE: lr,
                       M.TOKENS_PER_SECOND: tokens / max(clock.seconds(), 1e-9),
                       M.MEMORY: runtime.peak_memory_gib(self.device), M.NUM_TOKENS: pos.tokens * self.world,
                       M.EPOCH: pos.epoch + pos.batch_index / max(1, len(self.epoch_batches()))})
        self.writer.add(pos.step, values)
        if not math.isfinite(values[M.LOSS]):
            self.writer.flush(wait=True)
            raise TrainingError(f"the loss became {values[M.LOSS]} at step {pos.step}: training diverged. Lower "
                                f"learning_rate (now {config.learning_rate:g}) or keep max_grad_norm > 0; then "
                                f"resume from the last checkpoint or start a new run")
        return values

    @torch.no_grad()
    def evaluate(self) -> bool:
        """The train metrics on the eval split (no gradient, dropout off), written with the step; False when a
        stop came first (nothing written)."""
        if self.eval_rows:
            stats = StepStats(self.device, STEP_METRICS)
            # every process evaluates the whole eval split (no sharding), as the statistics are read locally
            batches = StoppablePass(self.eval_rows, self.tokenize, self.config.batch_size, self.pad_id, self.device,
                                    self.stop_requested)
            with eval_mode(self.peft_model):
                for batch in batches:
                    with self.accelerator.autocast():
                        reward_forward(self.model, batch, self.margins(batch), self.config, stats)
            if batches.stopped:
                return False
            values = {M.eval_name(k): v for k, v in read_stats(stats).items()}
            values[M.EVAL_PAIRS] = len(self.eval_rows)  # what an eval accuracy's n is (the runs list shows it)
            self.writer.add(self.position.step, values)
        self.position.evaluated_step = self.position.step
        return True

    # -- checkpoint

    def save_checkpoint(self) -> None:
        """The resumable checkpoint (see `restore` for its mirror), the adapter and the score head beside it."""
        ckpt = self.training_state() | {
            "adapter": checkpoint.adapter_state(self.peft_model),
            "head": {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}}
        self.record_checkpoint(ckpt)
        if self.main:
            adapter = paths.adapter_dir(self.folder, self.ctx.run_id)
            checkpoint.save_adapter(self.peft_model, self.tokenizer, adapter)
            save_head(self.head, adapter)

    def restore(self, ckpt: dict) -> None:
        checkpoint.load_adapter_state(self.peft_model, ckpt["adapter"])
        self.head.load_state_dict(ckpt["head"])
        self.restore_training_state(ckpt)


def train(ctx: RunContext) -> str:
    """Train the reward model to its end or until asked to stop. Returns 'done' or 'interrupted'."""
    run = RewardRun(ctx)
    config, pos = run.config, run.position

    # the baseline at step 0 (an untrained head ranks pairs by chance), or an evaluation a stop cut short
    run.evaluate_baseline()

    stats, clock = StepStats(run.device, STEP_METRICS), TrainingClock()
    status = "done"
    while pos.step < run.total_steps:
        # stop requested (GUI button or signal): save and leave between optimizer steps
        if run.stop_requested():
            status = "interrupted"
            break

        # learning rate of this step (the scheduler sets it; logged as used)
        lr = run.scheduler.get_last_lr()[0]

        # forward, loss, backward over grad_accumulation micro-batches; clip; step
        log_step = run.is_log_step()
        micro_batches = [run.next_batch() for _ in range(config.grad_accumulation)]
        grad_norm = run.step(micro_batches, stats if log_step else None)
        clock.micro_batches += len(micro_batches)
        pos.step += 1

        # log (the only place that syncs with the device)
        if log_step:
            values = run.log_metrics(stats, grad_norm, lr, clock)
            stats = StepStats(run.device, STEP_METRICS)
            clock.restart()
            if ctx.on_progress:
                ctx.on_progress(pos.step, run.total_steps, values)
        run.writer.set_step(pos.step)

        # evaluate, checkpoint (their time is left out of the next tokens/s window)
        with clock.paused():
            run.evaluate_and_checkpoint()

    # the end: the final evaluation, the checkpoint, the last rows
    return run.finish(status)
