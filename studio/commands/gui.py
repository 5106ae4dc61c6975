"""`studio gui` and `studio screenshot`: the desktop app and looking at it headless.

Qt is imported inside the command functions only: `studio` loads every command module at start.
User errors are raised as CommandError or ProjectError (printed by the CLI with exit status 2).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="Open the app (what `studio` does without a subcommand).",
                       description="Open the desktop app, on PROJECT when given (else the start page with "
                                   "recent projects).")
    p.add_argument("project", nargs="?", help="project folder to open")
    p.add_argument("--annotator", help="who is labeling (default: the last name used here, else the OS user)")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("screenshot", help="Render a view of a project offscreen to a PNG.",
                       description="Open PROJECT offscreen at the given size, show a view (label, data, or a "
                                   "Runs view such as runs, monitor, compare) and save it as a PNG.")
    p.add_argument("project", help="project folder")
    p.add_argument("--view", required=True, help="label, data, review, welcome, settings, launch, or a view the "
                                                 "Runs section registers (runs, monitor, compare, arena)")
    # README and the usage line say `--run ID ...`: take `--run 1 2` as well as `--run 1 --run 2`
    p.add_argument("--run", type=int, action="extend", nargs="+", dest="runs", metavar="ID", default=[],
                   help="run id(s) for run views: --run 1 2 (or --run 1 --run 2) for compare")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--size", default="1280x800", help="window size WIDTHxHEIGHT (default 1280x800)")
    p.add_argument("--annotator", help="annotator whose queue the label view shows")
    p.add_argument("--theme", default="light", choices=("light", "dark"), help="colour theme (default light)")
    p.add_argument("--pair", type=int, help="label and data views: the pair to show")
    p.add_argument("--loss", help="launch view: the loss type to show the dialog with (e.g. simpo)")
    p.set_defaults(func=cmd_screenshot)


def _project_error(message: str) -> Exception:
    from studio.commands import CommandError

    return CommandError(message)


def cmd_gui(args: argparse.Namespace) -> int:
    if args.project is not None:
        from studio.store import Project

        Project.open(args.project).close()  # a clear error on the terminal before any window opens
    from studio.ui.app import run_gui

    return run_gui(args.project, annotator=args.annotator)


def cmd_screenshot(args: argparse.Namespace) -> int:
    from studio.store import Project

    Project.open(args.project).close()
    from studio.ui import screenshot

    try:
        size = screenshot.parse_size(args.size)
        out = screenshot.take_screenshot(args.project, args.view, args.out, size, args, theme=args.theme)
    except (ValueError, OSError) as e:
        raise _project_error(str(e)) from None
    print(f"wrote {out} ({size[0]}x{size[1]}, view {args.view})")
    return 0
