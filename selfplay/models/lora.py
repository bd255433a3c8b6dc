"""LoRA through `peft`: train a small adapter instead of every weight.

    model = add_adapter(base, cfg.model.lora, seed=0)   # a PeftModel; only the adapter trains
    reference = WithoutAdapter(model)                   # the base model, without a second copy
    model = load_adapter(base, "runs/x/checkpoints/step-50", trainable=True)
    model = merged(model)                               # a plain model, adapter folded in
    weights = merged_state_dict(model)                  # its weights, the model untouched

A checkpoint of a LoRA run holds the adapter only (`adapter_config.json` and
`adapter_model.safetensors`, what `PeftModel.from_pretrained` reads), with the base model
named in `base_model_name_or_path` as the run's `model.name`; `load_model` of such a
folder loads the base and merges the adapter in. `selfplay export` writes the merged model
as a full Hugging Face folder, loadable without selfplay or peft.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_folder(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def adapter_base_name(folder: str | Path) -> str:
    return json.loads((Path(folder) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def add_adapter(model, settings, *, seed: int, base_name: str):
    """`model` with a fresh LoRA adapter (`settings`: r, alpha, dropout, target_modules).

    The adapter's random init comes from `seed` on a forked RNG, so adding one never
    shifts the randomness of what runs next.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules, task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    return peft_model


def load_adapter(model, folder: str | Path, *, trainable: bool):
    """`model` with the adapter saved in `folder` (trainable to resume a run)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)


def merged(peft_model):
    """A plain transformers model with the adapter folded into its weights."""
    return peft_model.merge_and_unload()


@torch.no_grad()
def merged_state_dict(peft_model) -> dict[str, torch.Tensor]:
    """The weights `merged(peft_model)` would have, under the base model's names, computed
    without touching the model (merging in place and back would not restore the weights
    bit for bit): what a separate sampler such as vLLM loads after each update."""
    base = peft_model.get_base_model()
    out = {}
    for name, tensor in base.state_dict().items():
        if ".lora_" in name:
            continue
        if ".base_layer." in name:
            path, leaf = name.split(".base_layer.")
            if leaf == "weight":
                layer = base.get_submodule(path)
                tensor = tensor + sum(layer.get_delta_weight(a) for a in layer.active_adapters)
            name = f"{path}.{leaf}"
        out[name] = tensor
    return out


class WithoutAdapter:
    """The base model under a LoRA adapter: every call runs the shared model with the adapter
    switched off, so the KL reference costs no second copy of the weights.

    It is not an `nn.Module` on purpose: `eval()` and `requires_grad_(False)` from whoever
    treats it as a frozen model must not reach the adapter being trained.
    """

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def __call__(self, *args, **kwargs):
        with self.peft_model.disable_adapter():
            return self.peft_model(*args, **kwargs)

    def eval(self):
        return self

    def requires_grad_(self, requires_grad: bool = True):
        return self

    def parameters(self):
        return self.peft_model.parameters()

    def __getattr__(self, name):  # config, generation_config, dtype, device, get_base_model
        return getattr(self.peft_model, name)
