"""The informative queue in the store: the order on crafted reward-model margins, split votes first without any
model, pairs added since a ranking, filters, and a new ranking taking over from the old one."""

import math

import pytest

from studio.core.informative import REWARD, Scorer
from studio.store import Project
from studio.store import informative as inf
from tests.conftest import add_pairs

LN3 = math.log(3)


def reward_scorer(project: Project) -> Scorer:
    run = project.create_run("reward", "m", {}, snapshot=[])
    project.update_run(run, status="done", step=10)
    return Scorer(run, 10, REWARD)


@pytest.fixture
def ranked(project):
    """Six pairs; a reward model's margins: even odds (p1), sure (p2, p4), 3:1 (p3), none (p5); p6 a split vote
    the model is sure about."""
    ids = add_pairs(project, 6)
    scorer = reward_scorer(project)
    inf.write_scores(project, scorer, [ids[0], ids[1], ids[2], ids[3], ids[5]], [0.0, 4.0, -LN3, 30.0, 30.0])
    project.record_label(ids[5], "ann1", "a", "a")
    project.record_label(ids[5], "ann2", "b", "a")
    inf.rebuild_ranking(project, [scorer])
    return project, ids, scorer


def more_pairs(project: Project, n: int, tag: str, split: str = "train") -> list[int]:
    ids = []
    for i in range(n):
        prompt = project.add_prompt(f"{tag} question {i}?", split=split, source=tag)
        ids.append(project.add_pair(prompt, project.add_response(prompt, f"{tag} {i}"),
                                    project.add_response(prompt, f"{tag} answer {i}"), source=tag))
    return ids


def walk(project: Project, annotator: str, **filters) -> list[int]:
    """The queue as an annotator meets it: next pair, skip it, next..., until it is empty."""
    seen = []
    after = None
    while (pid := project.next_pair(annotator, "informative", after=after, **filters)) is not None:
        seen.append(pid)
        project.record_label(pid, annotator, "skip", "a")
        after = pid
        assert len(seen) <= 20
    return seen


def test_the_order_follows_the_crafted_margins(ranked):
    project, ids, _ = ranked
    # split vote first; then even odds (U 1), 3:1 (U 0.5), the unscored pair at the mean U of the scored ones
    # (1 + 0.07 + 0.5 + 0 + 0) / 5 = 0.31, then 4 (0.036), then 30 (~0)
    assert walk(project, "me") == [ids[5], ids[0], ids[2], ids[4], ids[1], ids[3]]
    parts = inf.informative_parts(project, ids)
    assert parts[ids[0]]["score"] == pytest.approx(1.0) and parts[ids[0]]["rank"] == 2
    assert parts[ids[2]]["uncertainty"] == pytest.approx(0.5)
    assert parts[ids[4]]["uncertainty"] is None  # imputed, and said so
    assert parts[ids[5]]["labels"] == 1.0 and parts[ids[5]]["n_labels"] == 2
    assert parts[ids[5]]["score"] == pytest.approx(3.0, abs=1e-6)
    assert inf.informative_order(project, project_filter()) == [ids[5], ids[0], ids[2], ids[4], ids[1], ids[3]]


def project_filter(**kw):
    from studio.store import PairFilter

    return PairFilter(**kw)


def test_an_annotator_of_the_split_vote_does_not_get_it_again(ranked):
    project, ids, _ = ranked
    assert project.next_pair("ann1", "informative") == ids[0]
    assert project.queue_count("ann1", "informative") == 5


def test_next_after_a_pair_goes_on_down_the_ranking_and_wraps(ranked):
    project, ids, _ = ranked
    assert project.next_pair("me", "informative", after=ids[2]) == ids[4]
    assert project.next_pair("me", "informative", after=ids[3]) == ids[5]  # the last one wraps to the top


def test_pairs_added_since_the_ranking_follow_it_in_id_order(ranked):
    project, ids, _ = ranked
    new = more_pairs(project, 2, "later")
    order = walk(project, "me")
    assert order == [ids[5], ids[0], ids[2], ids[4], ids[1], ids[3], *new]
    assert inf.informative_order(project, project_filter())[-2:] == new


def test_filters_apply_to_the_informative_queue(ranked):
    project, ids, _ = ranked
    eval_pairs = more_pairs(project, 2, "other", split="eval")
    assert walk(project, "me", split="eval") == eval_pairs
    assert walk(project, "you", source="test") == [ids[5], ids[0], ids[2], ids[4], ids[1], ids[3]]


def test_without_any_model_split_votes_come_first_then_id_order(project):
    ids = add_pairs(project, 4)
    project.record_label(ids[2], "ann1", "a", "a")
    project.record_label(ids[2], "ann2", "tie", "a")
    project.record_label(ids[1], "ann1", "b", "a")
    inf.rebuild_ranking(project, [])
    # the labeled pair (one verdict) keeps its place: no model term to discount
    assert walk(project, "me") == [ids[2], ids[0], ids[1], ids[3]]


def test_without_a_ranking_the_queue_is_in_id_order(project):
    ids = add_pairs(project, 3)
    assert inf.current_ranking(project) is None
    assert walk(project, "me") == ids
    assert "no ranking yet" in inf.describe_ranking(None)


def test_a_new_ranking_replaces_the_old_one_chunk_by_chunk(ranked, monkeypatch):
    project, ids, scorer = ranked
    monkeypatch.setattr(inf, "CHUNK", 2)  # several transactions for six pairs
    old = inf.current_ranking(project)["id"]
    inf.write_scores(project, scorer, [ids[3]], [0.0])  # the model changed its mind about p4
    chunks = []
    new = inf.rebuild_ranking(project, [scorer], on_chunk=lambda done, total: chunks.append((done, total)))
    assert chunks == [(2, 6), (4, 6), (6, 6)]
    assert new != old and inf.current_ranking(project)["id"] == new
    assert inf.informative_parts(project, [ids[3]])[ids[3]]["score"] == pytest.approx(1.0)
    assert project.next_pair("me", "informative", after=ids[5]) in (ids[0], ids[3])  # both at even odds
    # nothing of the old ranking is left
    assert project._scalar("SELECT count(*) FROM pair_ranks WHERE ranking_id = ?", (old,)) == 0
    assert project._scalar("SELECT count(*) FROM rankings") == 1


def test_a_ranking_records_what_it_was_made_from(ranked):
    project, _, scorer = ranked
    r = inf.current_ranking(project)
    assert r["scorers"] == [scorer] and r["pairs"] == 6
    assert f"reward run {scorer.run_id} (step 10)" in inf.describe_ranking(r)


def test_scorers_are_checked(project):
    from studio.store import ProjectError

    dpo = project.create_run("dpo", "m", {}, snapshot=[])
    with pytest.raises(ProjectError, match="is a dpo run"):
        inf.check_scorer_runs(project, [dpo], None)
    with pytest.raises(ProjectError, match="no such run"):
        inf.check_scorer_runs(project, [99], None)
    reward = project.create_run("reward", "m", {}, snapshot=[])
    with pytest.raises(ProjectError, match="is queued"):
        inf.check_scorer_runs(project, [reward], None)
    project.update_run(reward, status="done")
    with pytest.raises(ProjectError, match="no saved adapter"):
        inf.check_scorer_runs(project, [reward], None)


def test_pairs_to_score_draw_the_same_share_again(project):
    from studio.core.informative import RankPlan

    ids = add_pairs(project, 10)
    project.overlap_target = 1
    project.record_label(ids[0], "ann", "a", "a")  # at the overlap target: no queue serves it
    plan = RankPlan("m", [], max_pairs=4, seed=3)
    drawn = inf.pairs_to_score(project, plan)
    assert len(drawn) == 4 and ids[0] not in drawn and drawn == sorted(drawn)
    assert inf.pairs_to_score(project, plan) == drawn
    assert inf.pairs_to_score(project, RankPlan("m", [], max_pairs=0)) == ids[1:]
    texts = inf.pair_texts(project, [ids[2], ids[1]])
    assert [t["pair_id"] for t in texts] == [ids[2], ids[1]] and texts[0]["a"] == "4."


def test_a_ranking_another_running_job_writes_is_left_alone(ranked):
    project, ids, scorer = ranked
    running = project.create_run("rank", "m", {}, snapshot=[])
    project.update_run(running, status="running", pid=1)
    crashed = project.create_run("rank", "m", {}, snapshot=[])
    project.update_run(crashed, status="failed")
    with project.transaction():
        for job in (running, crashed):  # each job had begun a ranking (a few ranks) before the next one started
            rid = project._conn.execute("INSERT INTO rankings (job_id, scorers, pairs, created_at) VALUES (?, '[]', 6, "
                                        "'2026-01-01')", (job,)).lastrowid
            project._conn.execute("INSERT INTO pair_ranks (ranking_id, rank, pair_id, score, labels, n_labels) "
                                  "VALUES (?, 1, ?, 0, 0, 0)", (rid, ids[0]))
    new = inf.rebuild_ranking(project, [scorer])
    left = {r[0]: r[1] for r in project._conn.execute("SELECT job_id, complete FROM rankings")}
    assert left == {running: 0, None: 1}  # the running job's stays, the crashed job's and the old one went
    assert inf.current_ranking(project)["id"] == new
