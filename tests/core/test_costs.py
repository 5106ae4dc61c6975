"""Run cost from a run's row and what its recipe logged."""

from __future__ import annotations

import datetime as dt

import pytest

from studio.core.costs import RunUsage, fmt_cost_field, gpu_count, parse_price, run_cost

T0 = "2026-01-01T10:00:00+00:00"


def at(minutes: float) -> str:
    return (dt.datetime.fromisoformat(T0) + dt.timedelta(minutes=minutes)).isoformat()


def test_gpus_are_read_from_the_device_the_worker_recorded():
    assert gpu_count("cuda:0 (NVIDIA H200)") == 1
    assert gpu_count("cuda:0 (NVIDIA H200) x4") == 4
    assert gpu_count("cpu") == gpu_count("mps") == gpu_count(None) == 0


def test_a_finished_gpu_run_costs_its_training_time_on_its_gpus_at_the_price():
    run = {"status": "done", "created_at": T0, "started_at": at(10), "ended_at": at(70), "active_seconds": 1800.0,
           "device": "cuda:0 (NVIDIA H200) x2"}
    usage = RunUsage(num_tokens=3.6e6, samples_generated=40, samples_stored=8, peak_memory_gib=21.5)
    cost = run_cost(run, usage, price_per_gpu_hour=3.0)
    assert cost.wall_seconds == 70 * 60  # created -> ended, the 10 minutes in the queue included
    assert cost.queue_seconds == 10 * 60
    assert cost.training_seconds == 1800  # the session time, not the hour between start and end
    assert cost.gpus == 2 and cost.gpu_seconds == 3600
    assert cost.money == pytest.approx(3.0 * 1.0)  # one GPU-hour
    assert cost.tokens_per_second == pytest.approx(2000)
    assert cost.samples_generated == 40  # the recipe's counter wins over the stored eval samples
    assert cost.peak_memory_gib == 21.5
    assert run_cost(run, usage).money is None  # no price, no money


def test_a_cpu_run_costs_no_gpu_time_and_old_runs_fall_back_to_what_is_stored():
    run = {"status": "done", "created_at": T0, "started_at": T0, "ended_at": at(2), "active_seconds": 0.0,
           "device": "cpu"}
    cost = run_cost(run, RunUsage(samples_stored=6), price_per_gpu_hour=2.0)
    assert cost.training_seconds == 120  # no active_seconds recorded: start to end
    assert cost.gpu_seconds == 0 and cost.money == 0
    assert cost.num_tokens is None and cost.tokens_per_second is None  # logged no token counter
    assert cost.samples_generated == 6


def test_a_queued_run_has_waited_but_not_trained():
    now = dt.datetime.fromisoformat(at(5))
    cost = run_cost({"status": "queued", "created_at": T0, "started_at": None, "ended_at": None, "device": None},
                    RunUsage(), 1.0, now=now)
    assert cost.wall_seconds == cost.queue_seconds == 300
    assert cost.training_seconds is None and cost.gpu_seconds is None and cost.money is None


def test_prices_are_checked_and_fields_formatted():
    assert parse_price(" 2.5 ") == 2.5 and parse_price("") is None and parse_price(None) is None
    with pytest.raises(ValueError, match=r"price_per_gpu_hour: expected a number such as 2\.5, got 'cheap'"):
        parse_price("cheap")
    with pytest.raises(ValueError, match="at least 0"):
        parse_price("-1")
    assert fmt_cost_field("training_seconds", 125) == "2m 05s"
    assert fmt_cost_field("num_tokens", 2_500_000) == "2.50M"
    assert fmt_cost_field("money", 0.0123) == "0.0123" and fmt_cost_field("money", 12.345) == "12.35"
    assert fmt_cost_field("peak_memory_gib", None) == "–"
