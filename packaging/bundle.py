"""Build the desktop bundle: the GUI frozen with PyInstaller, packed as a Debian package.

    python packaging/bundle.py --check     validate the inputs (icons, desktop entry, metainfo), build nothing
    python packaging/bundle.py             build build/bundle/dist/preference-studio/ and the .deb, then print
                                           their sizes and the start-to-first-paint time against the venv

Only the GUI is frozen (PySide6, pyqtgraph, numpy, the store): torch, transformers, peft and accelerate are
left out, so the bundle stays small and opens fast. The first run launched from the bundle sets up a
Python environment for the training workers (studio/ui/runs/worker_env.py), installing this version of
Preference Studio from the wheel the bundle carries. The .deb installs to /opt/preference-studio with a
`preference-studio` command, the desktop entry, the icons and the AppStream metainfo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"
APP_ID = "io.github.preference_studio.PreferenceStudio"
NAME = "preference-studio"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
# The GUI's own dependencies (pyproject's list without the training side), pinned like pyproject.
GUI_REQUIREMENTS = ("PySide6-Essentials>=6.6,<6.12", "pyqtgraph>=0.13.7", "sqlite-utils>=4", "numpy>=1.26")
TRAINING_MODULES = ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "pandas", "studio.train",
                    "studio.bench")
DESKTOP_KEYS = ("Type", "Name", "Exec", "Icon", "Categories")
METAINFO_TAGS = ("id", "metadata_license", "project_license", "name", "summary", "description", "launchable",
                 "screenshots", "releases")


# ---------------------------------------------------------------------------------------------- checks


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (no image library needed)."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", head[16:24])


def check_icons(folder: Path) -> list[str]:
    problems = []
    if not (folder / "preference-studio.svg").is_file():
        problems.append(f"{folder / 'preference-studio.svg'}: missing (the scalable icon)")
    for size in ICON_SIZES:
        path = folder / f"preference-studio-{size}.png"
        if not path.is_file():
            problems.append(f"{path}: missing (run packaging/make_icons.py)")
            continue
        try:
            got = png_size(path)
        except ValueError as e:
            problems.append(f"{path}: {e}")
            continue
        if got != (size, size):
            problems.append(f"{path}: is {got[0]}x{got[1]}, expected {size}x{size}")
    return problems


def parse_desktop_entry(text: str) -> dict[str, str]:
    entries, group = {}, None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            group = line
            continue
        if "=" not in line:
            raise ValueError(f"line {n}: expected key=value, got {raw!r}")
        if group == "[Desktop Entry]":
            key, value = line.split("=", 1)
            entries[key.strip()] = value.strip()
    return entries


def check_desktop_entry(path: Path) -> list[str]:
    """The keys a launcher needs, and desktop-file-validate's verdict when it is installed."""
    if not path.is_file():
        return [f"{path}: missing"]
    problems = []
    try:
        entry = parse_desktop_entry(path.read_text(encoding="utf-8"))
    except ValueError as e:
        return [f"{path}: {e}"]
    problems += [f"{path}: no {key}= in [Desktop Entry]" for key in DESKTOP_KEYS if key not in entry]
    if entry.get("Icon") not in (None, APP_ID):
        problems.append(f"{path}: Icon={entry['Icon']}, expected {APP_ID} (the name the icons are installed as)")
    if entry.get("Exec", "").split(" ")[0] not in ("", NAME):
        problems.append(f"{path}: Exec runs {entry['Exec'].split(' ')[0]}, expected {NAME}")
    validator = shutil.which("desktop-file-validate")
    if validator:
        res = subprocess.run([validator, str(path)], capture_output=True, text=True)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if "error:" in ln]
        if res.returncode != 0 or errors:
            problems += errors or [f"{path}: desktop-file-validate exited {res.returncode}"]
    return problems


def check_metainfo(path: Path) -> list[str]:
    if not path.is_file():
        return [f"{path}: missing"]
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        return [f"{path}: not well-formed XML ({e})"]
    problems = []
    if root.tag != "component" or root.get("type") != "desktop-application":
        problems.append(f"{path}: the root must be <component type=\"desktop-application\">")
    problems += [f"{path}: no <{tag}>" for tag in METAINFO_TAGS if root.find(tag) is None]
    if root.findtext("id") not in (None, APP_ID):
        problems.append(f"{path}: <id> is {root.findtext('id')}, expected {APP_ID}")
    launchable = root.findtext("launchable")
    if launchable is not None and launchable != f"{APP_ID}.desktop":
        problems.append(f"{path}: <launchable> names {launchable}, expected {APP_ID}.desktop")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    releases = [r.get("version") for r in root.iter("release")]
    if version not in releases:
        problems.append(f"{path}: no <release version=\"{version}\"> for this version (pyproject.toml)")
    validator = shutil.which("appstreamcli")
    if validator:
        res = subprocess.run([validator, "validate", "--no-net", str(path)], capture_output=True, text=True)
        if res.returncode != 0:
            problems.append(f"{path}: appstreamcli validate failed:\n{res.stdout}{res.stderr}")
    return problems


def check_inputs(resources: Path = RESOURCES) -> list[str]:
    problems = check_icons(resources / "icons")
    problems += check_desktop_entry(resources / f"{APP_ID}.desktop")
    problems += check_metainfo(resources / f"{APP_ID}.metainfo.xml")
    shots = sorted(resources.glob("screenshot-*.png"))
    if not shots:
        problems.append(f"{resources}: no screenshot-*.png for stores")
    if not (ROOT / "packaging" / "entry.py").is_file():
        problems.append(f"{ROOT / 'packaging' / 'entry.py'}: missing (the bundle's entry point)")
    return problems


# ---------------------------------------------------------------------------------------------- build


def run(cmd: list[str], **kw) -> None:
    print("$", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, check=True, **kw)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def build(out: Path, deb: bool = True) -> tuple[Path, Path | None]:
    out.mkdir(parents=True, exist_ok=True)
    wheels = out / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)])
    venv = out / "venv"
    py = venv / "bin" / "python"
    if not py.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *GUI_REQUIREMENTS,
         "pyinstaller"])
    wheel = next(wheels.glob("preference_studio-*.whl"))
    run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)])
    excludes = [a for m in TRAINING_MODULES for a in ("--exclude-module", m)]
    run([str(py), "-m", "PyInstaller", "--noconfirm", "--clean", "--onedir", "--windowed", "--name", NAME,
         "--distpath", str(out / "dist"), "--workpath", str(out / "work"), "--specpath", str(out),
         "--collect-data", "studio", "--add-data", f"{wheels}{os.pathsep}wheels",
         # the CLI imports its command modules and the GUI its views by name, which PyInstaller cannot see
         *(a for pkg in ("studio.commands", "studio.ui", "studio.store", "studio.core")
           for a in ("--collect-submodules", pkg)),
         "--icon", str(RESOURCES / "icons" / "preference-studio-256.png"), *excludes,
         str(ROOT / "packaging" / "entry.py")])
    app = out / "dist" / NAME
    return app, (make_deb(app, out) if deb else None)


def make_deb(app: Path, out: Path) -> Path:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    root = out / "deb"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(app, root / "opt" / NAME, symlinks=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / NAME).symlink_to(f"/opt/{NAME}/{NAME}")
    apps = root / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    shutil.copy(RESOURCES / f"{APP_ID}.desktop", apps)
    meta = root / "usr" / "share" / "metainfo"
    meta.mkdir(parents=True)
    shutil.copy(RESOURCES / f"{APP_ID}.metainfo.xml", meta)
    for size in ICON_SIZES:
        d = root / "usr" / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        d.mkdir(parents=True)
        shutil.copy(RESOURCES / "icons" / f"preference-studio-{size}.png", d / f"{APP_ID}.png")
    scalable = root / "usr" / "share" / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True)
    shutil.copy(RESOURCES / "icons" / "preference-studio.svg", scalable / f"{APP_ID}.svg")
    (root / "DEBIAN").mkdir()
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip() or "amd64"
    (root / "DEBIAN" / "control").write_text(
        f"Package: {NAME}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Preference Studio developers\n"
        f"Installed-Size: {folder_size(root) // 1024}\nDepends: libegl1, libgl1, libxkbcommon0, libfontconfig1, "
        "libdbus-1-3, libxcb-cursor0, libxkbcommon-x11-0, libxcb-icccm4, libxcb-keysyms1\n"
        "Recommends: python3 (>= 3.11), python3-venv\nSection: science\nPriority: optional\n"
        "Description: label preferences and fine-tune local language models on them\n"
        " The GUI of Preference Studio. Training runs in a Python environment the app sets up on first use.\n")
    deb = out / f"{NAME}_{version}_{arch}.deb"
    # gzip: xz took ten minutes on a busy 2-core machine for a few MB less, and every dpkg reads gzip
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)])
    return deb


# ---------------------------------------------------------------------------------------------- figures


def time_first_paint(cmd: list[str], project: Path, repeat: int) -> float:
    """Median seconds from process start to the window's first event loop turn (STUDIO_EXIT_AFTER_PAINT)."""
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
           "STUDIO_EXIT_AFTER_PAINT": "1", "STUDIO_SETTINGS": str(Path(tempfile.gettempdir()) / "bundle.ini")}
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen([*cmd, "gui", str(project)], stdout=subprocess.PIPE, text=True, env=env)
        painted = None
        for line in proc.stdout:
            if line.startswith("PAINTED") and painted is None:
                painted = time.perf_counter() - t0
        proc.wait()
        if painted is None:
            raise SystemExit(f"{cmd[0]}: exited {proc.returncode} before painting its window")
        times.append(painted)
    return statistics.median(times)


def report(app: Path, deb: Path | None, repeat: int) -> None:
    print(f"bundle folder {app}: {folder_size(app) / 2**20:.0f} MiB")
    if deb is not None:
        print(f"installable package {deb}: {deb.stat().st_size / 2**20:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "demo"
        subprocess.run([sys.executable, "-m", "studio", "demo", str(project), "--no-model"],
                       check=True, capture_output=True)
        venv = time_first_paint([sys.executable, "-m", "studio"], project, repeat)
        bundled = time_first_paint([str(app / NAME)], project, repeat)
    print(f"start to first paint (median of {repeat}, offscreen, demo project):")
    print(f"  studio gui from the venv   {venv * 1000:6.0f} ms")
    print(f"  the bundle                 {bundled * 1000:6.0f} ms   ratio {bundled / venv:.2f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="validate the inputs only (no build)")
    ap.add_argument("--resources", type=Path, default=RESOURCES, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bundle", help="build folder")
    ap.add_argument("--no-deb", action="store_true", help="stop after the PyInstaller folder")
    ap.add_argument("--starts", type=int, default=5, help="starts timed on each side")
    args = ap.parse_args(argv)
    problems = check_inputs(args.resources)
    for p in problems:
        print(f"bundle: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"bundle inputs ok: {len(ICON_SIZES)} icons + SVG, desktop entry, metainfo, screenshot")
    if args.check:
        return 0
    app, deb = build(args.out, deb=not args.no_deb)
    report(app, deb, args.starts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
