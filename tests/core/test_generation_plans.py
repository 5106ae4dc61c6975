"""Generation plans: validation, storage round trip, which samples are paired, random sides."""

from __future__ import annotations

import random

import pytest

from studio.core.errors import ConfigError
from studio.core.generations import (
    ARENA,
    GENERATE,
    GenerationPlan,
    Source,
    batch_seed,
    sample_pairs,
    shuffled_pairs,
)

BASE = Source("base", "/models/tiny")
RUN = Source("dpo-3", "/models/tiny", adapter_run=3, adapter_step=40)


def test_a_plan_survives_its_trip_through_the_run_config():
    plan = GenerationPlan(ARENA, [BASE, RUN], [4, 5, 9], samples=1, temperature=0.7, seed=3, split="eval")
    back = GenerationPlan.from_dict(plan.to_dict())
    assert back == plan
    assert back.sources[1].adapter_run == 3 and back.method == ARENA


@pytest.mark.parametrize("kwargs, field", [
    ({"kind": ARENA, "sources": [BASE]}, "sources: an arena needs at least two"),
    ({"kind": ARENA, "sources": [BASE, RUN], "samples": 2}, "samples: an arena takes one"),
    ({"kind": GENERATE, "sources": [BASE], "samples": 1}, "samples: at least 2"),
    ({"kind": GENERATE, "sources": [BASE, RUN, Source("x", "/m")]}, "sources: candidates come from one"),
    ({"kind": GENERATE, "sources": [BASE, BASE]}, "sources: named twice: base"),
    ({"kind": GENERATE, "sources": [BASE], "temperature": 0}, "temperature: must be above 0"),
    ({"kind": GENERATE, "sources": [BASE], "prompt_ids": []}, "prompts: none"),
    ({"kind": "rlhf", "sources": [BASE]}, "kind: 'rlhf'"),
])
def test_a_bad_plan_names_its_field(kwargs, field):
    kwargs = {"prompt_ids": [1], **kwargs}
    with pytest.raises(ConfigError, match=field):
        GenerationPlan(**kwargs)


def test_a_damaged_stored_plan_says_so():
    with pytest.raises(ConfigError, match="generation plan: not a valid plan"):
        GenerationPlan.from_dict({"kind": ARENA})


def test_samples_are_paired_by_kind():
    # arena: every two sources once
    assert sample_pairs(ARENA, 3, 1) == [((0, 0), (1, 0)), ((0, 0), (2, 0)), ((1, 0), (2, 0))]
    # candidates of one source: two by two, an odd last sample left out
    assert sample_pairs(GENERATE, 1, 5) == [((0, 0), (0, 1)), ((0, 2), (0, 3))]
    # candidates of two sources: sample i of each
    assert sample_pairs(GENERATE, 2, 2) == [((0, 0), (1, 0)), ((0, 1), (1, 1))]


def test_sides_and_order_are_random_but_seeded():
    pairs = [(i, i + 100) for i in range(400)]
    out = shuffled_pairs(pairs, random.Random(7))
    assert sorted(tuple(sorted(p)) for p in out) == pairs  # the same pairs
    swapped = sum(1 for a, b in out if a > b)
    assert 160 < swapped < 240  # about half have their sides swapped
    assert out != sorted(out)  # and the order is shuffled
    assert shuffled_pairs(pairs, random.Random(7)) == out


def test_batch_seeds_differ_per_batch_and_source():
    seeds = {batch_seed(0, b, s) for b in range(50) for s in range(4)}
    assert len(seeds) == 200
    assert batch_seed(1, 0, 0) != batch_seed(0, 0, 0)
