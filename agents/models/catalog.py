"""What models are available here, how big they are, and where they live: ``slm-agents models``.

Parameter counts come from file headers (safetensors or GGUF tensor tables), so listing is
fast and loads no weights.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from slm_agents.models.sources import (
    BUNDLED,
    bundled_path,
    cache_dir,
    converted_dir,
    folder_size,
    resolve,
)


@dataclass
class ModelInfo:
    name: str
    kind: str
    source: str  # the package, or "local path"
    installed: bool
    parameters: int | None
    size_bytes: int | None
    location: str | None
    cache: str | None  # converted safetensors copy, when the source is GGUF
    hub_id: str = ""
    install: str = ""


def list_models() -> list[ModelInfo]:
    """Every bundled model, installed or not (with the command that installs it)."""
    return [_describe_bundled(name) for name in BUNDLED]


def _describe_bundled(name: str) -> ModelInfo:
    meta = BUNDLED[name]
    path = bundled_path(meta)
    info = ModelInfo(
        name=name,
        kind=meta.kind,
        source=meta.package,
        installed=path is not None,
        parameters=None,
        size_bytes=None,
        location=None,
        cache=None,
        hub_id=meta.hub_id,
        install=meta.install,
    )
    if path is None:
        return info
    info.location, info.size_bytes = str(path), folder_size(path)
    if path.suffix == ".gguf":
        info.parameters = gguf_parameters(path)
        converted = converted_dir(resolve(name))
        info.cache = str(converted) if converted.exists() else f"{cache_dir()} (not converted yet)"
    else:
        info.parameters = safetensors_parameters(path)
    return info


def safetensors_parameters(folder: Path) -> int:
    """Sum of tensor sizes in every ``*.safetensors`` header under a folder."""
    total = 0
    for file in folder.rglob("*.safetensors"):
        with open(file, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(header_len))
        for key, tensor in header.items():
            if key != "__metadata__":
                count = 1
                for dim in tensor["shape"]:
                    count *= dim
                total += count
    return total


def gguf_parameters(file: Path) -> int:
    from gguf import GGUFReader

    return int(sum(int(t.n_elements) for t in GGUFReader(str(file)).tensors))
