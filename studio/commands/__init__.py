"""Subcommands of the `studio` CLI, one module per area; each exposes `register(subparsers)`.

Modules here import their heavy dependencies (Qt, torch) inside the command functions only, so
`studio --help` and the store commands stay fast and torch-free.
"""


class CommandError(Exception):
    """A user-facing failure: printed as `studio: error: ...` with exit status 2 (or `code`)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def add_job_arguments(p, doing: str, resumes: str) -> None:
    """--name, --detach and --resume of a command that starts a job (a run the worker carries out): `doing` says
    what it does in the background, `resumes` what a resumed job goes on with."""
    p.add_argument("--name", help="job name (default METHOD-ID)")
    p.add_argument("--detach", action="store_true", help=f"{doing} in a background process; print the job's run id")
    p.add_argument("--resume", type=int, metavar="JOB", help=f"continue a stopped job {resumes}")
