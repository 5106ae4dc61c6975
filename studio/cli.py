"""The `studio` command: opens the GUI by default; subcommands do headless work."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from studio import __version__
from studio.commands import CommandError

# Each module registers its subcommands; they import Qt or torch only inside the command functions.
COMMAND_MODULES = ("studio.commands.project", "studio.commands.train", "studio.commands.generate",
                   "studio.commands.compare", "studio.commands.measure",
                   "studio.commands.gui", "studio.commands.bench")


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="studio",
        description="Preference Studio: label pairwise preferences and fine-tune local models on them. "
                    "Without a subcommand, opens the app.")
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["gui", *argv]
    # Building every subcommand's parser costs ~30 ms; opening the app needs only its own, and the
    # window's start time is what users feel.
    parser = build_parser(("studio.commands.gui",) if argv[0] == "gui" else COMMAND_MODULES)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from studio.core.errors import ConfigError
    from studio.store import ProjectError

    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `studio stats ... | head` closed the pipe: not an error; keep Python from complaining at exit
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CommandError as e:
        print(f"studio: error: {e}", file=sys.stderr)
        return e.code
    except (ProjectError, ConfigError) as e:
        print(f"studio: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
