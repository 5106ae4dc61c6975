"""Finding models offline: local folders, the HF cache layout, and errors that say where we looked."""

import json

import pytest

from studio.core.models import ModelNotFound, cached_models, find_local_models, resolve_model


def make_model(folder, arch="LlamaForCausalLM", weights=4000):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [arch], "model_type": "llama",
                                                    "torch_dtype": "float32"}))
    (folder / "model.safetensors").write_bytes(b"\0" * weights)
    return folder


def test_a_local_folder_resolves_and_is_described(tmp_path):
    m = make_model(tmp_path / "models" / "tiny")
    assert resolve_model(m) == m
    (found,) = find_local_models([tmp_path / "models"], cache=tmp_path / "no-cache")
    assert (found.architecture, found.parameters) == ("LlamaForCausalLM", 1000)  # 4000 bytes of float32


def test_a_hub_id_resolves_to_the_cached_snapshot_main_points_at(tmp_path):
    repo = tmp_path / "hub" / "models--org--name"
    old = make_model(repo / "snapshots" / "aaa")
    new = make_model(repo / "snapshots" / "bbb")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaa")
    assert resolve_model("org/name", cache=tmp_path / "hub") == old != new
    assert [m.name for m in cached_models(tmp_path / "hub")] == ["org/name"]


def test_missing_models_name_where_they_were_looked_for(tmp_path):
    with pytest.raises(ModelNotFound, match="models--org--gone") as hub:
        resolve_model("org/gone", cache=tmp_path / "hub")
    assert "huggingface-cli download org/gone" in str(hub.value)
    # a path is not a hub id: no download advice, just the folder
    with pytest.raises(ModelNotFound, match=r"model folder .*tiny-gone not found") as path:
        resolve_model(str(tmp_path / "tiny-gone"), cache=tmp_path / "hub")
    assert "download" not in str(path.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match=r"holds no config\.json"):
        resolve_model(tmp_path / "empty")
