"""Reading a run's metric rows in chunks, all of them or only some metrics, into grouped series."""

from __future__ import annotations

from itertools import chain

from studio.store.run_metrics import metric_chunks, read_run_series


def test_chunks_are_every_row_in_order_and_only_the_named_metrics_when_asked(project):
    run_id = project.create_run("dpo", "m", {})
    other = project.create_run("dpo", "m", {})
    project.log_metrics(run_id, [(s, name, s * 1.0) for s in range(1, 101) for name in ("loss", "grad_norm", "kl")])
    project.log_metrics(other, [(1, "loss", 9.0)])  # another run's rows are never read
    everything = project.metrics_since(run_id)
    chunks = list(metric_chunks(project, run_id, chunk_rows=70))
    assert [len(c) for c in chunks] == [70, 70, 70, 70, 20] and list(chain(*chunks)) == everything
    named = list(chain(*metric_chunks(project, run_id, ("loss", "kl"), chunk_rows=70)))
    assert named == [r for r in everything if r[4] in ("loss", "kl")]
    assert list(metric_chunks(project, run_id, chunk_rows=300)) == [everything]  # exactly one full chunk

    rs = read_run_series(project, run_id, ("kl",))
    assert set(rs.series) == {"kl"} and rs.series["kl"].y.tolist() == [float(s) for s in range(1, 101)]
    assert read_run_series(project, other).series["loss"].y.tolist() == [9.0]
