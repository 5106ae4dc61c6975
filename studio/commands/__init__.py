"""Subcommands of the `studio` CLI, one module per area; each exposes `register(subparsers)`.

Modules here import their heavy dependencies (Qt, torch) inside the command functions only, so
`studio --help` and the store commands stay fast and torch-free.
"""
