"""The desktop bundle's entry point: the `studio` command, which opens the window without arguments.

Training commands are not frozen into the bundle (no torch): the app runs them in its worker environment
(studio/ui/runs/worker_env.py)."""

import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main())
