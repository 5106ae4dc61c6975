"""Jobs that measure with trained models, on the tiny SFT model and trait pairs (chosen 'sure ...', rejected
'no ...'): a rank job scores pairs with a reward run and a DPO run and ranks them for the informative queue
(stop and resume included); a frontier job puts the base model at KL 0 and a policy pushed toward the trait at
more reward; the CLI prints both as JSON; a finished reward run starts a rank job by itself."""

import json
import math

import pytest

from studio.cli import main as studio
from studio.core.configs import DPOConfig, RewardConfig, apply_overrides, to_dict
from studio.core.informative import POLICY, REWARD, RankPlan
from studio.store import Project
from studio.store import frontier as fr
from studio.store import informative as inf
from studio.train import reward_model
from studio.train.worker import run_worker

from .conftest import SUBJECTS, add_trait_pairs


@pytest.fixture(autouse=True)
def sure_rule(monkeypatch):
    """A rule reward: 1 for a response that starts with 'sure', else 0."""
    monkeypatch.setitem(reward_model.RULE_REWARDS, "sure", lambda prompt, response: float(
        response.strip().startswith("sure")))


def add_unlabeled_pairs(project: Project, n: int) -> list[int]:
    """Pairs for the queue: 'sure ...' against 'no ...' about new subjects, unlabeled."""
    ids = []
    for i in range(n):
        subject = SUBJECTS[i % len(SUBJECTS)]
        prompt = project.add_prompt(f"New question {i}: what about the {subject}?")  # as add_trait_pairs(
        a = project.add_response(prompt, f" sure the {subject} is nice.")            # spaced_answers=True)
        b = project.add_response(prompt, f" no the {subject} is nice.")
        ids.append(project.add_pair(prompt, a, b) if i % 2 else project.add_pair(prompt, b, a))
    return ids


@pytest.fixture(scope="module")
def measured_project(trait_sft_model, tmp_path_factory):
    """Trait pairs (24 labeled train, 16 eval), 12 unlabeled pairs, a reward run and a DPO run on the SFT model."""
    project = Project.create(tmp_path_factory.mktemp("measure") / "proj")
    add_trait_pairs(project, n_train=24, n_eval=16, spaced_answers=True)
    unlabeled = add_unlabeled_pairs(project, 12)
    reward = project.create_run("reward", str(trait_sft_model), to_dict(apply_overrides(RewardConfig(), {
        "learning_rate": 3e-3, "max_steps": 15, "batch_size": 8, "warmup_ratio": 0.0, "lora.r": 8,
        "eval_interval": 0, "checkpoint_interval": 0})))
    dpo = project.create_run("dpo", str(trait_sft_model), to_dict(apply_overrides(DPOConfig(), {
        "learning_rate": 3e-3, "max_steps": 20, "batch_size": 8, "warmup_ratio": 0.0, "lora.r": 8,
        "lora.dropout": 0.0, "eval_interval": 0, "eval_samples": 0, "checkpoint_interval": 0})))
    for run_id in (reward, dpo):
        assert run_worker(project.folder, run_id) == "done", project.run(run_id)["error"]
    yield project, reward, dpo, unlabeled
    project.close()


def rank_job(project: Project, scorers, **kw) -> int:
    plan = RankPlan(project.run(scorers[0].run_id)["model"], scorers, **kw)
    return inf.create_rank_job(project, plan)


def test_a_rank_job_scores_the_pairs_as_studio_score_does_and_ranks_them(measured_project):
    project, reward, dpo, unlabeled = measured_project
    scorers = inf.check_scorer_runs(project, [reward], dpo)
    job = rank_job(project, scorers, batch_size=8)
    assert run_worker(project.folder, job) == "done", project.run(job)["error"]
    # one label each is short of the overlap target (2): every pair is scored
    assert project.run(job)["step"] == project.run(job)["total_steps"] == project.pair_count()
    # every unlabeled pair has both models' margins; the reward margin is the reward model's own A - B score
    for scorer in scorers:
        assert inf.scored_pairs(project, scorer) >= set(unlabeled)
    from types import SimpleNamespace

    from studio.store.rlhf import reward_source
    from studio.train.score import score_pairs

    texts = inf.pair_texts(project, unlabeled[:4])
    rows = [SimpleNamespace(prompt_text=t["prompt"], messages=None, a=t["a"], b=t["b"]) for t in texts]
    a, b = score_pairs(reward_source(project, reward), project.run(reward), rows)
    stored = {m["run_id"]: m["value"] for t in texts for m in inf.pair_margins(project, t["pair_id"])
              if m["kind"] == REWARD and t["pair_id"] == texts[0]["pair_id"]}
    assert stored[reward] == pytest.approx(a[0] - b[0], abs=1e-4)
    # the reward model learned the trait: it prefers the 'sure' side of the new pairs
    sure_side = {t["pair_id"]: 1 if t["a"].lstrip().startswith("sure") else -1
                 for t in inf.pair_texts(project, unlabeled)}
    margins = {p: m["value"] for p in unlabeled for m in inf.pair_margins(project, p) if m["kind"] == REWARD}
    assert sum(sure_side[p] * margins[p] > 0 for p in unlabeled) >= 10
    policy = {p: m["value"] for p in unlabeled for m in inf.pair_margins(project, p) if m["kind"] == POLICY}
    assert all(math.isfinite(v) and v != 0 for v in policy.values())
    # the ranking follows the score, and the queue walks it
    report = inf.ranking_report(project, top=100)
    assert report["ranking"]["job_id"] == job and report["ranking"]["terms"] == ["policy", "uncertainty"]
    scores = [r["score"] for r in report["top"]]
    assert scores == sorted(scores, reverse=True)
    assert project.next_pair("someone", "informative") == report["top"][0]["pair_id"]


def test_a_stopped_rank_job_ranks_with_what_it_scored_and_resumes(measured_project):
    project, reward, _, unlabeled = measured_project
    scorer = inf.check_scorer_runs(project, [reward], None)[0]
    fresh = RankPlan(project.run(reward)["model"], [scorer], batch_size=4)
    with project.transaction():  # start from no scores of this model, as a new reward run would
        project._conn.execute("DELETE FROM pair_scores WHERE run_id = ?", (reward,))
    job = inf.create_rank_job(project, fresh)
    calls = []

    def stop_after_first_batch():
        calls.append(1)
        return len(calls) > 1

    from studio.core.jobs import job_plan
    from studio.core.models import resolve_model
    from studio.train import rank_job
    from studio.train.runtime import RunContext

    run = project.run(job)
    ctx = RunContext(project, job, job_plan(run["method"], run["config"]), resolve_model(run["model"]),
                     should_stop=stop_after_first_batch)
    assert rank_job.train(ctx) == "interrupted"
    assert len(inf.scored_pairs(project, scorer)) == 4
    assert inf.current_ranking(project)["job_id"] == job  # ranked anyway, the rest at the mean
    project.update_run(job, status="interrupted")
    assert run_worker(project.folder, job, resume=True) == "done"
    assert inf.scored_pairs(project, scorer) >= set(unlabeled)


def test_the_frontier_puts_the_base_at_kl_zero_and_the_trait_policy_higher(measured_project):
    project, reward, dpo, _ = measured_project
    from studio.store.generations import choose_prompts

    sources = fr.policy_sources(project, [dpo])
    prompts = choose_prompts(project, "eval", 12, seed=0)
    points = {}
    for value, name in (("rule:sure", "rule"), (str(reward), f"reward run {reward}")):
        plan = fr.FrontierPlan(value, name, sources, prompts, samples=4, max_new_tokens=10, seed=1)
        job = fr.create_frontier_job(project, plan)
        assert run_worker(project.folder, job) == "done", project.run(job)["error"]
        points[name] = {p["policy"]: p for p in fr.points(project, plan.measure(), [dpo])}
    base, policy = points["rule"]["base"], points["rule"][f"run {dpo}"]
    assert base["kl"] == 0.0 and base["kl_k1"] == 0.0 and base["samples"] == 12 * 4
    assert policy["kl"] > 0.0 and policy["step"] == 20
    # the rule counts 'sure' answers: the DPO policy says it more often than the SFT model it started from
    assert policy["reward"] > base["reward"] + 0.2
    learned = points[f"reward run {reward}"]
    assert learned[f"run {dpo}"]["reward"] > learned["base"]["reward"]
    assert learned["base"]["kl"] == 0.0
    # the same measure again measures nothing: the points are reused
    plan = fr.FrontierPlan("rule:sure", "rule", sources, prompts, samples=4, max_new_tokens=10, seed=1)
    job = fr.create_frontier_job(project, plan)
    assert run_worker(project.folder, job) == "done"
    assert project.run(job)["step"] == 2 and len(fr.points(project, plan.measure())) == 2


def test_the_cli_prints_frontier_points_and_the_ranking_as_json(measured_project, capsys):
    project, reward, dpo, _ = measured_project
    folder = str(project.folder)
    assert studio(["frontier", folder, "--reward", "rule:sure", "--runs", str(dpo), "--prompts", "6",
                   "--samples", "2", "--max-new-tokens", "4", "--seed", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reward_model"] == "rule rule:sure" and out["plan"]["samples"] == 2
    by_policy = {p["policy"]: p for p in out["points"]}
    assert set(by_policy) == {"base", f"run {dpo}"}
    assert by_policy["base"]["kl"] == 0.0 and by_policy["base"]["samples"] == 12
    assert by_policy["base"]["on_frontier"]  # nothing has its reward at less KL
    assert by_policy[f"run {dpo}"]["run_id"] == dpo and by_policy[f"run {dpo}"]["kl"] > 0

    assert studio(["rank", folder, "--reward", str(reward), "--top", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ranking"]["scorers"] == [{"run_id": reward, "step": 15, "kind": "reward"}]
    assert len(report["top"]) == 3 and report["top"][0]["rank"] == 1
    assert set(report["top"][0]) >= {"pair_id", "score", "uncertainty", "checkpoints", "policy", "labels",
                                     "n_labels", "prompt"}


def test_cli_errors_name_the_run(measured_project, capsys):
    project, reward, dpo, _ = measured_project
    folder = str(project.folder)
    assert studio(["frontier", folder, "--reward", str(reward), "--runs", str(reward)]) == 2
    assert "is a reward run; a frontier point is a policy" in capsys.readouterr().err
    assert studio(["rank", folder, "--reward", str(dpo)]) == 2
    assert f"--reward {dpo}: is a dpo run" in capsys.readouterr().err


def test_a_finished_reward_run_starts_a_rank_job(measured_project, monkeypatch):
    project, reward, dpo, _ = measured_project
    from studio.train import rank_job, worker

    started = []
    monkeypatch.setenv(rank_job.AUTO_RANK_ENV, "1")
    monkeypatch.setattr(worker, "spawn_worker", lambda folder, run_id, resume=False: started.append(run_id) or 4242)
    job = rank_job.rank_after_run(project.folder, reward)
    assert started == [job]
    run = project.run(job)
    assert run["method"] == "rank" and run["status"] == "queued" and run["pid"] == 4242
    plan = RankPlan.from_dict(run["config"])
    assert [(s.run_id, s.kind) for s in plan.scorers] == [(reward, REWARD), (dpo, POLICY)]
    project.delete_run(job)
    project.set_setting("auto_rank", "off")
    try:
        assert rank_job.rank_after_run(project.folder, reward) is None and len(started) == 1
    finally:
        project.set_setting("auto_rank", "on")
