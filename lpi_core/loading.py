"""Load a causal LM (hub id + revision, a local `save_pretrained` directory, or a `.gguf` file) with its adapter."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download, snapshot_download
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from .adapters import SUPPORTED_MODEL_TYPES, Adapter, UnsupportedArchitectureError, adapter_for
from .olmo_original import ORIGINAL_FILES, is_original_olmo, load_original_olmo


class CheckpointError(OSError):
    """A checkpoint that cannot be found or read."""


@dataclass
class LanguageModel:
    """A model ready for attribution: the module, its tokenizer, its adapter and its provenance."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    adapter: Adapter
    name: str = "<in-memory>"
    revision: str | None = None
    commit: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def max_positions(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)


def wrap_model(model: nn.Module, tokenizer: PreTrainedTokenizerBase, name: str = "<in-memory>") -> LanguageModel:
    """Wrap a model already in memory (a freshly trained one, say)."""
    model.eval()
    return LanguageModel(model=model, tokenizer=tokenizer, adapter=adapter_for(model), name=name)


def load_model(
    name_or_path: str | Path,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    hub_cache: str | Path | None = None,
    offline: bool = False,
) -> LanguageModel:
    """Load model and tokenizer from a hub id at `revision`, from a local directory in the hub's format,
    or from a local `.gguf` file (dequantised to `dtype`; needs the `gguf` and `accelerate` packages).

    `hub_cache` overrides the hub cache directory; `offline` reads only what that cache holds.
    """
    name = str(name_or_path)
    if name.endswith(".gguf"):
        return _load_gguf(Path(name), device, dtype)
    hub = dict(revision=revision, cache_dir=None if hub_cache is None else str(hub_cache), local_files_only=offline)
    where = name if revision is None else f"{name} at revision {revision}"
    written, commit = _config_as_written(name, hub)
    if is_original_olmo(written):
        return _load_original_olmo(name, hub, where, device, dtype)
    try:
        config = AutoConfig.from_pretrained(name, **hub)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"{where}: no loadable checkpoint ({err}). Give a local directory written by save_pretrained, "
            "or a hub id with an existing revision (download it first when offline)."
        ) from err
    _check_supported(name, config.model_type)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **hub)
        with transformers_bars_off():  # a bar per checkpoint loaded is noise in a run that loads hundreds
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **hub).to(device)
    except (OSError, ValueError, SafetensorError) as err:
        again = f"`hf download {name} --revision {revision} --force-download`" if revision else "save_pretrained"
        raise CheckpointError(
            f"{where}: the checkpoint's tokenizer or weights cannot be read ({err}). A missing or truncated "
            f"weights file must be downloaded or saved again: {again}."
        ) from err
    model.eval()
    return LanguageModel(
        model=model,
        tokenizer=tokenizer,
        adapter=adapter_for(model),
        name=name,
        revision=revision,
        commit=getattr(model.config, "_commit_hash", None) or commit,
    )


@contextmanager
def transformers_bars_off() -> Iterator[None]:
    """transformers' own progress bars (loading weights) off inside the block."""
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (a .gguf checkpoint's identity: it has no hub commit)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_supported(where: str, model_type: str) -> None:
    """Refuse, before any weights load, an architecture with no adapter (naming the supported ones)."""
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"{where}: unsupported architecture {model_type!r}; supported model types: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}. Add an adapter in lpi_core/adapters/ to support it."
        )


@contextmanager
def _gguf_errors(path: Path) -> Iterator[None]:
    """Reading a GGUF file: a missing package or an unreadable file as a CheckpointError naming the fix."""
    try:
        yield
    except ImportError as err:
        raise CheckpointError(
            f"{path}: reading GGUF needs the gguf and accelerate packages: pip install 'lpi-claims[gguf]' ({err})"
        ) from err
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: the GGUF file cannot be read ({err}); download or convert it again") from err


def _load_gguf(path: Path, device: str | torch.device, dtype: torch.dtype) -> LanguageModel:
    """A GGUF checkpoint, dequantised by transformers; its commit is the file's sha256."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such GGUF file; give the path of a .gguf checkpoint")
    where = dict(gguf_file=path.name, local_files_only=True)
    with _gguf_errors(path):
        config = AutoConfig.from_pretrained(path.parent, **where)
    _check_supported(str(path), config.model_type)  # outside the handler: the error is a ValueError too
    with _gguf_errors(path):
        tokenizer = AutoTokenizer.from_pretrained(path.parent, **where)
        with transformers_bars_off():
            model = AutoModelForCausalLM.from_pretrained(path.parent, config=config, dtype=dtype, **where).to(device)
    model.eval()
    return LanguageModel(model, tokenizer, adapter_for(model), name=str(path), commit=f"sha256:{file_digest(path)}")


def _config_as_written(name: str, hub: dict) -> tuple[dict, str | None]:
    """config.json as stored, and the commit of the hub snapshot holding it (None for a local
    directory); ({}, None) where it cannot be read: AutoConfig then names the problem."""
    local = Path(name) / "config.json"
    if local.exists():
        return json.loads(local.read_text()), None
    try:
        path = Path(hf_hub_download(name, "config.json", **hub))  # <cache>/models--…/snapshots/<commit>/config.json
        return json.loads(path.read_text()), path.parent.name
    except Exception:  # a missing file, an unknown repo or revision, offline: all reported by the regular path
        return {}, None


def _load_original_olmo(
    name: str, hub: dict, where: str, device: str | torch.device, dtype: torch.dtype
) -> LanguageModel:
    """An original-format OLMo checkpoint (olmo_original.py), converted on load; its tokenizer from its
    tokenizer.json (the class its tokenizer_config.json names may be ai2-olmo's own)."""
    try:
        directory = (
            Path(name) if Path(name).is_dir() else Path(snapshot_download(name, allow_patterns=ORIGINAL_FILES, **hub))
        )
        model = load_original_olmo(directory, dtype).to(device)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)  # whatever class tokenizer_config.json names
    except (OSError, ValueError, SafetensorError) as err:
        again = (
            f"`hf download {name} --revision {hub['revision']} --force-download`"
            if hub["revision"]
            else "a complete checkpoint"
        )
        raise CheckpointError(
            f"{where}: an original-format OLMo checkpoint that cannot be read or converted ({err}); a missing or "
            f"truncated file must be downloaded again: {again}."
        ) from err
    return LanguageModel(
        model=model,
        tokenizer=tokenizer,
        adapter=adapter_for(model),
        name=name,
        revision=hub["revision"],
        commit=directory.name if hub["revision"] is not None else None,
    )
