"""The samples timeline: one probe prompt's samples at step 0 beside any later step (a step slider), or two runs
side by side in Compare, with repeated n-grams highlighted and each sample's measures as badges.

Samples are the rows of the project's samples table (any method writes them there, with whatever per-sample
measures it has in `meta`); a badge is shown only for a measure the sample has."""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QLabel,
    QSlider,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from studio.ui.runs import charts as C

NARROW_PX = 620
"""Below this width the two columns stack, one above the other."""


def sample_steps(samples: Sequence[dict]) -> list[int]:
    return sorted({int(s["step"]) for s in samples})


def prompt_key(sample: dict) -> int | str:
    """What groups a sample with its prompt's others: the prompt id, or the prompt text for a sample stored
    without one."""
    return sample["prompt_id"] if sample.get("prompt_id") is not None else sample.get("prompt_text") or ""


def probe_prompts(samples: Sequence[dict]) -> dict[int | str, str]:
    """Prompt key (`prompt_key`) -> prompt text, in the order the prompts were first sampled."""
    out: dict[int | str, str] = {}
    for s in samples:
        out.setdefault(prompt_key(s), s.get("prompt_text") or "")
    return out


def at_step(samples: Sequence[dict], prompt: int | str, step: int) -> list[dict]:
    """A prompt's samples (by `prompt_key`) at a step, in sample order."""
    found = [s for s in samples if s["step"] == step and prompt_key(s) == prompt]
    return sorted(found, key=lambda s: (s.get("meta") or {}).get("sample", 0))


def step_at_or_before(steps: Sequence[int], step: int) -> int | None:
    """The latest of `steps` not after `step` (a run evaluated at other steps shows its nearest earlier one)."""
    earlier = [s for s in steps if s <= step]
    return earlier[-1] if earlier else (steps[0] if steps else None)


def badges(meta: dict) -> list[tuple[str, bool]]:
    """(text, is_warning) of the measures a sample has, in reading order."""
    out: list[tuple[str, bool]] = []
    if isinstance(meta.get("reward"), int | float):  # PPO/RLOO: the reward model's score of it
        out.append((f"reward {meta['reward']:+.3f}", False))
    if "tokens" in meta:
        out.append((f"{meta['tokens']} tokens", False))
    if meta.get("hit_cap"):
        cap = f" ({meta['cap']})" if meta.get("cap") else ""
        out.append((f"hit the cap{cap}", True))
    if meta.get("repetition") is not None:
        out.append((f"repeats {meta['repetition']:.0%}", meta["repetition"] >= 0.5))
    if meta.get("kl_seq") is not None:
        out.append((f"KL {meta['kl_seq']:.2f} nats", False))
    if meta.get("entropy") is not None:
        out.append((f"entropy {meta['entropy']:.2f}", False))
    return out


def highlighted(text: str, spans: Sequence[Sequence[int]]) -> str:
    """The text as HTML with the character ranges in `spans` marked (the repeated n-grams)."""
    out, pos = [], 0
    for start, end in sorted((max(0, int(a)), min(len(text), int(b))) for a, b in spans):
        if start < pos or start >= end:
            continue
        out += [html.escape(text[pos:start]),
                f"<span style='background:{C.HIGHLIGHT}; color:{C.BADGE_TEXT}'>{html.escape(text[start:end])}</span>"]
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>")


def sample_html(sample: dict) -> str:
    """One sample: its badges, then its text with repeated n-grams highlighted."""
    meta = sample.get("meta") or {}
    chips = "".join(f"<span style='background:{C.BADGE_WARN if warn else C.BADGE}; color:{C.BADGE_TEXT}'>&nbsp;"
                    f"{html.escape(t).replace(' ', '&nbsp;')}&nbsp;</span> " for t, warn in badges(meta))
    number = f"#{meta['sample'] + 1} " if "sample" in meta else ""
    return (f"<p style='margin-bottom:2px'><b>{number}</b>{chips}</p>"
            f"<p style='margin-top:0'>{highlighted(sample.get('text') or '', meta.get('repeated') or [])}</p>")


def column_html(title: str, samples: Sequence[dict]) -> str:
    body = "<hr>".join(sample_html(s) for s in samples) or "<p><i>No sample of this prompt at this step.</i></p>"
    return f"<h4 style='margin:0'>{html.escape(title)}</h4>{body}"


class SamplesTimeline(QWidget):
    """Pick a probe prompt and a step; see that prompt's samples at the first sampled step (step 0: the base
    model) beside the chosen one, or, with two sources, both runs at the chosen step."""

    PLACEHOLDER = "Samples of the probe prompts appear at each evaluation; step 0 is the base model."

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.sources: list[tuple[str, Sequence[dict]]] = []
        self._steps: list[int] = []
        self.prompt_box = QComboBox()
        self.prompt_box.setToolTip("The probe prompt whose samples are shown (the same prompts at every step)")
        self.prompt_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.prompt_box.setMinimumContentsLength(18)
        self.prompt_box.currentIndexChanged.connect(self.render)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("The evaluation step to show (arrow keys move one evaluation)")
        self.slider.setPageStep(1)
        self.slider.valueChanged.connect(self.render)
        self.step_label = QLabel()
        self.step_label.setMinimumWidth(70)
        controls = QGridLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(QLabel("Prompt"), 0, 0)
        controls.addWidget(self.prompt_box, 0, 1, 1, 2)
        controls.addWidget(QLabel("Step"), 1, 0)
        controls.addWidget(self.slider, 1, 1)
        controls.addWidget(self.step_label, 1, 2)
        controls.setColumnStretch(1, 1)
        self.prompt_text = QLabel()
        self.prompt_text.setWordWrap(True)
        self.prompt_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.columns = QSplitter(Qt.Orientation.Horizontal)
        self.panes = [QTextBrowser(), QTextBrowser()]
        for pane in self.panes:
            pane.setOpenLinks(False)
            self.columns.addWidget(pane)
        self.placeholder = QLabel(self.PLACEHOLDER)
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.prompt_text)
        layout.addWidget(self.columns, 1)
        layout.addWidget(self.placeholder, 1)
        self.refresh()

    # -- data

    def set_sources(self, sources: list[tuple[str, Sequence[dict]]]) -> None:
        """The samples to show: one run (its first step beside the chosen one), or two (side by side)."""
        self.sources = sources
        self.slider.blockSignals(True)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.refresh(follow=True)

    def refresh(self, follow: bool | None = None) -> None:
        """Re-read the sources (new samples arrived): new prompts and steps join the pickers; the slider
        stays where it is unless it was at the latest step, which it then follows."""
        all_samples = [s for _name, samples in self.sources for s in samples]
        steps = sample_steps(all_samples)
        at_end = follow if follow is not None else self.slider.value() >= self.slider.maximum()
        self._steps = steps
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(steps) - 1))
        if at_end:
            self.slider.setValue(self.slider.maximum())
        self.slider.blockSignals(False)
        prompts = probe_prompts(all_samples)
        current = self.prompt_box.currentData()
        if [self.prompt_box.itemData(i) for i in range(self.prompt_box.count())] != list(prompts):
            self.prompt_box.blockSignals(True)
            self.prompt_box.clear()
            for pid, text in prompts.items():
                number = f"#{pid}  " if isinstance(pid, int) else ""
                self.prompt_box.addItem(f"{number}{' '.join(text.split())[:80]}", pid)
                self.prompt_box.setItemData(self.prompt_box.count() - 1, text[:1000], Qt.ItemDataRole.ToolTipRole)
            self.prompt_box.setCurrentIndex(max(0, self.prompt_box.findData(current)))
            self.prompt_box.blockSignals(False)
        empty = not steps
        self.columns.setVisible(not empty)
        self.prompt_text.setVisible(not empty)
        self.placeholder.setVisible(empty)
        self.render()

    def current_step(self) -> int | None:
        return self._steps[self.slider.value()] if self._steps else None

    def set_step(self, step: int) -> None:
        if step in self._steps:
            self.slider.setValue(self._steps.index(step))

    def set_prompt(self, prompt_id: int) -> None:
        self.prompt_box.setCurrentIndex(max(0, self.prompt_box.findData(prompt_id)))

    # -- drawing

    def column_sources(self) -> list[tuple[str, list[dict]]]:
        """(title, samples) of the two columns for the chosen prompt and step."""
        step, pid = self.current_step(), self.prompt_box.currentData()
        if step is None or pid is None or not self.sources:
            return []
        if len(self.sources) == 1:
            name, samples = self.sources[0]
            steps = sample_steps(samples)
            first = steps[0]
            base = "base model" if first == 0 else "first samples"
            return [(f"step {first} ({base})", at_step(samples, pid, first)),
                    (f"step {step}", at_step(samples, pid, step))]
        out = []
        for name, samples in self.sources[:2]:
            shown = step_at_or_before(sample_steps(samples), step)
            out.append((f"{name} · step {shown}", at_step(samples, pid, shown) if shown is not None else []))
        return out

    def render(self) -> None:
        step = self.current_step()
        self.step_label.setText("" if step is None else f"step {step}")
        pid = self.prompt_box.currentData()
        text = self.prompt_box.itemData(self.prompt_box.currentIndex(), Qt.ItemDataRole.ToolTipRole) or ""
        number = f" #{pid}" if isinstance(pid, int) else ""
        self.prompt_text.setText(f"<b>Prompt{number}:</b> {html.escape(' '.join(text.split())[:400])}"
                                 if pid is not None else "")
        for pane, (title, samples) in zip(self.panes, self.column_sources(), strict=False):
            bar = pane.verticalScrollBar().value()
            pane.setHtml(column_html(title, samples))
            pane.verticalScrollBar().setValue(bar)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        narrow = self.width() < NARROW_PX
        self.columns.setOrientation(Qt.Orientation.Vertical if narrow else Qt.Orientation.Horizontal)
