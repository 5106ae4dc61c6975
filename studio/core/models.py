"""Finding models on this machine without importing transformers: local folders and the HF hub cache."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


class ModelNotFound(LookupError):
    """No model by that name here; the message lists where we looked."""


@dataclass(frozen=True)
class LocalModel:
    name: str
    """A hub id (`org/name`) for cached models, the folder path for local folders."""
    path: Path
    """The folder holding config.json (for the cache: the newest snapshot)."""
    architecture: str | None
    model_type: str | None
    size_bytes: int
    parameters: int | None
    """Estimated from the weight files' sizes and dtype when not stated."""


def hf_cache_dir() -> Path:
    """The hub cache folder, honouring HF_HUB_CACHE and HF_HOME like huggingface_hub does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def _folder_size(folder: Path) -> int:
    total = 0
    for f in folder.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size  # follows snapshot symlinks to blobs
        except OSError:
            pass
    return total


def describe(folder: Path, name: str | None = None) -> LocalModel | None:
    """Describe a model folder (one holding config.json), or None if it is not one."""
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        return None
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        cfg = {}
    archs = cfg.get("architectures") or [None]
    size = _folder_size(folder)
    weights = sum(f.stat().st_size for f in folder.glob("*.safetensors")) + sum(
        f.stat().st_size for f in folder.glob("*.bin"))
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
    bytes_per = 2 if ("16" in dtype) else 4
    params = weights // bytes_per if weights else None
    return LocalModel(name or str(folder), folder, archs[0], cfg.get("model_type"), size, params)


def cached_models(cache: Path | None = None) -> list[LocalModel]:
    """Models in the hub cache (`models--org--name/snapshots/<rev>/config.json`), newest snapshot each."""
    cache = cache or hf_cache_dir()
    out = []
    if not cache.is_dir():
        return out
    for repo in sorted(cache.glob("models--*")):
        snaps = [s for s in (repo / "snapshots").glob("*") if (s / "config.json").is_file()]
        if not snaps:
            continue
        newest = max(snaps, key=lambda s: s.stat().st_mtime)
        hub_id = repo.name[len("models--"):].replace("--", "/")
        m = describe(newest, hub_id)
        if m:
            out.append(m)
    return out


def find_local_models(search_dirs: list[Path] | None = None, cache: Path | None = None) -> list[LocalModel]:
    """Cached hub models plus model folders directly inside `search_dirs` (for the model picker)."""
    found = cached_models(cache)
    for d in search_dirs or []:
        d = Path(d)
        if not d.is_dir():
            continue
        candidates = [d, *sorted(p for p in d.iterdir() if p.is_dir())]
        for c in candidates:
            m = describe(c)
            if m:
                found.append(m)
    return found


def resolve_model(name: str | Path, cache: Path | None = None) -> Path:
    """A local folder, or a hub id found in the local cache; raises ModelNotFound naming where it looked."""
    p = Path(name).expanduser()
    if p.is_dir():
        if (p / "config.json").is_file():
            return p
        raise ModelNotFound(f"{p}: is a folder but holds no config.json, so it is not a model folder")
    cache = cache or hf_cache_dir()
    repo = cache / ("models--" + str(name).replace("/", "--"))
    snaps = [s for s in (repo / "snapshots").glob("*") if (s / "config.json").is_file()] if repo.is_dir() else []
    if snaps:
        ref = repo / "refs" / "main"
        if ref.is_file():
            main = repo / "snapshots" / ref.read_text().strip()
            if (main / "config.json").is_file():
                return main
        return max(snaps, key=lambda s: s.stat().st_mtime)
    looks_like_path = str(name).startswith((".", "/", "~")) or str(name).count("/") > 1  # hub ids: org/name
    if looks_like_path:
        raise ModelNotFound(f"model folder {p.resolve()} not found; pass the path of a local model folder, "
                            "or a hub id (org/name) already in the Hugging Face cache")
    raise ModelNotFound(
        f"model {name!r} not found: it is not a folder ({p.resolve()}) and not in the Hugging Face cache "
        f"({repo}). Download it once with `huggingface-cli download {name}` on a machine with internet, "
        f"or pass the path of a local model folder.")
