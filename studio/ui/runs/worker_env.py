"""Which Python runs the training workers, and how the desktop bundle sets one up.

From a source checkout or a pip install, workers run on the app's own interpreter (`sys.executable`),
which has torch. The desktop bundle freezes only the GUI (PySide6, pyqtgraph, the store: no torch, so it
stays small and opens fast); the first time it launches a run, it needs a Python environment with the
training side. `plan_setup` says what it would install, in words and as commands, for the user to
confirm: a venv in the user's data folder, torch (the CUDA build when an NVIDIA GPU is present, else the
CPU build, a few hundred MB instead of several GB), then this very version of Preference Studio from the
wheel shipped inside the bundle. The same plan runs from the dialog with progress (`WorkerSetupDialog`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ENV_PYTHON = "STUDIO_WORKER_PYTHON"
"""An explicit interpreter for the workers (a conda env, a shared venv...); wins over everything."""
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CHECK_CODE = ("import studio.train.worker, torch, transformers, peft; "
              "print(torch.__version__, torch.cuda.is_available())")


class WorkerEnvMissing(RuntimeError):
    """The bundle has no training environment yet; the message says what setting one up involves."""


def frozen() -> bool:
    """True inside the desktop bundle (PyInstaller sets sys.frozen)."""
    return bool(getattr(sys, "frozen", False))


def data_dir() -> Path:
    """Where the bundle keeps its worker environment (XDG data dir on Linux, Application Support on macOS)."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "preference-studio"


def default_env_dir() -> Path:
    return data_dir() / "worker-env"


def env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def configured_python() -> Path | None:
    """The interpreter named by STUDIO_WORKER_PYTHON, or the one the setup created, if it exists."""
    explicit = os.environ.get(ENV_PYTHON)
    if explicit:
        return Path(explicit)
    candidate = env_python(default_env_dir())
    return candidate if candidate.exists() else None


def worker_python() -> str:
    """The interpreter that runs `python -m studio train/export-model/...` for the GUI.

    Outside the bundle the app's own; inside it the configured environment, or WorkerEnvMissing when
    there is none yet (the GUI then offers the setup)."""
    explicit = configured_python()
    if explicit is not None:
        return str(explicit)
    if not frozen():
        return sys.executable
    raise WorkerEnvMissing(describe(plan_setup()))


def available() -> bool:
    """Whether workers can start without setting anything up first (never asks the user)."""
    try:
        worker_python()
    except WorkerEnvMissing:
        return False
    return True


def check(python: str | Path, timeout: float = 120.0) -> tuple[bool, str]:
    """Whether `python` can run a training worker: (ok, torch version and CUDA, or the error)."""
    try:
        res = subprocess.run([str(python), "-c", CHECK_CODE], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{python}: cannot run ({e})"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"{python}: cannot import the training side ({last})"
    version, cuda = res.stdout.split()
    return True, f"torch {version}, {'CUDA available' if cuda == 'True' else 'CPU only'}"


def has_nvidia_gpu() -> bool:
    """An NVIDIA GPU with a working driver (nvidia-smi answers), without importing torch."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def bundled_wheel() -> Path | None:
    """The studio wheel the bundle ships (installed into the worker environment), if any."""
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[3]))
    wheels = sorted((base / "wheels").glob("preference_studio-*.whl")) if (base / "wheels").is_dir() else []
    return wheels[-1] if wheels else None


def base_python() -> str | None:
    """A system Python 3.11+ to create the environment with (the bundle's own cannot: it is frozen)."""
    for name in ("python3.13", "python3.12", "python3.11", "python3"):
        path = shutil.which(name)
        if not path:
            continue
        try:
            res = subprocess.run([path, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if res.stdout.strip() == "True":
            return path
    return None


@dataclass
class SetupPlan:
    """What setting up the worker environment does: steps in words, each with its command."""

    env_dir: Path
    gpu: bool
    steps: list[tuple[str, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    download: str = ""


def plan_setup(env_dir: Path | None = None, gpu: bool | None = None, python: str | None = None,
               wheel: Path | None = None) -> SetupPlan:
    """The steps to create a worker environment at `env_dir` (defaults: the user's data folder, an
    NVIDIA GPU if nvidia-smi answers, a system Python 3.11+, the bundle's wheel)."""
    env_dir = env_dir or default_env_dir()
    gpu = has_nvidia_gpu() if gpu is None else gpu
    python = python if python is not None else base_python()
    wheel = wheel if wheel is not None else bundled_wheel()
    plan = SetupPlan(env_dir, gpu)
    if python is None:
        plan.problems.append("no Python 3.11 or newer found on PATH: install one (python.org, or your package "
                             "manager: e.g. `sudo apt install python3 python3-venv`), then try again")
    if wheel is None:
        plan.problems.append("this bundle carries no Preference Studio wheel to install: rebuild it with "
                             "packaging/bundle.py, or set STUDIO_WORKER_PYTHON to a Python that has "
                             "preference-studio installed")
    pip = [str(env_python(env_dir)), "-m", "pip", "install", "--disable-pip-version-check"]
    torch = [*pip, "torch"] if gpu else [*pip, "torch", "--index-url", TORCH_CPU_INDEX]
    plan.download = ("about 2.5 GB: torch with CUDA for your NVIDIA GPU" if gpu else
                     "about 250 MB: torch for the CPU (no NVIDIA GPU found)") + \
        ", plus transformers, peft and accelerate (about 100 MB)"
    plan.steps = [
        (f"create a Python environment in {env_dir}", [python or "python3", "-m", "venv", str(env_dir)]),
        ("install torch (" + ("CUDA build" if gpu else "CPU build") + ")", torch),
        ("install Preference Studio's training side", [*pip, str(wheel or "preference-studio")]),
        ("check that a worker can start", [str(env_python(env_dir)), "-c", CHECK_CODE]),
    ]
    return plan


def describe(plan: SetupPlan) -> str:
    """The plan in words, for the confirmation dialog and for WorkerEnvMissing."""
    lines = ["Training runs in a separate Python environment with torch, which the desktop app does not "
             "carry (it would make the app several GB). Setting it up once will:"]
    lines += [f"  {i}. {what}" for i, (what, _) in enumerate(plan.steps, 1)]
    lines.append(f"Download: {plan.download}.")
    lines.append(f"Or point {ENV_PYTHON} at a Python that already has preference-studio and torch.")
    if plan.problems:
        lines.append("Before that: " + "; ".join(plan.problems))
    return "\n".join(lines)
