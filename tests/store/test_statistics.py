"""`studio stats` figures gathered from a project, against values worked out by hand."""

from __future__ import annotations

import json

import pytest

from studio.core import stats as core
from studio.store.demo import create_demo
from studio.store.statistics import bias_warnings, project_stats
from tests.conftest import add_pairs


@pytest.fixture
def labeled(project):
    """6 train pairs (A short, B long) and 2 eval pairs, labeled by hand:

    pair 1: alice a (left a), bob a (left b)      -> a, agree
    pair 2: alice b (left b), bob b (left b)      -> b, agree
    pair 3: alice a (left a), bob b (left a)      -> no majority
    pair 4: alice tie, bob tie                    -> tie, agree
    pair 5: alice b (left a, 4 s), then undone    -> unlabeled again
    pair 6: alice skip                            -> only skipped
    eval 7: alice b (left b, seconds 10)          -> b
    """
    add_pairs(project, 6)
    pid = project.add_prompt("Eval question?", split="eval")
    for i in range(2):
        a = project.add_response(pid, f"short {i}")
        b = project.add_response(pid, f"a much longer answer {i}")
        project.add_pair(pid, a, b)
    L = project.record_label
    L(1, "alice", "a", "a", seconds=2)
    L(1, "bob", "a", "b", seconds=6)
    L(2, "alice", "b", "b", seconds=4)
    L(2, "bob", "b", "b", seconds=8)
    L(3, "alice", "a", "a", seconds=6)
    L(3, "bob", "b", "a", seconds=10)
    L(4, "alice", "tie", "a", seconds=8)
    L(4, "bob", "tie", "b")
    project.undo_label(L(5, "alice", "b", "a", seconds=4))
    L(6, "alice", "skip", "a", seconds=1)
    L(7, "alice", "b", "b", seconds=10)
    return project


def test_counts_and_resolution(labeled):
    s = project_stats(labeled)
    c = s["counts"]
    assert (c["prompts"], c["pairs"], c["labeled_pairs"], c["only_skipped_pairs"], c["unlabeled_pairs"]) == (
        7, 8, 5, 1, 2)
    assert (c["needs_more_pairs"], c["fully_labeled_pairs"]) == (1, 4)  # pair 7 has one label of two
    assert c["labels"] == {"current": 10, "replaced": 0, "undone": 1}
    assert s["resolved"] == {"preferences": 3, "tie": 1, "both_bad": 0, "no_majority": 1, "skipped": 1}
    prefs, left_out = labeled.resolve()
    assert s["resolved"]["preferences"] == len(prefs)
    assert {k: s["resolved"][k] for k in left_out} == left_out


def test_distribution_position_length(labeled):
    s = project_stats(labeled)
    dist = s["label_distribution"]
    assert {k: v["count"] for k, v in dist.items()} == {"a": 3, "b": 4, "tie": 2, "both_bad": 0, "skip": 1}
    assert dist["b"]["share"] == pytest.approx(0.4)
    # decided labels: (a,left a) yes, (a,left b) no, (b,left b) yes x2, (a,left a) yes, (b,left a) no, (b,left b) yes
    pb = s["position_bias"]
    assert (pb["decided"], pb["left_won"]) == (7, 5)
    assert pb["ci95"] == pytest.approx(list(core.wilson_interval(5, 7)))
    # resolved: pair 1 chose A (short), pairs 2 and 7 chose B (long) -> 2 of 3 chosen longer
    lb = s["length_bias"]
    assert (lb["decided_pairs"], lb["chosen_longer"]) == (3, 2)
    assert lb["median_ratio"] == pytest.approx(sorted([
        len("0.") / len("The answer to 0 plus 0 is 0, since adding a number to itself doubles it."),
        len("The answer to 1 plus 1 is 2, since adding a number to itself doubles it.") / len("2."),
        len("a much longer answer 0") / len("short 0")])[1])


def test_agreement_and_annotators(labeled):
    s = project_stats(labeled)
    ag = s["agreement"]
    # shared pairs 1-4: alice a b a tie / bob a b b tie
    assert (ag["pairs"], ag["annotators"], ag["percent"]) == (4, 2, 0.75)
    assert ag["cohens_kappa"] == pytest.approx(core.cohens_kappa(["a", "b", "a", "tie"], ["a", "b", "b", "tie"]))
    # by hand: p_o = 3/4; alice (a 2, b 1, tie 1), bob (a 1, b 2, tie 1): p_e = (2 + 2 + 1) / 16
    assert ag["cohens_kappa"] == pytest.approx((0.75 - 5 / 16) / (1 - 5 / 16))
    assert [(a["name"], a["labels"], a["median_seconds"]) for a in s["annotators"]] == [
        ("alice", 6, 5.0), ("bob", 4, 8.0)]


def test_annotator_audit_reads_every_current_label_with_both_lengths(labeled):
    audit = project_stats(labeled)["annotator_audit"]
    alice, bob = audit["people"]
    assert audit["imported"] == [] and audit["time_floor_seconds"] == core.TIME_FLOOR_SECONDS
    # alice: 1 a, 2 b, 3 a, 4 tie, 6 skip, eval 7 b (pair 5 undone); every decision for the side on the left
    assert (alice["name"], alice["labels"], alice["decided"], alice["ties"], alice["skips"]) == ("alice", 6, 4, 1, 1)
    assert alice["left"] == core.share_with_interval(4, 4)
    assert alice["longer"] == core.share_with_interval(2, 4)  # B is the longer response of every pair
    assert alice["median_seconds"] == 5.0 and alice["fast_labels"] == core.share_with_interval(2, 6)  # 2 s, 1 s
    # against bob on pairs 1-4 (pair 7 has no other verdict): a=a, b=b, a!=b, tie=tie
    assert alice["majority_agreement"] == core.share_with_interval(3, 4)
    # bob: 1 a (left b), 2 b (left b), 3 b (left a), 4 tie (untimed)
    assert bob["left"] == core.share_with_interval(1, 3) and bob["longer"] == core.share_with_interval(2, 3)
    assert bob["median_seconds"] == 8.0 and bob["fast_labels"]["n"] == 3
    assert bob["majority_agreement"] == core.share_with_interval(3, 4)
    eval_audit = project_stats(labeled, split="eval")["annotator_audit"]
    assert [(a["name"], a["labels"]) for a in eval_audit["people"]] == [("alice", 1)]


def test_split_filter(labeled):
    s = project_stats(labeled, split="eval")
    assert (s["counts"]["pairs"], s["counts"]["labeled_pairs"], s["resolved"]["preferences"]) == (2, 1, 1)
    assert s["agreement"]["pairs"] == 0 and s["agreement"]["krippendorff_alpha"] is None


def test_imported_labels_are_left_out_of_position_bias(project, tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}", "chosen": f"long answer {i}", "rejected": "no"}) + "\n"
                            for i in range(30)))
    from studio.store.import_writing import import_file

    import_file(project, path)
    s = project_stats(project)
    assert s["position_bias"]["decided"] == 0
    assert s["annotators"][0]["imported"] is True
    assert s["annotator_audit"]["people"] == [] and s["annotator_audit"]["imported"][0]["name"] == "import:prefs.jsonl"
    assert s["length_bias"]["share"] == 1.0
    assert any("DPO will learn length" in w for w in s["warnings"])
    assert bias_warnings(project) == s["warnings"]


def test_agreement_is_between_people_not_with_the_imported_verdict(project, tmp_path):
    from studio.store.import_writing import import_file

    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"}) + "\n"
                            for i in range(6)))
    import_file(project, path)
    pairs = [r[0] for r in project._conn.execute("SELECT id FROM pairs ORDER BY id")]
    for i, pair_id in enumerate(pairs):
        project.record_label(pair_id, "alice", "b" if i % 2 else "a", "a")  # disagrees with the file half the time
    assert project_stats(project)["agreement"]["pairs"] == 0  # alice is the only person who labeled
    for pair_id in pairs[:4]:
        project.record_label(pair_id, "bob", project.current_label(pair_id, "alice").choice, "b")
    ag = project_stats(project)["agreement"]
    assert (ag["pairs"], ag["annotators"], ag["percent"]) == (4, 2, 1.0)


def test_stats_are_json_and_the_demo_project_has_disagreements(tmp_path):
    p = create_demo(tmp_path / "demo")
    s = json.loads(json.dumps(project_stats(p)))
    assert s["schema"] == 2
    assert s["counts"]["unlabeled_pairs"] > 0 and s["counts"]["labels"]["replaced"] >= 1
    assert s["agreement"]["annotators"] == 2 and s["agreement"]["percent"] < 1
    assert {a["name"] for a in s["annotators"]} == {"alice", "bob"}
    assert any(r["messages"] for r in p._query("SELECT messages FROM prompts"))
    assert p._scalar("SELECT count(*) FROM prompts WHERE split = 'eval'") > 0
    p.close()


def test_demo_stats_match_a_count_made_from_the_demo_file(tmp_path):
    """`studio stats` on the demo against a count made straight from demo.json, not through the database."""
    import statistics as st
    from collections import Counter

    from studio.store.demo import demo_data

    labels, lengths = [], {}
    for item in demo_data()["prompts"]:
        for n, pair in enumerate(item["pairs"]):
            key = (json.dumps(item["prompt"]), n)
            lengths[key] = (len(pair["a"]), len(pair["b"]))
            labels += [(key, lab["annotator"], lab["choice"], lab["shown_left"], lab.get("seconds"))
                       for lab in pair.get("labels", [])]
    votes: dict = {}
    for key, who, choice, _left, _s in labels:
        if choice != "skip":
            votes.setdefault(key, {})[who] = choice
    decided = [(c, left) for _k, _w, c, left, _s in labels if c in ("a", "b")]
    prefs, longer, left_out = 0, 0, Counter()
    for key, v in votes.items():
        top = Counter(v.values()).most_common()
        if len(top) > 1 and top[0][1] == top[1][1]:
            left_out["no_majority"] += 1
        elif top[0][0] in ("tie", "both_bad"):
            left_out[top[0][0]] += 1
        else:
            prefs += 1
            a, b = lengths[key]
            longer += (a > b) if top[0][0] == "a" else (b > a)
    shared = [v for v in votes.values() if len(v) >= 2]

    with create_demo(tmp_path / "demo") as p:
        s = project_stats(p)
    assert s["counts"]["pairs"] == len(lengths)
    assert s["counts"]["labeled_pairs"] == len(votes)
    assert s["counts"]["unlabeled_pairs"] == len(lengths) - len({k for k, *_ in labels})
    assert s["counts"]["labels"]["current"] == len(labels)
    assert {k: v["count"] for k, v in s["label_distribution"].items()} == {
        c: sum(1 for lab in labels if lab[2] == c) for c in ("a", "b", "tie", "both_bad", "skip")}
    assert (s["position_bias"]["decided"], s["position_bias"]["left_won"]) == (
        len(decided), sum(1 for c, left in decided if c == left))
    assert s["resolved"] == {"preferences": prefs, "tie": left_out["tie"], "both_bad": left_out["both_bad"],
                             "no_majority": left_out["no_majority"], "skipped": 0}
    assert s["length_bias"]["chosen_longer"] == longer
    assert s["agreement"]["pairs"] == len(shared)
    assert s["agreement"]["percent"] == pytest.approx(sum(len(set(v.values())) == 1 for v in shared) / len(shared))
    for a in s["annotators"]:
        mine = [lab for lab in labels if lab[1] == a["name"]]
        assert a["labels"] == len(mine)
        assert a["median_seconds"] == pytest.approx(st.median(lab[4] for lab in mine if lab[4] is not None))
    # the figures docs/store.md shows for the demo
    assert (s["counts"]["labels"]["current"], s["resolved"]["preferences"], s["position_bias"]["left_won"]) == (
        48, 22, 21)
