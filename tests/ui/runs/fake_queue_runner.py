"""The queue runner with fake workers (tests/ui/runs/fake_worker.py): `python fake_queue_runner.py PROJECT`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from studio.train.queue import run_queue
from tests.ui.runs.runs_helpers import fake_train_command

if __name__ == "__main__":
    raise SystemExit(run_queue(sys.argv[1], command=lambda folder, run_id: fake_train_command(folder, run_id)))
