"""Word-level diff between two responses: which words of each side the other side lacks."""

from __future__ import annotations

import re

WORD = re.compile(r"\S+")

# Exact matching (autojunk off) is quadratic in the worst case; past this many words per side the
# heuristic matcher is used, and past MAX_WORDS no diff is computed at all (the view says so).
EXACT_WORDS = 3_000
MAX_WORDS = 20_000


def words(text: str) -> list[tuple[int, int, str]]:
    """(start, end, word) for each whitespace-separated word."""
    return [(m.start(), m.end(), m.group()) for m in WORD.finditer(text)]


def word_diff(left: str, right: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
    """Character spans (start, end) of the words in `left` not matched in `right`, and vice versa.
    Adjacent differing words merge into one span. None when the texts are too long to diff."""
    lw, rw = words(left), words(right)
    if max(len(lw), len(rw)) > MAX_WORDS:
        return None
    exact = max(len(lw), len(rw)) <= EXACT_WORDS
    import difflib  # on the first diff, not at the window's start

    matcher = difflib.SequenceMatcher(None, [w for *_, w in lw], [w for *_, w in rw], autojunk=not exact)
    left_spans: list[tuple[int, int]] = []
    right_spans: list[tuple[int, int]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if i2 > i1:
            left_spans.append((lw[i1][0], lw[i2 - 1][1]))
        if j2 > j1:
            right_spans.append((rw[j1][0], rw[j2 - 1][1]))
    return left_spans, right_spans
