"""The run-health rules on crafted series, without Qt or a project: when each warns, and its numbers."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core import health as H
from studio.core import metrics as M
from studio.core.series import RunSeries

EVAL_ACC = M.eval_name(M.REWARDS_ACCURACIES)


def series_of(rows: list[tuple]) -> RunSeries:
    """A RunSeries of (step, name, value) rows, logged one second apart as the worker logs them."""
    rs = RunSeries()
    rs.add_rows([(i, step, value, float(i), name) for i, (step, name, value) in enumerate(rows, 1)])
    return rs


def noisy_run(seed: int, steps: int = 400, kl_end: float | None = 0.2, logp_trend: float = 0.0) -> list[tuple]:
    """Per-step log-probs as a tiny model logs them: summed over responses whose lengths vary from
    batch to batch (sd 150 nats), plus per-token log-ratios to the reference ending at kl_end."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in range(1, steps + 1):
        p = step / steps
        rows += [(step, M.LOGPS_CHOSEN, -600 + logp_trend * p + rng.normal(0, 150)),
                 (step, M.LOGPS_REJECTED, -300 + 2 * logp_trend * p + rng.normal(0, 150))]
        if kl_end is not None:
            rows += [(step, M.LOGRATIO_CHOSEN, kl_end * p + rng.normal(0, 0.02)),
                     (step, M.LOGRATIO_REJECTED, -abs(kl_end) * 2 * p + rng.normal(0, 0.02))]
    return rows


def values(rows: list[tuple], name: str) -> np.ndarray:
    return np.array([v for _s, n, v in rows if n == name])


def evaluated_run(train_acc: float, eval_acc: tuple[float, float], lengths: tuple, distinct: tuple) -> list[tuple]:
    """40 steps at a constant train accuracy, evaluated at steps 0 (the reference), 20 and 40."""
    rows = [(s, M.REWARDS_ACCURACIES, train_acc) for s in range(1, 41)]
    for (step, acc), n, d in zip(((0, 0.5), (20, eval_acc[0]), (40, eval_acc[1])), lengths, distinct, strict=True):
        rows += [(step, EVAL_ACC, acc), (step, M.EVAL_SAMPLE_LENGTH, n), (step, M.EVAL_DISTINCT_2, d)]
    return rows


HEALTHY = evaluated_run(0.8, (0.7, 0.72), (40, 44, 46), (0.8, 0.78, 0.75))


def test_a_healthy_run_gets_no_warning():
    assert H.run_warnings(series_of(HEALTHY)) == []
    assert H.run_warnings(series_of(noisy_run(0) + [(s, M.LOSS, 0.69 - s / 1000) for s in range(1, 401)])) == []
    assert H.run_warnings(RunSeries()) == []  # nothing logged yet


def test_likelihood_displacement_warns_on_a_real_fall_of_kl_chosen_with_its_numbers():
    for seed in range(10):  # chosen more likely than under the reference, log-probs noisy but flat
        assert H.likelihood_displacement(series_of(noisy_run(seed))) is None, seed
    rows = noisy_run(0, kl_end=-0.1)
    warning = H.likelihood_displacement(series_of(rows))
    assert warning.startswith("Likelihood displacement") and "less likely than under the reference" in warning
    window = 400 // 10  # the last 10% of steps
    chosen = values(rows, M.LOGRATIO_CHOSEN)[-window:].mean()
    rejected = values(rows, M.LOGRATIO_REJECTED)[-window:].mean()
    assert f"log-ratio {chosen:+.3f} per token over the last {window} steps (rejected: {rejected:+.3f})" in warning
    assert H.run_warnings(series_of(rows)) == [warning]
    # below -0.02 per token, and by more than two standard errors: steady, noisy, too slight
    steady = [(s, M.LOGRATIO_CHOSEN, -0.03) for s in range(1, 401)]
    noisy = [(s, M.LOGRATIO_CHOSEN, -0.03 + 0.5 * (-1) ** s) for s in range(1, 401)]
    slight = [(s, M.LOGRATIO_CHOSEN, -0.01) for s in range(1, 401)]
    assert "log-ratio -0.030 per token" in H.likelihood_displacement(series_of(steady))
    assert H.likelihood_displacement(series_of(noisy)) is None and H.likelihood_displacement(series_of(slight)) is None


def test_likelihood_displacement_without_kl_needs_both_log_probs_to_fall_beyond_their_noise():
    # older runs: flat noisy log-probs differ between their first and last 10% by far more than 0.5 nats
    for seed in range(10):
        assert H.likelihood_displacement(series_of(noisy_run(seed, kl_end=None))) is None, seed
    rows = noisy_run(0, kl_end=None, logp_trend=-300)
    fell = H.likelihood_displacement(series_of(rows))
    c, r = values(rows, M.LOGPS_CHOSEN), values(rows, M.LOGPS_REJECTED)
    assert fell.startswith(f"Likelihood displacement: the chosen responses' log-prob fell too "
                           f"({c[:40].mean():.1f} → {c[-40:].mean():.1f}), not only the rejected ones' "
                           f"({r[:40].mean():.1f} → {r[-40:].mean():.1f}).")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_divergence_names_the_first_step_where_the_loss_stopped_being_a_number(bad):
    rows = [(s, M.LOSS, 0.69 - s / 100) for s in range(1, 20)] + [(20, M.LOSS, bad), (21, M.LOSS, 0.1)]
    rs = series_of(rows)
    assert H.divergence(rs).startswith(f"The loss became {bad} at step 20: training diverged.")
    assert H.run_warnings(rs) == [H.divergence(rs)]
    assert H.divergence(series_of(rows[:19])) is None
    assert H.divergence(series_of([(s, M.LOSS, None if s == 5 else 0.5) for s in range(1, 9)])).startswith(
        "The loss became nan at step 5")  # a value the worker could not log is stored as NULL


def test_overfitting_when_train_accuracy_is_high_and_eval_trails_it():
    memorised = series_of(evaluated_run(1.0, (0.6, 0.55), (40, 41, 40), (0.8, 0.8, 0.8)))
    warning = H.overfitting(memorised)
    assert warning.startswith("Overfitting: train accuracy 100% over the last steps, but 55% on the eval "
                              "split at step 40")
    assert H.run_warnings(memorised) == [warning]
    # a gap under 25 points, or train accuracy under 95%, is not memorising
    assert H.overfitting(series_of(evaluated_run(1.0, (0.8, 0.76), (40, 40, 40), (0.8, 0.8, 0.8)))) is None
    assert H.overfitting(series_of(evaluated_run(0.9, (0.6, 0.5), (40, 40, 40), (0.8, 0.8, 0.8)))) is None
    assert H.overfitting(series_of(HEALTHY)) is None


@pytest.mark.parametrize(("rule", "fires", "message", "quiet"), [
    (H.length_drift, ((40, 60, 90), (0.8, 0.8, 0.8)),  # 1.5x the first length or more
     "Length drift: sampled answers are 2.2x as long as at the start (40 → 90 tokens at step 40).",
     ((40, 50, 58), (0.8, 0.8, 0.8))),
    (H.diversity_collapse, ((40, 40, 40), (0.8, 0.5, 0.3)),  # distinct-2 under 60% of its first value
     "Samples are getting repetitive: distinct-2 0.80 → 0.30 by step 40 (mode collapse).",
     ((40, 40, 40), (0.8, 0.6, 0.5))),
])
def test_sample_rules_compare_the_latest_evaluation_with_the_first(rule, fires, message, quiet):
    rs = series_of(evaluated_run(0.8, (0.7, 0.7), *fires))
    assert rule(rs).startswith(message) and H.run_warnings(rs) == [rule(rs)]
    assert rule(series_of(evaluated_run(0.8, (0.7, 0.7), *quiet))) is None


def test_headline_is_the_first_sentence_with_its_numbers():
    rs = series_of(evaluated_run(1.0, (0.6, 0.55), (40, 41, 40), (0.8, 0.8, 0.8)))
    (warning,) = H.run_warnings(rs)
    assert H.headline(warning) == ("Overfitting: train accuracy 100% over the last steps, but 55% on the eval "
                                   "split at step 40: the model is memorising the training pairs.")
    assert H.headline("No second sentence") == "No second sentence"


def test_the_rules_read_only_the_health_metrics():
    """The CLI reads only HEALTH_METRICS rows of a run: every rule must give the same verdict on them."""
    noise = [(s, name, 0.5) for s in range(1, 41) for name in M.TRAIN_METRICS if name not in H.HEALTH_METRICS]
    runs = [noisy_run(0, kl_end=-0.1), noisy_run(0, kl_end=None, logp_trend=-300),
            evaluated_run(1.0, (0.6, 0.55), (40, 60, 90), (0.8, 0.5, 0.3)),
            [(s, M.LOSS, float("nan") if s == 30 else 0.5) for s in range(1, 41)]]
    for rows in runs:
        full = H.run_warnings(series_of(rows + noise))
        assert full and H.run_warnings(series_of([r for r in rows + noise if r[1] in H.HEALTH_METRICS])) == full


def test_most_samples_at_the_cap_warns_with_the_share_the_step_and_the_cap():
    rows = [(0, M.EVAL_SAMPLE_HIT_CAP, 0.2), (0, M.EVAL_SAMPLE_CAP, 128.0),
            (20, M.EVAL_SAMPLE_HIT_CAP, 0.8), (20, M.EVAL_SAMPLE_CAP, 128.0)]
    warning = H.samples_at_cap(series_of(rows))
    assert H.headline(warning) == ("Most samples hit the length cap: 80% of the samples at step 20 stopped at "
                                   "the 128-token cap instead of ending, so sample length cannot show drift.")
    assert "Raise sample_max_new_tokens" in warning
    assert H.samples_at_cap(series_of(rows[:2])) is None  # 20%: most samples end on their own
    assert H.samples_at_cap(series_of([*rows[:2], (20, M.EVAL_SAMPLE_HIT_CAP, 0.5)])) is None  # half is not most
    assert H.run_findings(series_of(rows)) == {"samples_at_cap": warning}


def test_collapse_also_warns_when_the_samples_of_each_prompt_become_the_same_text():
    def run(similarity: tuple[float, float], distinct: tuple[float, float]) -> list[tuple]:
        return [(0, M.EVAL_SELF_SIMILARITY, similarity[0]), (0, M.EVAL_DISTINCT_2, distinct[0]),
                (0, M.EVAL_REPETITION, 0.0), (30, M.EVAL_SELF_SIMILARITY, similarity[1]),
                (30, M.EVAL_DISTINCT_2, distinct[1]), (30, M.EVAL_REPETITION, 0.25)]

    # distinct-2 across prompts holds (0.9 -> 0.7), but each prompt's samples now share 80% of their bigrams
    warning = H.diversity_collapse(series_of(run((0.1, 0.8), (0.9, 0.7))))
    assert H.headline(warning) == ("Samples are getting repetitive: distinct-2 0.90 → 0.70, self-similarity "
                                   "0.10 → 0.80, repetition 0.00 → 0.25 by step 30 (mode collapse).")
    assert H.diversity_collapse(series_of(run((0.1, 0.35), (0.9, 0.7)))) is None  # rose 0.25: within noise
    assert H.diversity_collapse(series_of(run((0.3, 0.45), (0.9, 0.7)))) is None  # under 0.5: still varied
    assert H.diversity_collapse(series_of(run((0.1, 0.2), (0.9, 0.5)))).startswith(  # distinct-2 fell alone
        "Samples are getting repetitive: distinct-2 0.90 → 0.50")


def test_every_rule_is_named_and_run_warnings_lists_the_findings_in_order():
    assert [r.name for r in H.RULES] == ["divergence", "likelihood_displacement", "overfitting", "length_drift",
                                         "samples_at_cap", "diversity_collapse"]
    rs = series_of(evaluated_run(1.0, (0.6, 0.55), (40, 60, 90), (0.8, 0.5, 0.3)))
    found = H.run_findings(rs)
    assert list(found) == ["overfitting", "length_drift", "diversity_collapse"]
    assert H.run_warnings(rs) == list(found.values())
