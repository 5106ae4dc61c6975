"""Generation jobs in the store: creating one (a run of method `generate` or `arena`), writing what it sampled
with its provenance and pairs, and reading provenance back where it may be shown.

Provenance lives in `generations` and `generated_pairs` only. Generated responses carry no `model` and
their pairs a neutral source (`candidates 5`, `arena 2`), so nothing the labeling view reads before a
choice says who wrote what; `candidate_provenance` is what it may read after one, and it says nothing about
an arena's pairs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from studio.core import paths
from studio.core.generations import ARENA, BASE, GenerationPlan, Source
from studio.core.jobs import JOB_METHODS
from studio.store.db import ProjectError, content_hash, now_iso
from studio.store.imports import unpublished_sql, visible_sql
from studio.store.project import Project


@dataclass(frozen=True)
class GeneratedText:
    """One sampled completion, decoded, for `write_batch`."""

    prompt_id: int
    source: int
    """Index into the plan's sources."""
    sample: int
    text: str
    completion_tokens: int
    finished: bool
    """Ended at EOS or the end of turn (False: cut at max_new_tokens)."""
    seed: int


# ---------------------------------------------------------------------------------------------- creating a job


def resolve_sources(project: Project, specs: Sequence[str | int], model: str | None = None) -> list[Source]:
    """Sources from what a user names: 'base' (the base model), a run id (its adapter on its base model), or
    a model (a folder or hub id, alone). 'base' is `model` when given, else the base model of the runs
    named, which must then agree."""
    sources: list[Source] = []
    runs: list[dict] = []
    for spec in specs:
        text = str(spec).strip()
        if text.isdigit():
            run = project.run(int(text))
            if run["method"] in JOB_METHODS:
                raise ProjectError(f"run {run['id']}: is a {run['method']} job, not a training run; it has no adapter")
            if project.folder is None or not (paths.adapter_dir(project.folder, run["id"]) /
                                              "adapter_config.json").is_file():
                raise ProjectError(f"run {run['id']} ({run['name']}): has no saved adapter yet (status "
                                   f"{run['status']}); a run saves it at checkpoints and when it ends")
            runs.append(run)
    for spec in specs:
        text = str(spec).strip()
        if text.isdigit():
            run = next(r for r in runs if r["id"] == int(text))
            taken = [s.name for s in sources] + [BASE]
            name = run["name"] if run["name"] not in taken else f"{run['name']} (run {run['id']})"
            sources.append(Source(name, run["model"], run["id"], int(run["step"])))
        elif text == BASE:
            sources.append(Source(BASE, _base_model(runs, model)))
        elif text:
            name = text.rstrip("/").rsplit("/", 1)[-1]
            sources.append(Source(name if name not in [s.name for s in sources] else text, text))
        else:
            raise ProjectError("sources: an empty name")
    return sources


def _base_model(runs: list[dict], model: str | None) -> str:
    if model:
        return model
    models = sorted({r["model"] for r in runs})
    if len(models) == 1:
        return models[0]
    if not models:
        raise ProjectError("base: which model is the base? give --model MODEL (or a run, whose base model is used)")
    raise ProjectError(f"base: the runs have different base models ({', '.join(models)}); give --model to say "
                       f"which one 'base' is")


def choose_prompts(project: Project, split: str | None, limit: int | None = None, seed: int = 0) -> list[int]:
    """The prompts a job generates for: those of the split (every prompt without one), `limit` of them drawn
    at random (seeded) when given, in id order."""
    ids = _prompt_ids(project, split)
    if not ids:
        where = f"the {split} split" if split else "this project"
        raise ProjectError(f"prompts: {where} has no prompts to generate for (import some with `studio import "
                           f"PROJECT FILE --format prompts{' --split ' + split if split else ''}`)")
    if limit is not None and limit < len(ids):
        if limit < 1:
            raise ProjectError("prompts: the number of prompts must be at least 1")
        ids = sorted(random.Random(seed).sample(ids, limit))
    return ids


def _prompt_ids(project: Project, split: str | None) -> list[int]:
    """The prompts there are to generate for: never those of an import still being written."""
    sql = f"SELECT id FROM prompts pr WHERE {visible_sql('pr')}" + (" AND split = ?" if split else "") + " ORDER BY id"
    return [r[0] for r in project._conn.execute(sql, (split,) if split else ())]


def create_job(project: Project, plan: GenerationPlan, name: str | None = None) -> int:
    """A queued run that carries out the plan (the worker runs it like a training run), with its arena when
    the plan is one. Returns the run id."""
    plan.validate()
    with project.transaction():
        run_id = project.create_run(plan.kind, plan.sources[0].model, plan.to_dict(), name=name, snapshot=[])
        project.update_run(run_id, total_steps=len(plan.prompt_ids))
        if plan.kind == ARENA:
            with project._write() as c:
                c.execute("INSERT INTO arenas (name, job_id, sources, created_at) VALUES (?, ?, ?, ?)",
                          (project.run(run_id)["name"], run_id, json.dumps([s.name for s in plan.sources]),
                           now_iso()))
    return run_id


def job_arena(project: Project, job_id: int) -> int | None:
    """The arena a job fills, None for a candidates job."""
    return project._scalar("SELECT id FROM arenas WHERE job_id = ?", (job_id,))


def pair_source(job_id: int, arena_id: int | None) -> str:
    """The pairs' `source`: says which job or arena they belong to, never which model wrote what."""
    return f"arena {arena_id}" if arena_id is not None else f"candidates {job_id}"


# ---------------------------------------------------------------------------------------------- writing


def done_prompts(project: Project, job_id: int) -> set[int]:
    """Prompts the job has finished (a batch is written in one transaction, so a prompt is all or nothing)."""
    return {r[0] for r in project._conn.execute("SELECT DISTINCT prompt_id FROM generations WHERE job_id = ?",
                                                (job_id,))}


def write_batch(project: Project, job_id: int, plan: GenerationPlan, texts: Sequence[GeneratedText],
                pairs: Sequence[tuple[int, int]]) -> dict[str, int]:
    """Store a batch in one transaction: the responses, their generations (provenance) and the pairs, each
    pair (i, j) made of texts[i] as A and texts[j] as B. Two identical texts make no pair (there is
    nothing to choose between them); they are counted as `identical`. Returns the counts written."""
    arena_id = job_arena(project, job_id)
    source_name = pair_source(job_id, arena_id)
    ts = now_iso()
    counts = {"responses": 0, "pairs": 0, "identical": 0}
    with project._write() as c:
        generation_ids: list[int] = []
        response_ids: list[int] = []
        for t in texts:
            src = plan.sources[t.source]
            h = content_hash(t.text)
            cur = c.execute("INSERT OR IGNORE INTO responses (prompt_id, text, model, hash, created_at) "
                            "VALUES (?, ?, NULL, ?, ?)", (t.prompt_id, t.text, h, ts))
            counts["responses"] += cur.rowcount
            # the same text may have come in with an import still being written: it is this job's now, and
            # stays when that import fails (as Project.add_response does)
            c.execute(f"UPDATE responses AS x SET import_id = NULL WHERE prompt_id = ? AND hash = ? "
                      f"AND {unpublished_sql('x')}", (t.prompt_id, h))
            rid = c.execute("SELECT id FROM responses WHERE prompt_id = ? AND hash = ?", (t.prompt_id, h)).fetchone()[0]
            cur = c.execute(
                "INSERT INTO generations (job_id, prompt_id, response_id, source, model, adapter_run_id, adapter_step, "
                "temperature, top_k, top_p, max_new_tokens, seed, sample_index, completion_tokens, finished, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, t.prompt_id, rid, src.name, src.model, _existing_run(c, src.adapter_run), src.adapter_step,
                 plan.temperature, plan.top_k, plan.top_p, plan.max_new_tokens, t.seed, t.sample,
                 t.completion_tokens, int(t.finished), ts))
            generation_ids.append(int(cur.lastrowid))
            response_ids.append(int(rid))
        for i, j in pairs:
            if texts[i].prompt_id != texts[j].prompt_id:
                raise ValueError("write_batch: a pair of texts for two different prompts")
            a, b = response_ids[i], response_ids[j]
            if a == b:
                counts["identical"] += 1
                continue
            cur = c.execute("INSERT OR IGNORE INTO pairs (prompt_id, response_a_id, response_b_id, source, meta, "
                            "created_at) VALUES (?, ?, ?, ?, NULL, ?)", (texts[i].prompt_id, a, b, source_name, ts))
            if cur.rowcount:
                pair_id, ga, gb = int(cur.lastrowid), generation_ids[i], generation_ids[j]
                counts["pairs"] += 1
            else:
                # these two responses are a pair already (an earlier job sampled the same texts): this job's
                # generations are linked to it, oriented as the existing pair is
                pair_id, pair_a = c.execute(
                    "SELECT id, response_a_id FROM pairs WHERE prompt_id = ? AND min(response_a_id, response_b_id) "
                    "= ? AND max(response_a_id, response_b_id) = ?", (texts[i].prompt_id, min(a, b), max(a, b))
                ).fetchone()
                ga, gb = (generation_ids[i], generation_ids[j]) if pair_a == a else (generation_ids[j],
                                                                                    generation_ids[i])
                c.execute(f"UPDATE pairs AS x SET import_id = NULL WHERE id = ? AND {unpublished_sql('x')}",
                          (pair_id,))
            c.execute("INSERT OR IGNORE INTO generated_pairs (pair_id, job_id, arena_id, generation_a_id, "
                      "generation_b_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                      (pair_id, job_id, arena_id, ga, gb, ts))
    return counts


def _existing_run(c, run_id: int | None) -> int | None:
    """The adapter's run id while that run exists (deleted since: the source name still says which it was)."""
    if run_id is None:
        return None
    return run_id if c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() else None


def job_counts(project: Project, job_id: int) -> dict[str, int]:
    """Generations, pairs, and identical texts (two sources or samples writing the same) of a job."""
    generations = project._scalar("SELECT count(*) FROM generations WHERE job_id = ?", (job_id,))
    pairs = project._scalar("SELECT count(*) FROM generated_pairs WHERE job_id = ?", (job_id,))
    cut = project._scalar("SELECT count(*) FROM generations WHERE job_id = ? AND finished = 0", (job_id,))
    return {"generations": int(generations), "pairs": int(pairs), "hit_max_new_tokens": int(cut)}


# ---------------------------------------------------------------------------------------------- reading provenance


def _generation(row: dict) -> dict[str, Any]:
    return {"source": row["source"], "model": row["model"], "adapter_run": row["adapter_run_id"],
            "adapter_step": row["adapter_step"], "temperature": row["temperature"], "top_k": row["top_k"],
            "top_p": row["top_p"], "max_new_tokens": row["max_new_tokens"], "seed": row["seed"],
            "sample": row["sample_index"], "completion_tokens": row["completion_tokens"],
            "finished": bool(row["finished"]), "job": row["job_id"]}


def pair_generations(project: Project, pair_id: int) -> list[dict[str, Any]]:
    """Every generation behind a pair, per side: [{"arena", "job", "a": {...}, "b": {...}}] (a pair sampled by
    two jobs has two entries). Not for the labeling view: it names the sources of arena pairs too."""
    rows = project._query(
        "SELECT gp.arena_id, gp.job_id, ga.*, gb.id AS b_id FROM generated_pairs gp "
        "JOIN generations ga ON ga.id = gp.generation_a_id JOIN generations gb ON gb.id = gp.generation_b_id "
        "WHERE gp.pair_id = ? ORDER BY gp.rowid", (pair_id,))
    out = []
    for r in rows:
        b = project._query("SELECT * FROM generations WHERE id = ?", (r["b_id"],))[0]
        out.append({"arena": r["arena_id"], "job": r["job_id"], "a": _generation(r), "b": _generation(b)})
    return out


def candidate_provenance(project: Project, pair_id: int) -> dict[str, Any] | None:
    """Who wrote each side of a candidates pair ({"a": ..., "b": ...}), for the labeling view to show after
    the choice; None for a pair that is in an arena (blind for good) or was not generated."""
    entries = pair_generations(project, pair_id)
    if not entries or any(e["arena"] is not None for e in entries):
        return None
    return {"a": entries[-1]["a"], "b": entries[-1]["b"]}


def describe_generation(g: dict[str, Any]) -> str:
    """One line of provenance in words: source, adapter, sampling, seed."""
    adapter = f" (adapter of run {g['adapter_run']}, step {g['adapter_step']})" if g["adapter_run"] else ""
    cuts = (f", top-p {g['top_p']:g}" if g["top_p"] < 1 else "") + (f", top-k {g['top_k']}" if g["top_k"] else "")
    cut = ", cut at the token limit" if not g["finished"] else ""
    return (f"{g['source']}{adapter} · temperature {g['temperature']:g}{cuts} · seed {g['seed']}, "
            f"sample {g['sample'] + 1}{cut}")
