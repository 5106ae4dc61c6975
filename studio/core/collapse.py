"""Collapse measures of a policy's own samples: length, diversity, self-similarity and repetition.

Pure functions over token sequences (lists of ints, or any hashable items), so the worker, the CLI and the
tests compute the same numbers. What each measures:

- distinct-n: distinct n-grams among all n-grams of all samples (Li et al. 2016, "A Diversity-Promoting
  Objective Function for Neural Conversation Models"); 1.0 = nothing repeats anywhere.
- self-similarity: among the samples of one prompt, the share of a sample's n-grams (clipped counts, as
  in BLEU's modified precision) that also occur in the prompt's other samples, averaged over samples and
  then over prompts. Self-BLEU (Zhu et al. 2018, Texygen) at one n-gram order, without the brevity
  penalty: 0 = the samples of a prompt share nothing, 1 = they are the same text.
- repetition: within one sample, the share of its n-grams that repeat an earlier n-gram of the same
  sample (seq-rep-n of Welleck et al. 2019, "Neural Text Generation with Unlikelihood Training").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

SELF_SIMILARITY_N = 2
"""n-gram order of the self-similarity."""
REPETITION_N = 3
"""n-gram order of the within-sample repetition (Welleck et al. use 4; 3 shows loops in short samples)."""


def ngrams(seq: Sequence[Hashable], n: int) -> list[tuple]:
    """The n-grams of a sequence in order (none when it is shorter than n)."""
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(sequences: Sequence[Sequence[Hashable]], n: int) -> float:
    """Distinct n-grams over all n-grams of all sequences; NaN when there is no n-gram at all."""
    grams = [g for s in sequences for g in ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def overlap(sample: Sequence[Hashable], others: Sequence[Sequence[Hashable]], n: int) -> float:
    """Share of the sample's n-grams found in the others, each n-gram counted at most as often as it occurs
    in the other that holds it most (BLEU's clipping); NaN when the sample has no n-gram."""
    grams = Counter(ngrams(sample, n))
    total = sum(grams.values())
    if not total:
        return math.nan
    most: Counter = Counter()
    for other in others:
        for g, c in Counter(ngrams(other, n)).items():
            most[g] = max(most[g], c)
    return sum(min(c, most[g]) for g, c in grams.items()) / total


def self_similarity(groups: Sequence[Sequence[Sequence[Hashable]]], n: int = SELF_SIMILARITY_N) -> float:
    """Mean over prompts of the mean `overlap` of each sample with the prompt's other samples (module
    docstring). `groups` holds the samples of each prompt; prompts with fewer than two samples are left
    out. NaN when nothing could be compared."""
    per_prompt = []
    for samples in groups:
        if len(samples) < 2:
            continue
        values = [overlap(s, [o for j, o in enumerate(samples) if j != i], n) for i, s in enumerate(samples)]
        values = [v for v in values if not math.isnan(v)]
        if values:
            per_prompt.append(sum(values) / len(values))
    return sum(per_prompt) / len(per_prompt) if per_prompt else math.nan


def repeated_mask(seq: Sequence[Hashable], n: int = REPETITION_N) -> list[bool]:
    """Per token, whether it belongs to an n-gram that already occurred earlier in the sequence (the first
    occurrence is not marked, its repeats are): what the samples view highlights."""
    mask = [False] * len(seq)
    seen: set[tuple] = set()
    for i, g in enumerate(ngrams(seq, n)):
        if g in seen:
            mask[i:i + n] = [True] * n
        seen.add(g)
    return mask


def repetition(seq: Sequence[Hashable], n: int = REPETITION_N) -> float:
    """Share of the sequence's n-grams that repeat an earlier one of the same sequence (seq-rep-n); 0.0
    for a sequence too short to hold an n-gram (nothing in it repeats)."""
    grams = ngrams(seq, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def runs(mask: Sequence[bool]) -> list[tuple[int, int]]:
    """The [start, end) index ranges where the mask is True."""
    out: list[tuple[int, int]] = []
    start = None
    for i, m in enumerate([*mask, False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def length_summary(lengths: Sequence[float]) -> tuple[float, float]:
    """(mean, median) of sample lengths; NaN for none."""
    if not len(lengths):
        return math.nan, math.nan
    a = np.asarray(lengths, dtype=float)
    return float(a.mean()), float(np.median(a))


def percentile_length(lengths: Sequence[float], q: float, at_least: int) -> int:
    """The q-th percentile of lengths, rounded up, and at least `at_least` (the default sampling cap)."""
    if not len(lengths):
        return at_least
    return max(at_least, math.ceil(float(np.percentile(np.asarray(lengths, dtype=float), q))))
