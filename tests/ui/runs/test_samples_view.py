"""The samples timeline: a probe prompt at step 0 beside a later step, repeats highlighted, badges; two runs."""

from __future__ import annotations

import pytest

from studio.ui.runs import samples_view as V

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def sample(step: int, prompt: int, k: int, text: str, **meta) -> dict:
    return {"step": step, "prompt_id": prompt, "prompt_text": f"Prompt {prompt}?", "text": text,
            "meta": {"sample": k, **meta}}


def run_samples() -> list[dict]:
    """Two probe prompts, two samples each, at steps 0, 10 and 20; by step 20 prompt 1 loops."""
    out = []
    for step in (0, 10, 20):
        for prompt in (1, 2):
            for k in range(2):
                text = "yes yes yes yes" if step == 20 and prompt == 1 else f"answer {k} to {prompt} at {step}"
                out.append(sample(step, prompt, k, text, tokens=4 + step, hit_cap=step == 20, cap=24,
                                  repetition=0.5 if step == 20 else 0.0, kl_seq=step / 10,
                                  repeated=[[4, 15]] if step == 20 and prompt == 1 else []))
    return out


def test_a_sample_shows_its_measures_as_badges_and_its_repeats_highlighted():
    s = sample(20, 1, 0, "a <b> yes yes", tokens=24, hit_cap=True, cap=24, repetition=0.5, kl_seq=1.234,
               repeated=[[6, 13]])
    assert V.badges(s["meta"]) == [("24 tokens", False), ("hit the cap (24)", True), ("repeats 50%", True),
                                   ("KL 1.23 nats", False)]
    assert V.highlighted(s["text"], s["meta"]["repeated"]) == (
        f"a &lt;b&gt; <span style='background:{V.C.HIGHLIGHT}; color:{V.C.BADGE_TEXT}'>yes yes</span>")
    mark = f"background:{V.C.HIGHLIGHT}; color:{V.C.BADGE_TEXT}"
    assert V.highlighted("abc", [[5, 9], [1, 2]]) == f"a<span style='{mark}'>b</span>c"
    assert "hit&nbsp;the&nbsp;cap&nbsp;(24)" in V.sample_html(s) and "#1" in V.sample_html(s)
    # a sample another method stored without measures shows its text alone
    assert V.badges({}) == [] and "plain" in V.sample_html({"text": "plain", "meta": {}})


def test_one_run_shows_step_0_beside_the_chosen_step(qtbot):
    samples = run_samples()
    view = V.SamplesTimeline()
    qtbot.addWidget(view)
    view.resize(1000, 600)
    view.set_sources([("run", samples)])
    assert view.current_step() == 20  # the latest evaluation first
    assert [view.prompt_box.itemData(i) for i in range(view.prompt_box.count())] == [1, 2]
    left, right = (p.toPlainText() for p in view.panes)
    assert left.startswith("step 0 (base model)") and "answer 1 to 1 at 0" in left
    assert right.startswith("step 20") and right.count("yes yes yes yes") == 2 and "hit the cap" in right
    assert V.C.HIGHLIGHT.lstrip("#") in view.panes[1].toHtml() and V.C.HIGHLIGHT.lstrip("#") not in \
        view.panes[0].toHtml()  # the loop is marked, step 0 repeats nothing
    view.set_step(10)
    assert "answer 0 to 1 at 10" in view.panes[1].toPlainText()
    view.set_prompt(2)
    assert "answer 0 to 2 at 10" in view.panes[1].toPlainText() and "answer 0 to 2 at 0" in view.panes[0].toPlainText()

    # new samples: a slider at an older step stays there; at the latest, it follows
    samples.append(sample(30, 2, 0, "later", tokens=9))
    view.refresh()
    assert view.current_step() == 10
    view.set_step(30)
    samples.append(sample(40, 2, 0, "latest", tokens=9))
    view.refresh()
    assert view.current_step() == 40 and "latest" in view.panes[1].toPlainText()


def test_two_runs_side_by_side_at_the_same_step_or_their_nearest_earlier(qtbot):
    other = [s for s in run_samples() if s["step"] != 10]
    view = V.SamplesTimeline()
    qtbot.addWidget(view)
    view.resize(1000, 600)
    view.set_sources([("dpo", run_samples()), ("ipo", other)])
    view.set_step(10)
    titles = [title for title, _ in view.column_sources()]
    assert titles == ["dpo · step 10", "ipo · step 0"]  # ipo was not sampled at 10: its step before
    view.show()
    view.resize(400, 600)
    assert view.columns.orientation().name == "Vertical"  # narrow: one above the other


def test_no_samples_says_when_they_come(qtbot):
    view = V.SamplesTimeline()
    qtbot.addWidget(view)
    view.set_sources([("run", [])])
    assert not view.placeholder.isHidden() and "step 0 is the base model" in view.placeholder.text()
