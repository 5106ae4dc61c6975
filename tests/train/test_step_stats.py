"""Step statistics: each metric is its sum over its own count, across micro-batches, keyed by name."""

import pytest
import torch

from studio.train.step_stats import StepStats


def test_each_metric_is_its_sum_over_its_count_across_micro_batches():
    stats = StepStats(torch.device("cpu"), ["loss", "kl", "accuracy", "nll"])
    # counts known on the host (micro-batches, pairs) and on the device (tokens) mix freely
    stats.add({"loss": (torch.tensor(0.5), 1), "kl": (torch.tensor(3.0), torch.tensor(6)),
               "accuracy": (torch.tensor(1.0), 2)}, tokens=torch.tensor(10))
    stats.add({"loss": (torch.tensor(1.5), 1), "kl": (torch.tensor(1.0), torch.tensor(2)),
               "accuracy": (torch.tensor(2.0), 2)}, tokens=torch.tensor(5))
    # 'nll' was never added: left out rather than reported as 0
    assert stats.read() == {"loss": 1.0, "kl": 0.5, "accuracy": 0.75}
    assert stats.tokens == 15


def test_a_statistic_it_does_not_keep_is_refused_by_name():
    stats = StepStats(torch.device("cpu"), ["loss"])
    with pytest.raises(KeyError, match="logratio/chosen"):
        stats.add({"logratio/chosen": (torch.tensor(1.0), 1)})
