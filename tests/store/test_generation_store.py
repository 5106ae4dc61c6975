"""Generation jobs in the store: sources, job creation, provenance and pairs, blindness by data, arena results."""

from __future__ import annotations

import pytest

from studio.core import paths
from studio.core.generations import ARENA, GENERATE, GenerationPlan, Source
from studio.store import ProjectError
from studio.store import arena as arena_store
from studio.store import generations as G


def trained_run(project, model: str = "/models/tiny", adapter: bool = True) -> int:
    """A finished training run, with an adapter folder when asked (only what resolve_sources looks at)."""
    run_id = project.create_run("dpo", model, {"beta": 0.1}, snapshot=[])
    project.update_run(run_id, status="done", step=12)
    if adapter:
        folder = paths.adapter_dir(project.folder, run_id)
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
    return run_id


def test_sources_from_names_runs_and_models(project):
    r1, r2 = trained_run(project), trained_run(project)
    base, one, two = G.resolve_sources(project, ["base", str(r1), r2])
    assert base == Source("base", "/models/tiny")
    assert one == Source(f"dpo-{r1}", "/models/tiny", r1, 12)
    assert two.adapter_run == r2
    assert G.resolve_sources(project, ["base", "/other/model-b"], model="/models/a")[1] == Source("model-b",
                                                                                                  "/other/model-b")


def test_sources_that_cannot_be_sampled_are_refused(project):
    no_adapter = trained_run(project, adapter=False)
    with pytest.raises(ProjectError, match=f"run {no_adapter} .*has no saved adapter yet"):
        G.resolve_sources(project, ["base", str(no_adapter)])
    with pytest.raises(ProjectError, match="base: which model is the base"):
        G.resolve_sources(project, ["base"])
    trained_run(project, "/models/a")
    other = trained_run(project, "/models/b")
    with pytest.raises(ProjectError, match="different base models"):
        G.resolve_sources(project, ["base", str(other), str(other - 1)])
    with pytest.raises(ProjectError, match="run 99: no such run"):
        G.resolve_sources(project, ["99"])


def test_prompts_are_chosen_from_the_split_at_random_but_seeded(pairs_project):
    evals = G.choose_prompts(pairs_project, "eval")
    assert len(evals) == 4 and all(pairs_project.prompt(p).split == "eval" for p in evals)
    three = G.choose_prompts(pairs_project, "train", limit=3, seed=1)
    assert len(three) == 3 and three == sorted(three) and three == G.choose_prompts(pairs_project, "train", 3, 1)
    with pytest.raises(ProjectError, match="prompts: this project has no prompts"):
        G.choose_prompts(type(pairs_project).memory(), None)


def texts_for(prompts: list[int], sources: int, samples: int, same: set[tuple[int, int]] = frozenset()):
    """One made-up text per (prompt, source, sample); sources in `same` (prompt, source) write source 0's text."""
    out = []
    for p in prompts:
        for s in range(sources):
            for k in range(samples):
                who = 0 if (p, s) in same else s
                out.append(G.GeneratedText(p, s, k, f"text of {who}/{k} for {p}", 10 + s, k == 0, 100 + s))
    return out


def test_a_candidates_batch_stores_provenance_and_pairs(pairs_project):
    run = trained_run(pairs_project)
    prompts = G.choose_prompts(pairs_project, "train")[:2]
    sources = G.resolve_sources(pairs_project, [str(run), "base"])
    plan = GenerationPlan(GENERATE, sources, prompts, samples=1, temperature=0.7)
    job = G.create_job(pairs_project, plan)
    assert pairs_project.run(job)["method"] == GENERATE and G.job_arena(pairs_project, job) is None
    texts = texts_for(prompts, 2, 1)
    counts = G.write_batch(pairs_project, job, plan, texts, [(0, 1), (3, 2)])
    assert counts == {"responses": 4, "pairs": 2, "identical": 0}
    assert G.done_prompts(pairs_project, job) == set(prompts)
    new = [p for p in pairs_project.pair_ids() if pairs_project.pair(p).source == f"candidates {job}"]
    assert len(new) == 2
    first, second = (pairs_project.pair(p) for p in new)
    # blind by data: nothing on the pair or its responses names a source
    assert first.meta == {} and first.a.model is None and first.b.model is None
    prov = G.candidate_provenance(pairs_project, first.id)
    assert prov["a"]["source"] == f"dpo-{run}" and prov["a"]["adapter_run"] == run and prov["a"]["adapter_step"] == 12
    assert prov["b"]["source"] == "base" and prov["b"]["adapter_run"] is None
    assert prov["a"]["temperature"] == 0.7 and prov["a"]["seed"] == 100 and prov["b"]["seed"] == 101
    # the second pair was written B-first: its A is the base model's text
    assert G.candidate_provenance(pairs_project, second.id)["a"]["source"] == "base"
    assert second.a.text == texts[3].text
    assert "dpo-" in G.describe_generation(prov["a"]) and "temperature 0.7" in G.describe_generation(prov["a"])
    assert G.candidate_provenance(pairs_project, pairs_project.pair_ids()[0]) is None  # an imported pair


def test_identical_texts_make_no_pair_and_a_repeated_pair_is_linked(pairs_project):
    run = trained_run(pairs_project)
    prompts = G.choose_prompts(pairs_project, "eval")[:2]
    plan = GenerationPlan(ARENA, G.resolve_sources(pairs_project, ["base", str(run)]), prompts, samples=1)
    job = G.create_job(pairs_project, plan)
    texts = texts_for(prompts, 2, 1, same={(prompts[1], 1)})
    assert G.write_batch(pairs_project, job, plan, texts, [(0, 1), (2, 3)]) == {"responses": 3, "pairs": 1,
                                                                                 "identical": 1}
    arena_id = G.job_arena(pairs_project, job)
    assert arena_store.identical_outputs(pairs_project, arena_id) == {("base", f"dpo-{run}"): 1}
    # a second arena that samples the same two texts gets the existing pair, oriented as it is
    job2 = G.create_job(pairs_project, plan)
    assert G.write_batch(pairs_project, job2, plan, texts[:2], [(1, 0)])["pairs"] == 0
    arena2 = G.job_arena(pairs_project, job2)
    (pair_id,) = {p for p in pairs_project.pair_ids() if pairs_project.pair(p).source == f"arena {arena_id}"}
    (entry,) = [e for e in G.pair_generations(pairs_project, pair_id) if e["arena"] == arena2]
    assert entry["a"]["source"] == "base"  # the pair's A is base's text, whichever order job 2 wrote it in


def test_arena_labels_count_for_the_sources_that_wrote_them(pairs_project):
    runs = [trained_run(pairs_project), trained_run(pairs_project)]
    prompts = G.choose_prompts(pairs_project, "eval")
    sources = G.resolve_sources(pairs_project, ["base", *map(str, runs)])
    plan = GenerationPlan(ARENA, sources, prompts, samples=1)
    job = G.create_job(pairs_project, plan)
    texts = texts_for(prompts, 3, 1)
    pairs = []
    for p in range(len(prompts)):  # every two sources, in both orders across prompts
        i, j, k = 3 * p, 3 * p + 1, 3 * p + 2
        pairs += [(i, j), (k, i), (j, k)] if p % 2 else [(j, i), (i, k), (k, j)]
    G.write_batch(pairs_project, job, plan, texts, pairs)
    arena_id = G.job_arena(pairs_project, job)
    rank = {"base": 0, f"dpo-{runs[0]}": 1, f"dpo-{runs[1]}": 2}
    for pair_id in pairs_project.pair_ids():
        if pairs_project.pair(pair_id).source != f"arena {arena_id}":
            continue
        assert G.candidate_provenance(pairs_project, pair_id) is None  # an arena pair is blind for good
        (e,) = G.pair_generations(pairs_project, pair_id)
        better = "a" if rank[e["a"]["source"]] > rank[e["b"]["source"]] else "b"
        pairs_project.record_label(pair_id, "ann", better, shown_left="b")
        pairs_project.record_label(pair_id, "bob", "tie", shown_left="a")
    r = arena_store.arena_results(pairs_project, arena_id, rounds=50)
    assert r["arena"]["sources"] == ["base", f"dpo-{runs[0]}", f"dpo-{runs[1]}"]
    assert r["pairs"] == r["labeled_pairs"] == 12 and r["judgements"] == 24
    for m in r["matchups"]:  # the later source is the better one in every matchup
        assert (m["wins"], m["ties"], m["losses"]) == (4, 4, 0)
    ann = {a["name"]: a for a in r["annotators"]}
    assert all(m["wins"] == 4 and m["losses"] == 0 for m in ann["ann"]["matchups"])
    assert all(m["ties"] == 4 for m in ann["bob"]["matchups"])
    scores = [b["source"] for b in r["bradley_terry"]]
    assert scores == [f"dpo-{runs[1]}", f"dpo-{runs[0]}", "base"]
    assert arena_store.arena(pairs_project)["id"] == arena_id
    with pytest.raises(ProjectError, match="arena 99: no such arena"):
        arena_store.arena(pairs_project, 99)

    # a report comparing one of the runs shows its matchup against the base model only
    from studio.store.comparison import arena_section

    section = arena_section(pairs_project, [runs[0]])
    assert [row[0] for row in section.rows] == [f"dpo-{runs[0]} vs base"]
    assert section.rows[0][1:4] == ("4", "4", "0") and f"Arena {arena_id}" in section.note
    both = arena_section(pairs_project, runs)
    assert len(both.rows) == 3
    other = pairs_project.create_run("dpo", "/models/tiny", {}, snapshot=[])
    assert arena_section(pairs_project, [other]) is None  # no arena pitted it against anything


def test_deleting_a_job_keeps_its_pairs_labels_and_arena(pairs_project):
    run = trained_run(pairs_project)
    prompts = G.choose_prompts(pairs_project, "eval")[:1]
    plan = GenerationPlan(ARENA, G.resolve_sources(pairs_project, ["base", str(run)]), prompts, samples=1)
    job = G.create_job(pairs_project, plan)
    G.write_batch(pairs_project, job, plan, texts_for(prompts, 2, 1), [(0, 1)])
    arena_id = G.job_arena(pairs_project, job)
    pair_id = pairs_project.pair_ids()[-1]
    pairs_project.record_label(pair_id, "ann", "a", shown_left="a")
    pairs_project.delete_run(job)
    pairs_project.delete_run(run)
    r = arena_store.arena_results(pairs_project, arena_id, rounds=10)
    assert r["arena"]["job_status"] is None and r["judgements"] == 1
    assert r["matchups"][0]["losses"] == 1  # base's text was A and won: the run lost
