"""The recipe of a generation job (a run of method `generate` or `arena`): sample responses from each source for
the plan's prompts, batch by batch, and store each batch with its provenance and pairs in one transaction.

A stop (the Stop button, `studio stop`, SIGTERM) ends the job after the current source's batch; what was
written stays and is labelable, and `--resume` continues with the prompts not done yet. Sources on one base
model share its weights: each run's adapter is loaded next to the others and switched on in turn, and the
base model alone is the same weights with the adapters disabled.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from studio.core import paths
from studio.core.generations import GenerationPlan, Source, batch_seed, sample_pairs, shuffled_pairs
from studio.core.models import ModelNotFound, resolve_model
from studio.store import generations as store
from studio.store.project import now_iso
from studio.train import data
from studio.train.generation import SamplingSettings, generate
from studio.train.model import load_tokenizer
from studio.train.preflight import TrainingError
from studio.train.runtime import RunContext, device_name

log = logging.getLogger("studio.train")


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def weights_dtype_for(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that has it (half the memory, what models are trained in), fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class Policies:
    """Each source's model, loaded once per base model; `use(source)` switches to it."""

    def __init__(self, sources: list[Source], project_folder: Path, device: torch.device):
        from transformers import AutoModelForCausalLM

        self.models: dict[str, tuple[object, object]] = {}  # base model name: (tokenizer, model or PeftModel)
        dtype = weights_dtype_for(device)
        for model_name in dict.fromkeys(s.model for s in sources):
            try:
                path = resolve_model(model_name)
            except ModelNotFound as e:
                raise TrainingError(str(e)) from None
            tokenizer = load_tokenizer(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
            model.eval()
            for src in sources:
                if src.model == model_name and src.adapter_run is not None:
                    model = self._add_adapter(model, src, project_folder)
            self.models[model_name] = (tokenizer, model)

    @staticmethod
    def _add_adapter(model, src: Source, project_folder: Path):
        from peft import PeftModel

        folder = paths.adapter_dir(project_folder, src.adapter_run)
        if not (folder / "adapter_config.json").is_file():
            raise TrainingError(f"source {src.name}: the adapter of run {src.adapter_run} is gone ({folder}); was the "
                                f"run deleted? Start a new job without it")
        name = adapter_name(src)
        if isinstance(model, PeftModel):
            model.load_adapter(str(folder), adapter_name=name)
            return model
        return PeftModel.from_pretrained(model, str(folder), adapter_name=name)

    @contextlib.contextmanager
    def use(self, src: Source) -> Iterator[tuple[object, object]]:
        """(tokenizer, model) sampling as `src`: its adapter on, or every adapter off for the base model."""
        tokenizer, model = self.models[src.model]
        if src.adapter_run is not None:
            model.set_adapter(adapter_name(src))
            yield tokenizer, model
        elif hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                yield tokenizer, model
        else:
            yield tokenizer, model


def adapter_name(src: Source) -> str:
    return f"run{src.adapter_run}"


def prompt_ids_for(tokenizer, project, prompt_ids: list[int], max_prompt_tokens: int) -> list[list[int]]:
    """The prompts as the model sees them (chat template, BOS), long ones cut to their end."""
    out = []
    bos = getattr(tokenizer, "bos_token_id", None)
    for pid in prompt_ids:
        p = project.prompt(pid)
        ids = data.prompt_token_ids(tokenizer, p.text, p.messages)
        ids, _, _ = data.truncate(ids, [], [], max_prompt_tokens, max_prompt_tokens, "keep_end", bos_id=bos)
        out.append(ids)
    return out


def train(ctx: RunContext) -> str:
    """Carry out the plan; returns 'done', or 'interrupted' after a stop."""
    plan: GenerationPlan = ctx.config  # type: ignore[assignment]
    project, job_id = ctx.project, ctx.run_id
    if project.folder is None:
        raise TrainingError("a generation job needs a project folder")
    settings = SamplingSettings(max_new_tokens=plan.max_new_tokens, temperature=plan.temperature,
                                top_k=plan.top_k, top_p=plan.top_p)
    size = plan.prompts_per_batch
    batches = [plan.prompt_ids[i:i + size] for i in range(0, len(plan.prompt_ids), size)]
    done = store.done_prompts(project, job_id)
    device = pick_device()
    project.update_run(job_id, device=device_name(device), total_steps=len(plan.prompt_ids), step=len(done),
                       heartbeat_at=now_iso())
    log.info("%s job %d: %d sources (%s), %d prompts, %d sample(s) each, %s", plan.kind, job_id, len(plan.sources),
             "; ".join(s.describe() for s in plan.sources), len(plan.prompt_ids), plan.samples, plan.sampling)
    policies = Policies(plan.sources, project.folder, device)
    pairing = sample_pairs(plan.kind, len(plan.sources), plan.samples)
    totals = {"generations": 0, "responses": 0, "pairs": 0, "identical": 0}
    start = time.monotonic()
    for b, batch in enumerate(batches):
        if all(pid in done for pid in batch):
            continue
        texts: list[store.GeneratedText] = []
        for s, src in enumerate(plan.sources):
            if ctx.should_stop():
                log.info("stopped before batch %d/%d; %d prompts done", b + 1, len(batches), len(done))
                return "interrupted"
            seed = batch_seed(plan.seed, b, s)
            with policies.use(src) as (tokenizer, model):
                ids = prompt_ids_for(tokenizer, project, batch, plan.max_prompt_tokens)
                gens = generate(model, tokenizer, ids, settings, seed, device, num_samples=plan.samples)
                for row in range(len(gens)):
                    completion = gens.completion_ids[row]
                    texts.append(store.GeneratedText(
                        prompt_id=batch[gens.prompt_index[row]], source=s, sample=row % plan.samples,
                        text=tokenizer.decode(completion, skip_special_tokens=True).strip(),
                        completion_tokens=len(completion), finished=gens.finished[row], seed=seed))
        index = {(t.prompt_id, t.source, t.sample): i for i, t in enumerate(texts)}
        pairs = [(index[(pid, sa, ka)], index[(pid, sb, kb)]) for pid in batch for (sa, ka), (sb, kb) in pairing]
        pairs = shuffled_pairs(pairs, random.Random(f"{plan.seed}/{b}"))
        counts = store.write_batch(project, job_id, plan, texts, pairs)
        totals["generations"] += len(texts)
        for k in ("responses", "pairs", "identical"):
            totals[k] += counts[k]
        done.update(batch)
        project.update_run(job_id, step=len(done), heartbeat_at=now_iso())
        rate = totals["generations"] / max(time.monotonic() - start, 1e-9)
        log.info("prompts %d/%d: %d generations, %d pairs, %d identical", len(done), len(plan.prompt_ids),
                 totals["generations"], totals["pairs"], totals["identical"])
        if ctx.on_progress is not None:
            ctx.on_progress(len(done), len(plan.prompt_ids), {**totals, "generations_per_second": rate})
    return "done"
