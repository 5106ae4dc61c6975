"""Metric sinks: the project writer and the no-op sink of non-main processes answer the same calls."""

import inspect

import pytest

from studio.train.metrics_writer import MetricSink, MetricsWriter, NoMetrics, metric_sink


@pytest.mark.parametrize("method", ["add", "set_step", "flush"])
def test_both_sinks_take_the_protocols_arguments(method):
    expected = inspect.signature(getattr(MetricSink, method))
    for sink in (MetricsWriter, NoMetrics):
        assert inspect.signature(getattr(sink, method)) == expected, f"{sink.__name__}.{method}"


def test_only_the_main_process_writes_rows(trait_project):
    run_id = trait_project.create_run("dpo", "m", {})
    for main in (False, True):
        sink = metric_sink(trait_project, run_id, main_process=main)
        sink.add(1, {"loss": 0.5})
        sink.set_step(1)
        assert sink.flush(wait=True)
    assert [(s, n, v) for _, s, n, v, _ in trait_project.metrics(run_id)] == [(1, "loss", 0.5)]
    assert trait_project.run(run_id)["step"] == 1
