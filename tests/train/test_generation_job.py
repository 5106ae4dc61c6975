"""Generation jobs on the tiny model: candidates and arena pairs with the right provenance and pairing, a
stop and a resume, and `studio generate` / `studio arena` on the command line."""

from __future__ import annotations

import json

import pytest

from studio.cli import main as studio
from studio.core.generations import ARENA, GENERATE, GenerationPlan, batch_seed
from studio.store import Project
from studio.store import arena as arena_store
from studio.store import generations as G
from studio.train import generation_job
from studio.train.runtime import RunContext
from studio.train.worker import run_worker
from tests.train.adapters import adapter_run


@pytest.fixture
def project(tmp_path):
    p = Project.create(tmp_path / "proj")
    for i in range(5):
        p.add_prompt(f"Question {i}: tell me about the cat.", split="train")
    for i in range(3):
        p.add_prompt(messages=[{"role": "user", "content": f"Eval {i}: write about the dog."}], split="eval")
    yield p
    p.close()


def job_pairs(project, job: int) -> list[int]:
    return [p for p in project.pair_ids() if G.pair_generations(project, p)
            and any(e["job"] == job for e in G.pair_generations(project, p))]


def make_job(project, kind, specs, split, samples, model=None, **kw) -> tuple[int, GenerationPlan]:
    sources = G.resolve_sources(project, specs, model)
    plan = GenerationPlan(kind, sources, G.choose_prompts(project, split), samples=samples, max_new_tokens=8, **kw)
    return G.create_job(project, plan), plan


def test_candidates_of_one_source_pair_its_samples(project, tiny_model):
    run = adapter_run(project, tiny_model, seed=1)
    job, plan = make_job(project, GENERATE, [str(run)], "train", samples=2, temperature=0.8)
    assert run_worker(project.folder, job) == "done"
    info = project.run(job)
    assert info["status"] == "done" and info["step"] == info["total_steps"] == 5
    pairs = job_pairs(project, job)
    assert len(pairs) == 5 and {project.pair(p).prompt.id for p in pairs} == set(plan.prompt_ids)
    for pair_id in pairs:
        pair = project.pair(pair_id)
        assert pair.source == f"candidates {job}" and pair.a.model is None and pair.b.model is None
        prov = G.candidate_provenance(project, pair_id)
        for side in ("a", "b"):
            g = prov[side]
            assert (g["source"], g["adapter_run"], g["adapter_step"], g["model"]) == (f"dpo-{run}", run, 10,
                                                                                      str(tiny_model))
            assert (g["temperature"], g["max_new_tokens"], g["seed"], g["job"]) == (0.8, 8, batch_seed(0, 0, 0), job)
        assert {prov["a"]["sample"], prov["b"]["sample"]} == {0, 1}  # two samples of one prompt paired
    assert G.job_counts(project, job)["generations"] == 10


def test_candidates_against_another_source_pair_one_of_each(project, tiny_model):
    run = adapter_run(project, tiny_model, seed=1)
    job, _plan = make_job(project, GENERATE, [str(run), "base"], "eval", samples=2)
    assert run_worker(project.folder, job) == "done"
    pairs = job_pairs(project, job)
    assert len(pairs) == 6  # 3 prompts x 2 samples each
    for pair_id in pairs:
        prov = G.candidate_provenance(project, pair_id)
        assert {prov["a"]["source"], prov["b"]["source"]} == {f"dpo-{run}", "base"}
        assert prov["a"]["sample"] == prov["b"]["sample"]


def test_arena_texts_are_what_each_source_samples_and_sides_are_mixed(project, tiny_model):
    """Each stored text is exactly what its source samples at its recorded seed: the adapter was on for the
    run and off for the base model, and the pair's sides name the right source."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from studio.train.generation import SamplingSettings, generate
    from studio.train.model import load_tokenizer

    runs = [adapter_run(project, tiny_model, seed=s) for s in (1, 2)]
    job, plan = make_job(project, ARENA, ["base", *map(str, runs)], "train", samples=1, seed=5)
    assert run_worker(project.folder, job) == "done"
    arena_id = G.job_arena(project, job)
    pairs = job_pairs(project, job)
    assert len(pairs) == 15 - sum(arena_store.identical_outputs(project, arena_id).values())
    tokenizer = load_tokenizer(tiny_model)
    ids = generation_job.prompt_ids_for(tokenizer, project, plan.prompt_ids, plan.max_prompt_tokens)
    settings = SamplingSettings(max_new_tokens=8, temperature=1.0)
    expected = {}
    for s, src in enumerate(plan.sources):
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        if src.adapter_run is not None:
            model = PeftModel.from_pretrained(model, str(project.folder / "runs" / str(src.adapter_run) / "adapter"))
        gens = generate(model, tokenizer, ids, settings, batch_seed(5, 0, s), "cpu")
        for row, completion in enumerate(gens.completion_ids):
            expected[(plan.prompt_ids[row], src.name)] = tokenizer.decode(completion, skip_special_tokens=True).strip()
    assert len(set(expected.values())) > 10  # the adapters change what is sampled
    a_first = 0
    for pair_id in pairs:
        pair = project.pair(pair_id)
        assert pair.source == f"arena {arena_id}" and pair.meta == {}
        assert G.candidate_provenance(project, pair_id) is None
        (entry,) = G.pair_generations(project, pair_id)
        assert entry["a"]["source"] != entry["b"]["source"]
        assert pair.a.text == expected[(pair.prompt.id, entry["a"]["source"])]
        assert pair.b.text == expected[(pair.prompt.id, entry["b"]["source"])]
        order = [s.name for s in plan.sources]
        a_first += order.index(entry["a"]["source"]) < order.index(entry["b"]["source"])
    assert 0 < a_first < len(pairs)  # the earlier source is A in some pairs and B in others


def test_a_stopped_job_resumes_with_the_prompts_not_done(project, tiny_model):
    job, plan = make_job(project, GENERATE, ["base"], "train", samples=2, model=str(tiny_model))
    plan.prompts_per_batch = 2
    project.update_run(job, config=plan.to_dict())
    calls = []

    def stop_after_first_batch() -> bool:
        calls.append(1)
        return len(calls) > 1

    ctx = RunContext(project, job, plan, tiny_model, should_stop=stop_after_first_batch)
    assert generation_job.train(ctx) == "interrupted"
    assert project.run(job)["step"] == 2 and len(G.done_prompts(project, job)) == 2
    first = {p: project.pair(p).a.text for p in job_pairs(project, job)}
    assert generation_job.train(RunContext(project, job, plan, tiny_model, resume=True)) == "done"
    assert G.done_prompts(project, job) == set(plan.prompt_ids) and project.run(job)["step"] == 5
    assert G.job_counts(project, job)["generations"] == 10  # no prompt sampled twice
    assert {p: project.pair(p).a.text for p in first} == first


def test_cli_generate_and_arena_results(project, tiny_model, capsys):
    folder = str(project.folder)
    run = adapter_run(project, tiny_model, seed=1)
    assert studio(["generate", folder, "--adapter", str(run), "--vs", "base", "--prompts", "2", "--n", "1",
                   "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    assert "prompts 2/2" in out and "generate job" in out and "2 pairs to label (source 'candidates" in out
    assert studio(["arena", folder, "--sources", "base", str(run), "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    assert "prompts 3/3" in out and "studio arena" in out and "--results" in out
    arena_id = arena_store.arena(project)["id"]
    for pair_id in project.pair_ids():
        if project.pair(pair_id).source == f"arena {arena_id}":
            (e,) = G.pair_generations(project, pair_id)
            project.record_label(pair_id, "ann", "a" if e["a"]["source"] == "base" else "b", shown_left="a")
    assert studio(["arena", folder, "--results", "--json", "--rounds", "20"]) == 0
    r = json.loads(capsys.readouterr().out)
    (m,) = r["matchups"]
    assert (m["source"], m["against"]) == (f"dpo-{run}", "base")
    assert m["losses"] == r["judgements"] == r["labeled_pairs"] > 0 and m["wins"] == 0
    assert studio(["arena", folder, "--results"]) == 0
    assert f"dpo-{run} vs base" in capsys.readouterr().out
    assert studio(["arena", folder, "--sources", "base"]) == 2
    assert "an arena needs at least two sources" in capsys.readouterr().err
    assert studio(["generate", folder, "--adapter", "99"]) == 2
    assert "run 99: no such run" in capsys.readouterr().err
