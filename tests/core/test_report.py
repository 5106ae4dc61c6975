"""The comparison as data (columns, group statistics, JSON) and the self-contained HTML report."""

from __future__ import annotations

import base64
import json
import math
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

from studio.core import metrics as M
from studio.core.comparison import ArenaSection, Comparison, RunSummary, comparison_entries, dumps, entry_config
from studio.core.costs import RunUsage, run_cost
from studio.core.report import render_html

SVG = "{http://www.w3.org/2000/svg}"


def run(run_id, seed, group=None, status="done", loss_type="sigmoid"):
    return {"id": run_id, "name": f"r{run_id}", "method": "dpo", "model": "/models/tiny", "status": status,
            "step": 3, "total_steps": 3, "group_id": group, "created_at": "2026-01-01T10:00:00+00:00",
            "started_at": "2026-01-01T10:00:00+00:00", "ended_at": "2026-01-01T10:10:00+00:00",
            "active_seconds": 600.0, "device": "cuda:0 (GPU)",
            "config": {"seed": seed, "beta": 0.1, "loss_type": loss_type, "lora": {"r": 8}}}


def comparison(arena=None):
    """Runs 1-3: a seed group (run 3 still training), run 4: IPO on its own."""
    rows = [run(1, 0, group=7), run(2, 1, group=7), run(3, 2, group=7, status="running"),
            run(4, 0, loss_type="ipo")]
    finals = {1: 0.6, 2: 0.8, 3: 0.1, 4: math.nan}
    summaries = [RunSummary(r, {M.LOSS: finals[r["id"]]}, run_cost(r, RunUsage(num_tokens=1000.0 * r["id"]), 2.0),
                            [{"step": 3, "prompt_text": "Say <hi>", "text": "<script>alert(1)</script> hello"}])
                 for r in rows]
    steps = np.array([1.0, 2.0, 3.0])
    series = {M.LOSS: {1: (steps, np.array([0.7, 0.65, 0.6])), 2: (steps, np.array([0.7, 0.75, 0.8])),
                       3: (steps[:1], np.array([0.1])), 4: (steps, np.array([0.5, math.nan, 0.4]))},
              M.EVAL_KL: {1: (np.array([0.0, 3.0]), np.array([0.0, 0.2]))}}
    return Comparison("demo", "2026-01-01T11:00:00+00:00", summaries, comparison_entries(rows, {7: "dpo-x3"}),
                      series, price_per_gpu_hour=2.0, arena=arena, group_names={7: "dpo-x3"})


def test_the_runs_of_a_seed_group_become_one_column_with_their_seeds_joined():
    c = comparison()
    assert [(e.label, e.run_ids) for e in c.entries] == [("dpo-x3 (3 seeds)", (1, 2, 3)), ("r4", (4,))]
    assert c.differing_fields() == ["loss_type", "seed"]
    assert entry_config([s.run for s in c.runs[:3]])["seed"] == "0, 1, 2"
    # one run of a group compared alone stays a run
    alone = comparison_entries([run(1, 0, group=7), run(4, 0)], {7: "dpo-x3"})
    assert [e.label for e in alone] == ["r1", "r4"]
    assert [e.label for e in comparison_entries([run(1, 0, 7), run(2, 1, 7)], {}, by_group=False)] == ["r1", "r2"]


def test_group_finals_and_costs_are_over_finished_runs_only():
    c = comparison()
    group = c.entries[0]
    loss = c.final(group, M.LOSS)
    assert (loss.mean, loss.n) == (pytest.approx(0.7), 2)  # run 3 is still training: its 0.1 is not final
    assert loss.std == pytest.approx(math.sqrt(0.02))
    money = c.cost(group, "money")
    assert money.mean == pytest.approx(600 / 3600 * 2.0)
    tokens = c.cost(group, "num_tokens")
    assert tokens.mean == pytest.approx(1500)


def test_the_json_names_runs_groups_and_costs_and_is_strict():
    data = json.loads(dumps(comparison()))  # NaN (a diverged loss) must not make invalid JSON
    assert data["schema"] == 1 and data["price_per_gpu_hour"] == 2.0
    assert [r["id"] for r in data["runs"]] == [1, 2, 3, 4]
    assert data["runs"][3]["final"][M.LOSS] is None
    assert data["runs"][0]["seed"] == 0 and data["runs"][0]["cost"]["gpu_seconds"] == 600
    (group,) = data["groups"]
    assert group["id"] == 7 and group["name"] == "dpo-x3" and group["runs"] == [1, 2, 3]
    assert group["finished_runs"] == 2
    assert group["final"][M.LOSS] == {"mean": pytest.approx(0.7), "std": pytest.approx(math.sqrt(0.02)), "n": 2}


class Page(HTMLParser):
    """Collects what a self-contained page must not have: links to fetch, and its images."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.images: list[str] = []
        self.headings: list[str] = []
        self._h2 = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "srcset", "data", "action") and value:
                self.urls.append(value)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._h2 = tag == "h2"

    def handle_data(self, data):
        if self._h2:
            self.headings.append(data)
            self._h2 = False


def svgs(page: str) -> list[ET.Element]:
    out, start = [], 0
    while (i := page.find("<svg", start)) >= 0:
        j = page.index("</svg>", i) + len("</svg>")
        out.append(ET.fromstring(page[i:j]))
        start = j
    return out


def test_the_report_is_one_file_with_nothing_to_fetch_and_charts_that_parse():
    page = render_html(comparison(ArenaSection(("run", "wins", "losses"), (("r1", 3, 1), ("r4", 1, 3)),
                                               "judged by alice")))
    p = Page()
    p.feed(page)
    assert p.headings == ["Runs", "Charts", "Settings that differ", "Final metrics", "Cost", "Arena", "Samples"]
    # nothing fetched: no link of any kind; images, if any, are data URIs that decode
    assert not [u for u in p.urls if not u.startswith("data:")]
    assert "url(" not in page and "@import" not in page
    for src in p.images:
        base64.b64decode(src.split(",", 1)[1], validate=True)
    charts = svgs(page)
    assert len(charts) == 2  # loss and the sampled KL: the metrics some run logged
    for svg in charts:
        assert svg.tag == f"{SVG}svg" and svg.findall(f"{SVG}path")
    loss = charts[0]
    # the group's band (a polygon) over two lines: the group's mean and run 4's (the EMA bridges its NaN)
    assert len(loss.findall(f"{SVG}polygon")) == 1
    assert len(loss.findall(f"{SVG}path")) == 2
    # samples are escaped text, the arena table is there, the group cell is mean ± std over finished runs
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; hello" in page
    assert "judged by alice" in page and "<td class='num'>3</td>" in page
    assert "0.7 ± 0.141 (n=2)" in page  # n: run 3 of 3 is still training
    assert "0.33 ± 0.00 (n=2)" in page  # money: 600 s on one GPU at 2.0 per GPU-hour, the same for both runs


def test_a_report_without_arena_results_says_so():
    page = render_html(comparison())
    assert "No arena results for these runs." in page
