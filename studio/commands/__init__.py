"""Subcommands of the `studio` CLI, one module per area; each exposes `register(subparsers)`.

Modules here import their heavy dependencies (Qt, torch) inside the command functions only, so
`studio --help` and the store commands stay fast and torch-free.
"""


class CommandError(Exception):
    """A user-facing failure: printed as `studio: error: ...` with exit status 2 (or `code`)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
