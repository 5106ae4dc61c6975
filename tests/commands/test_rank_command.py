"""`studio rank` without models: the labels alone rank the pairs at once (split votes first), --show prints the
ranking, --auto turns the ranking after runs on and off; `studio frontier` says what it needs."""

from __future__ import annotations

import json

from studio.cli import main
from studio.store import Project
from tests.conftest import add_pairs


def test_rank_from_the_labels_alone_and_show_it(tmp_path, capsys):
    folder = tmp_path / "proj"
    with Project.create(folder) as project:
        ids = add_pairs(project, 4)
        project.record_label(ids[2], "ann1", "a", "a")
        project.record_label(ids[2], "ann2", "b", "a")
    assert main(["rank", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "4 pairs ranked from the labels alone" in out and "from the labels only" in out
    assert main(["rank", str(folder), "--show", "--top", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ranking"]["scorers"] == [] and report["ranking"]["terms"] == [] and report["ranking"]["pairs"] == 4
    assert [r["pair_id"] for r in report["top"]] == [ids[2], ids[0]]
    assert report["top"][0]["labels"] == 1.0 and report["top"][0]["uncertainty"] is None
    with Project.open(folder) as project:
        assert project.next_pair("ann3", "informative") == ids[2]


def test_auto_ranking_is_a_project_setting(tmp_path, capsys):
    folder = tmp_path / "proj"
    Project.create(folder).close()
    assert main(["rank", str(folder), "--auto", "off"]) == 0
    with Project.open(folder) as project:
        assert project.setting("auto_rank") == "off"
    assert main(["rank", str(folder), "--show"]) == 0
    assert "no ranking yet" in capsys.readouterr().out


def test_rank_and_frontier_name_what_is_missing(tmp_path, capsys):
    folder = tmp_path / "proj"
    with Project.create(folder) as project:
        add_pairs(project, 2)
        reward = project.create_run("reward", "m", {}, snapshot=[])
        dpo = project.create_run("dpo", "m", {}, snapshot=[])
    assert main(["rank", str(folder), "--reward", str(reward)]) == 2
    assert f"--reward {reward}: the reward run is queued" in capsys.readouterr().err
    assert main(["frontier", str(folder), "--runs", str(dpo)]) == 2
    assert "--reward: which reward model" in capsys.readouterr().err
    assert main(["frontier", str(folder), "--reward", str(reward), "--runs", str(dpo)]) == 2
    assert f"run {dpo} (dpo-{dpo}) has no saved adapter yet" in capsys.readouterr().err
