"""Generation jobs in the app: the arena's blind flow end to end on the tiny model, candidates' provenance after
the choice, the Generate dialog, the Job and Arena tabs, and a job started, watched and stopped from the GUI."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QAbstractButton, QComboBox, QLabel, QLineEdit, QTextEdit, QWidget

from studio.core.generations import ARENA, GENERATE, GenerationPlan
from studio.store import Project
from studio.store import arena as arena_store
from studio.store import generations as G
from studio.train.worker import run_worker
from studio.ui.label_view import LabelView
from studio.ui.runs import RunsPanel
from studio.ui.runs.arena_view import ArenaView
from studio.ui.runs.generate_dialog import GenerateDialog
from tests.train.adapters import adapter_run
from tests.train.conftest import tiny_model  # noqa: F401 (the fixture)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("STUDIO_TORCH_THREADS", "1")
    monkeypatch.setenv("STUDIO_SETTINGS", "/dev/null")
    yield
    torch.set_num_threads(n)


@pytest.fixture
def project(tmp_path, tiny_model):  # noqa: F811
    p = Project.create(tmp_path / "proj")
    for i in range(4):
        p.add_prompt(f"Question {i}: tell me about the cat.", split="eval")
    for i in range(2):
        p.add_prompt(f"Train question {i}: the dog?", split="train")
    # distinctive names, so that any trace of them in the labeling view can be searched for
    for seed, name in ((1, "alpha-policy"), (2, "beta-policy")):
        p.update_run(adapter_run(p, tiny_model, seed), name=name)
    yield p
    p.close()


def run_named(project, name: str) -> int:
    return next(r["id"] for r in project.runs() if r["name"] == name)


def run_job(project, kind, specs, split, samples, model=None) -> int:
    sources = G.resolve_sources(project, specs, model)
    plan = GenerationPlan(kind, sources, G.choose_prompts(project, split), samples=samples, max_new_tokens=6)
    job = G.create_job(project, plan)
    assert run_worker(project.folder, job) == "done"
    return job


def reachable_text(view: LabelView, skip: tuple[QWidget, ...] = ()) -> str:
    """Everything the labeling view shows or could show: widget texts, tooltips, combo items, window title, the
    source filter's list, and the pair object it holds (less the widgets in `skip`)."""
    parts = [view.windowTitle(), repr(view.pair), *view.project.sources()]
    for w in [view, *view.findChildren(QWidget)]:
        if w in skip:
            continue
        parts.append(w.toolTip())
        if isinstance(w, QLabel | QAbstractButton | QLineEdit):
            parts.append(w.text())
        elif isinstance(w, QTextEdit):
            parts.append(w.toPlainText())
        elif isinstance(w, QComboBox):
            parts += [w.itemText(i) for i in range(w.count())]
    view.source_box.showPopup()  # the source list is read when opened
    parts += [view.source_box.itemText(i) for i in range(view.source_box.count())]
    view.source_box.hidePopup()
    return "\n".join(parts)


def test_the_arena_is_blind_while_labeling_and_its_labels_count_for_the_right_sources(qtbot, project, tiny_model):  # noqa: F811
    alpha, beta = run_named(project, "alpha-policy"), run_named(project, "beta-policy")
    job = run_job(project, ARENA, ["base", str(alpha), str(beta)], "eval", 1)
    arena_id = G.job_arena(project, job)
    view = LabelView(project, "carol")
    qtbot.addWidget(view)
    view.resize(1280, 800)
    view.show()
    view.set_filters(source=f"arena {arena_id}")
    secrets = ["alpha-policy", "beta-policy", str(tiny_model), "adapter"]
    rank = {"base": 0, "alpha-policy": 1, "beta-policy": 2}
    left_sources, labeled = set(), 0
    while view.pair is not None:
        pair = view.pair
        assert pair.source == f"arena {arena_id}" and pair.meta == {}
        assert pair.a.model is None and pair.b.model is None
        text = reachable_text(view)
        assert not [s for s in secrets if s in text], "the labeling view can reach who wrote what"
        # the test's own knowledge of the sources, which the view does not have
        (entry,) = G.pair_generations(project, pair.id)
        left = entry[view.shown_left]
        right = entry["b" if view.shown_left == "a" else "a"]
        left_sources.add(left["source"])
        view.choose("left" if rank[left["source"]] > rank[right["source"]] else "right")
        labeled += 1
        assert view.revealed.isHidden()  # not even after the choice
        assert not [s for s in secrets if s in reachable_text(view)]
    assert labeled == arena_store.arena(project, arena_id)["pairs"] > 6
    assert len(left_sources) == 3  # each source was on the left somewhere: sides are random
    r = arena_store.arena_results(project, arena_id, rounds=50)
    assert r["judgements"] == labeled and r["annotators"][0]["name"] == "carol"
    for m in r["matchups"]:  # the later source is the better one in every matchup
        assert m["losses"] == m["ties"] == 0 and m["wins"] == m["n"] > 0
    assert [b["source"] for b in r["bradley_terry"]] == ["beta-policy", "alpha-policy", "base"]


def test_candidates_show_who_wrote_each_side_after_the_choice_only(qtbot, project, tiny_model):  # noqa: F811
    alpha = run_named(project, "alpha-policy")
    job = run_job(project, GENERATE, [str(alpha), "base"], "train", 1, model=str(tiny_model))
    view = LabelView(project, "carol")
    qtbot.addWidget(view)
    view.show()
    view.set_filters(source=f"candidates {job}")
    seen = 0
    while view.pair is not None:
        pair_id, shown_left = view.pair.id, view.shown_left
        # before the choice, nothing names this pair's sources (the line under the keys speaks of the last one)
        assert "alpha-policy" not in reachable_text(view, skip=(view.revealed,))
        assert f"Pair #{pair_id}," not in view.revealed.text()
        prov = G.candidate_provenance(project, pair_id)
        left = prov[shown_left]["source"]
        right = prov["b" if shown_left == "a" else "a"]["source"]
        view.choose("right")
        shown = view.revealed.text()
        assert view.revealed.isVisibleTo(view) and f"Pair #{pair_id}" in shown and "Right better" in shown
        assert shown.index(f"left was <b>{left}") < shown.index(f"right was <b>{right}")
        seen += 1
    assert seen == 2
    view.set_filters(source=None)
    assert view.revealed.isHidden()  # the line spoke of the queue left behind


def test_the_generate_dialog_creates_the_job_it_describes(qtbot, project, tiny_model):  # noqa: F811
    alpha = run_named(project, "alpha-policy")
    dialog = GenerateDialog(project, kind=ARENA, models=[])
    qtbot.addWidget(dialog)
    assert dialog.launch() is None and "Tick the sources" in dialog.error_label.text()
    dialog.set_sources(["base", str(alpha)])
    dialog.model_combo.setEditText("/no/such/model")
    assert dialog.launch() is None and "Base model" in dialog.error_label.text()
    dialog.model_combo.setEditText(str(tiny_model))
    dialog.prompts_spin.setValue(3)
    dialog.temperature_spin.setValue(0.7)
    assert "3 prompts x 2 sources" in dialog.summary.text()
    job = dialog.launch()
    plan = GenerationPlan.from_dict(project.run(job)["config"])
    assert plan.kind == ARENA and [s.name for s in plan.sources] == ["base", "alpha-policy"]
    assert plan.sources[1].adapter_run == alpha and plan.split == "eval" and len(plan.prompt_ids) == 3
    assert plan.temperature == pytest.approx(0.7) and plan.samples == 1
    assert G.job_arena(project, job) is not None

    candidates = GenerateDialog(project, kind=GENERATE, models=[])
    qtbot.addWidget(candidates)
    candidates.set_sources([str(alpha)])
    assert "up to 2 pairs" in candidates.summary.text()  # 2 train prompts, 2 samples paired
    plan = GenerationPlan.from_dict(project.run(candidates.launch())["config"])
    assert plan.kind == GENERATE and plan.samples == 2 and plan.split == "train"


def test_a_job_started_from_the_gui_shows_progress_and_stops(qtbot, project, tiny_model, monkeypatch):  # noqa: F811
    """The real worker in its own process: the Job tab follows its progress, and Stop ends it interrupted with
    the finished batches kept and labelable (resuming is tested on the recipe itself)."""
    for i in range(200):
        project.add_prompt(f"More question {i}: the sky?", split="train")
    panel = RunsPanel(project)
    qtbot.addWidget(panel)
    panel.show()
    panel.ensure_views()
    panel.ask_close = lambda runs: "keep"

    def fake_exec(dialog):
        dialog.set_sources(["base"])
        dialog.model_combo.setEditText(str(tiny_model))
        dialog.max_tokens_spin.setValue(32)
        dialog._on_start()
        return dialog.result()

    monkeypatch.setattr(GenerateDialog, "exec", fake_exec)
    job = panel.open_generate_dialog()
    assert panel.tabs.currentWidget() is panel.job_view and panel.job_view.run_id == job
    qtbot.waitUntil(lambda: project.run(job)["step"] >= 8, timeout=120_000)
    panel.stop_selected()
    qtbot.waitUntil(lambda: project.run(job)["status"] == "interrupted", timeout=60_000)
    panel.poller.refresh_runs()
    done = len(G.done_prompts(project, job))
    assert 8 <= done < 202 and G.job_counts(project, job)["pairs"] == done
    assert panel.job_view.progress.value() == done and panel.job_view.progress.maximum() == 202
    assert "interrupted" in panel.job_view.title.text() and f"candidates {job}" in panel.job_view.details.text()
    assert panel.resume_button.isEnabled()
    assert not panel.duplicate_button.isEnabled() and not panel.export_button.isEnabled()


def test_the_arena_tab_shows_results_and_the_way_to_label(qtbot, project):
    arena_view = ArenaView(project, rounds=20)
    qtbot.addWidget(arena_view)
    arena_view.refresh()
    assert "No arena yet" in arena_view.summary.text()
    alpha = run_named(project, "alpha-policy")
    beta = run_named(project, "beta-policy")
    sources = G.resolve_sources(project, [str(alpha), str(beta)])
    plan = GenerationPlan(ARENA, sources, G.choose_prompts(project, "eval"), samples=1)
    job = G.create_job(project, plan)
    texts = [G.GeneratedText(p, s, 0, f"{'short' if s == 0 else 'a longer text'} {p}", 3, True, 0)
             for p in plan.prompt_ids for s in (0, 1)]
    G.write_batch(project, job, plan, texts, [(2 * i, 2 * i + 1) for i in range(len(plan.prompt_ids))])
    arena_view.refresh()
    assert "Label them in the Label section, source <b>arena" in arena_view.summary.text()
    for pair_id in project.pair_ids()[:3]:
        project.record_label(pair_id, "carol", "b", shown_left="a")  # beta's longer text wins 3 of 4
    project.record_label(project.pair_ids()[3], "dave", "tie", shown_left="a")
    arena_view.refresh()
    assert arena_view.cell(arena_view.matchups, 0, 0) == "beta-policy vs alpha-policy"
    assert [arena_view.cell(arena_view.matchups, 0, c) for c in (1, 2, 3, 4)] == ["3", "1", "0", "87.5%"]
    assert arena_view.scores_box.isHidden()  # two sources: no Bradley-Terry table
    names = {arena_view.cell(arena_view.annotators, r, 0) for r in range(arena_view.annotators.rowCount())}
    assert names == {"carol", "dave"}


def test_a_failed_job_resumes_where_a_failed_training_run_without_checkpoint_cannot(qtbot, project, tiny_model,  # noqa: F811
                                                                                    monkeypatch):
    plan = GenerationPlan(GENERATE, G.resolve_sources(project, ["base"], str(tiny_model)),
                          G.choose_prompts(project, "train"))
    job = G.create_job(project, plan)
    project.update_run(job, status="failed", error="CUDA error")
    trained = run_named(project, "alpha-policy")
    project.update_run(trained, status="failed")
    panel = RunsPanel(project)
    qtbot.addWidget(panel)
    panel.ensure_views()
    panel.poller.refresh_runs()
    started = []
    monkeypatch.setattr(panel, "start_run", lambda run_id, resume=False: started.append((run_id, resume)))
    panel.table.select_ids([job])
    assert panel.resume_button.isEnabled() and not panel.duplicate_button.isEnabled()
    assert panel.tabs.currentWidget() is panel.job_view and "CUDA error" in panel.job_view.details.text()
    panel.retry_run(job)  # the monitor's Retry: the job goes on, no launch dialog
    assert started == [(job, True)]
    panel.table.select_ids([trained])
    assert not panel.resume_button.isEnabled() and panel.tabs.currentWidget() is panel.monitor
