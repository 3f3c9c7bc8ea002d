"""A Hugging Face model ID resolves from the local Hugging Face cache, offline, in huggingface_hub's
layout (models--Org--Name/refs/main naming a snapshot; snapshot files are links into blobs/).
The fixture cache holds a tiny random model saved the way `hf download` leaves one."""

import hashlib
import os
import shutil

import pytest
import torch

from tests.train.helpers import DATA, tiny_run
from unift import models
from unift.train.metrics import read_metrics
from unift.train.run import train

MODEL_ID = "UniftTest/tiny-llama"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def fill_cache(cache, model_id=MODEL_ID, revision=REVISION):
    """A tiny model in huggingface_hub's cache layout under `cache`; returns its weights."""
    model, tok = models.tiny("tiny")
    repo = cache / f"models--{model_id.replace('/', '--')}"
    staging = cache / "staging"
    model.save_pretrained(staging)
    tok.save_pretrained(staging)
    snapshot, blobs = repo / "snapshots" / revision, repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for f in staging.iterdir():  # content-addressed blobs, linked from the snapshot
        blob = blobs / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.move(f, blob)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / f.name)
    staging.rmdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return model.state_dict()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_a_model_id_loads_from_the_cache(hub):
    weights = fill_cache(hub)
    assert models.resolve(MODEL_ID) == hub / f"models--UniftTest--tiny-llama/snapshots/{REVISION}"
    model, tok = models.load(MODEL_ID)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())
    assert tok.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False).startswith("<|im_start|>")


def test_a_missing_model_names_the_cache(hub):
    with pytest.raises(FileNotFoundError) as err:
        models.resolve("HuggingFaceTB/SmolLM2-135M-Instruct")
    message = str(err.value)
    assert f"not in the Hugging Face cache {hub} (no models--HuggingFaceTB--SmolLM2-135M-Instruct)" in message
    assert "unift downloads nothing at run time" in message and "hf download HuggingFaceTB/SmolLM2" in message


def test_an_incomplete_snapshot_is_named(hub):
    (hub / "models--Org--Name" / "snapshots" / "abc").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"\(models--Org--Name/snapshots/abc has no config.json\)"):
        models.resolve("Org/Name")


def test_hf_home_locates_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert models.hub_cache() == tmp_path / "hf" / "hub"
    (tmp_path / "hf" / "hub").mkdir(parents=True)
    fill_cache(tmp_path / "hf" / "hub")
    assert models.resolve(MODEL_ID).parent.name == "snapshots"


def test_a_local_directory_wins_over_the_cache(hub, tmp_path, monkeypatch):
    fill_cache(hub)
    local = tmp_path / "work" / MODEL_ID
    shutil.copytree(models.resolve(MODEL_ID), local)
    monkeypatch.chdir(tmp_path / "work")
    assert models.resolve(MODEL_ID) == local.relative_to(tmp_path / "work")  # the directory, as given


def test_a_run_trains_a_cached_model_by_id(hub, tmp_path):
    fill_cache(hub)
    config = tiny_run(tmp_path, [{"kind": "demonstration", "path": str(DATA / "demonstrations.jsonl")}], steps=2)
    config.model.name = MODEL_ID
    run_dir = train(config)
    assert len(read_metrics(run_dir)) == 2 and (run_dir / "model" / "model.safetensors").exists()
