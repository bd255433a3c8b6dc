"""Typed training configs: YAML presets plus `key=value` overrides, with errors that name
the bad key and what is allowed.

    cfg = load_config("configs/spiral_kuhn_tiny.yaml", ["steps=50", "optim.lr=3e-4", "recipe.rae_alpha=0.9"])
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selfplay.recipes import RECIPES

# One `recipe:` section whose schema is the chosen recipe's own `Config` (by `recipe.name`).
RecipeConfig = Annotated[Union[tuple(recipe.Config for recipe in RECIPES.values())], Field(discriminator="name")]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(Section):
    """A LoRA adapter (peft) trained in place of the full weights."""

    r: int = Field(16, gt=0)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    # module names to adapt, or `all-linear` (every linear layer but the output head)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class ModelConfig(Section):
    # a tiny preset, a packaged model (smollm2-135m-instruct), a .gguf file, a Hugging Face id
    # or a local folder
    name: str = "tiny"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: fp32 on CPU, bf16 on GPU
    device: str = "auto"
    # None: the chat template when the tokenizer has one and the style is `chat`.
    use_chat_template: bool | None = None
    lora: LoraSettings | None = None  # None: full fine-tuning


class SamplingConfig(Section):
    """How the policy samples in training, whatever the recipe."""

    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(4096, gt=0)
    # most prompts in one generation batch, or requests in flight with a token-level engine
    # (None: every pending prompt at once); on a GPU the KV cache of 128 games x 4k tokens of
    # a 4B model alone is about 90 GB
    generation_batch_size: int | None = Field(None, gt=0)
    # backend hf: run the prompt prefix a batch shares (a game's rules, a rubric) once, not once per
    # prompt (selfplay.models.generation.PrefixCache; vLLM caches prefixes itself). The same numbers
    # up to float rounding (about 1e-5 in the log-probs); False runs every prompt whole.
    reuse_prefix: bool = True


class VLLMSettings(Section):
    """The vLLM engine of `backend: vllm` (selfplay.models.vllm_generator)."""

    # False: compile the model graph (CUDA graphs on a GPU): faster decoding, a slower start
    # (80-105 s for SmolLM2 on this project's 2-core CPU, 7 s eager)
    enforce_eager: bool = True
    gpu_memory_utilization: float = Field(0.4, gt=0, le=1)  # its share of the GPU (on a CPU: of the RAM)
    kv_cache_gb: float | None = Field(None, gt=0)  # the KV cache's size (None: what the share above leaves)
    # free the engine's GPU memory during each update (vLLM's sleep mode; GPU only)
    sleep_mode: bool = False
    max_model_len: int | None = Field(None, gt=0)  # None: the model's own context length
    # with model.lora: what reaches the engine after each update: the adapter merged into the full
    # weights, or the adapter alone (vLLM's LoRA kernels on the base weights: a 3x faster sync,
    # but 0.26x the generation speed on the CPU, benchmarks/scaling.py)
    lora_updates: Literal["merged", "adapter"] = "merged"


class DistributedSettings(Section):
    """Rollout workers on Ray (selfplay.rollout.ray_workers); learner processes from torchrun, or
    launched on Ray (selfplay.ray_learners)."""

    rollout_workers: int = Field(0, ge=0)  # Ray actors that generate (0: the trainer's process does)
    address: str | None = None  # a Ray cluster's host:port (`ray start --head`); None: a local Ray instance
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)  # a GPU (or share of one) for each worker's generator
    threads_per_worker: int | None = Field(1, gt=0)  # torch threads in each worker (None: torch's default)
    # learner processes launched as Ray actors (selfplay.ray_learners; under torchrun, torchrun's count)
    learners: int = Field(1, ge=1)
    cpus_per_learner: float = Field(1.0, gt=0)
    gpus_per_learner: float = Field(0.0, ge=0)
    # asynchronous mode: sample the next batches while the learner updates, with weights at most
    # this many updates old (0: synchronous; needs rollout_workers; see selfplay.rollout.pipeline)
    max_staleness: int = Field(0, ge=0)


class OptimConfig(Section):
    lr: float = Field(1e-6, gt=0)
    # constant (the paper's) or linear decay to lr * lr_final_fraction at the last step
    lr_schedule: Literal["constant", "linear"] = "constant"
    lr_final_fraction: float = Field(0.1, ge=0, le=1)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    epochs: int = Field(2, gt=0)  # PPO epochs per batch
    micro_batch_size: int = Field(32, gt=0)
    clip: float = Field(0.2, gt=0)
    loss_norm: Literal["constant", "token_mean"] = "constant"  # constant: Dr. GRPO, the paper's
    norm_constant: float | None = None  # None: sampling.max_new_tokens
    kl_coef: float = Field(0.0, ge=0)  # KL to the frozen initial model (SPIRAL and AZR: 0; LSP: 0.05)
    # the KL estimator: k1 = log-ratio, k2 = log-ratio^2 / 2, k3 = r - log r - 1 with
    # r = pi_ref / pi (GRPO's: unbiased and never negative)
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    # `token`: the estimate at every response token, reduced like the policy loss (the usual
    # choice); `sequence`: the estimator applied to each response's summed log-ratio
    kl_per: Literal["token", "sequence"] = "token"
    entropy_coef: float = Field(0.0, ge=0)
    # The entropy the bonus raises: of the next-token distribution over the whole vocabulary
    # (`vocab`), or of the policy over the legal moves (`legal_moves`: needs one-token moves,
    # i.e. compact style; it keeps play mixed without pushing mass onto illegal tokens).
    entropy_over: Literal["vocab", "legal_moves"] = "vocab"
    # Polyak averaging of the weights (0: off). Evaluation and checkpoints use the average;
    # e.g. 0.995 averages over roughly the last 200 steps. See algorithms/averaging.py.
    average_decay: float = Field(0.0, ge=0, lt=1)
    # The weights the optimizer updates. `float32` (the default; the paper's DeepSpeed bf16
    # setup also keeps fp32 master weights): with a bf16 `model.dtype` the learner keeps
    # fp32 weights and AdamW state, runs its forward passes under bf16 autocast, and
    # generation uses a bf16 copy refreshed after every update. `model`: train the
    # `model.dtype` weights themselves (half the memory, but in bf16 an update smaller than
    # about 0.4% of a weight rounds away: at lr 1e-6 nearly every update does).
    master_weights: Literal["float32", "model"] = "float32"
    # recompute each decoder layer's activations in the backward pass instead of keeping
    # them: much less memory for long responses, about a third more compute per update
    gradient_checkpointing: bool = False
    # run the prompt prefix a micro-batch's samples share (a game's rules) once, for one row, and
    # attend to it from every row: the same gradient up to float rounding, for fewer FLOPs
    # (not with gradient_checkpointing, which recomputes layers without a cache)
    share_prompt_prefix: bool = True
    # run each distinct prompt of a micro-batch once and let its responses attend to it (the G
    # answers to one prompt of GRPO, LSP, AZR): the same gradient up to float rounding, for the
    # prompt's FLOPs once instead of G times. Off by default: on it moves a run's numbers by float
    # rounding, so runs measured without it no longer repeat bit for bit
    share_prompts: bool = False


class EvalConfig(Section):
    every: int = Field(16, ge=0)  # steps between evaluations (0: never)
    temperature: float = Field(1.0, ge=0)  # 0: greedy
    # reasoning suites scored at every evaluation, whatever the recipe: suite -> the size of
    # its fixed subset (0: all), e.g. {humaneval: 16, math: 32}; see selfplay/evals/suites.py
    suites: dict[str, int] = {}
    suite_max_new_tokens: int = Field(512, gt=0)

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, suites):
        from selfplay.evals.suites import SUITES

        for name, size in suites.items():
            if name not in SUITES:
                raise ValueError(f"unknown suite {name!r}; choose from: {', '.join(sorted(SUITES))}")
            if size < 0:
                raise ValueError(f"suite {name!r}: the subset size must be >= 0 (0: all), got {size}")
        return suites


class TrainConfig(Section):
    seed: int = 0
    output_dir: str | None = None  # default: runs/<recipe>-<what it trains on>-<time>
    steps: int = Field(400, gt=0)
    time_limit_minutes: float | None = None  # stop early (and save) after this much wall time
    backend: Literal["hf", "vllm"] = "hf"
    vllm: VLLMSettings = VLLMSettings()
    distributed: DistributedSettings = DistributedSettings()
    # stop the run when the mean |sampler - learner| log-prob per token (sampler_logprob_gap)
    # exceeds this: the sampler is not sampling the policy being trained (stale or wrong
    # weights, another tokenizer); None: never
    max_sampler_logprob_gap: float | None = Field(0.5, gt=0)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    model: ModelConfig = ModelConfig()
    sampling: SamplingConfig = SamplingConfig()
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    save_every: int = Field(50, gt=0)
    keep_last: int = Field(2, gt=0)  # checkpoints kept on disk
    # the method and its own settings; `recipe.name` chooses the schema (see selfplay/recipes)
    recipe: RecipeConfig = Field(default_factory=lambda: RECIPES["spiral"].Config())

    @model_validator(mode="after")
    def _backend_available(self):
        from selfplay.models.vllm_generator import INSTALL_HINT, vllm_available

        if self.backend == "vllm" and not vllm_available():
            raise ValueError(INSTALL_HINT)
        if self.distributed.learners > 1 and (self.backend == "vllm" or self.distributed.rollout_workers):
            raise ValueError("distributed.learners sample on every learner process (as under torchrun): "
                             "set backend=hf and no rollout workers")
        if self.distributed.max_staleness and not self.distributed.rollout_workers:
            raise ValueError("distributed.max_staleness samples on Ray workers while the learner updates: "
                             "set distributed.rollout_workers too")
        if self.distributed.rollout_workers or self.distributed.learners > 1:
            from selfplay.rollout.ray_workers import ray_available, ray_install_hint

            if not ray_available():
                raise ValueError(ray_install_hint("distributed.rollout_workers" if self.distributed.rollout_workers
                                                  else "distributed.learners"))
        if (self.backend == "vllm" and self.model.lora and self.vllm.lora_updates == "adapter"
                and self.model.lora.r > 512):
            raise ValueError(f"vLLM serves LoRA adapters of rank 512 at most (model.lora.r={self.model.lora.r}): "
                             "set vllm.lora_updates=merged")
        if self.vllm.sleep_mode:
            from selfplay.models.loading import resolve_device

            if resolve_device(self.model.device).type != "cuda":
                raise ValueError("vllm.sleep_mode frees GPU memory while the learner updates: it needs a GPU")
        return self

    @model_validator(mode="after")
    def _lora_needs_peft(self):
        import importlib.util

        if self.model.lora and importlib.util.find_spec("peft") is None:
            raise ValueError("model.lora needs the peft package: pip install 'selfplay[lora]'")
        return self

    @model_validator(mode="after")
    def _lora_without_averaging(self):
        if self.model.lora and self.optim.average_decay:
            raise ValueError("model.lora and optim.average_decay cannot be combined: "
                             "average the adapter by training without LoRA, or set optim.average_decay=0")
        return self

    @model_validator(mode="after")
    def _no_fp16_training(self):
        if self.model.dtype == "float16":
            raise ValueError("model.dtype=float16 cannot be trained here: fp16 gradients need loss scaling, "
                             "which selfplay does not do; use model.dtype=bfloat16 (or float32)")
        return self


class ConfigError(ValueError):
    pass


def _allowed_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if name == "recipe" and not prefix:  # the union: every recipe's own keys
            keys.append(name)
            keys += list(dict.fromkeys(k for r in RECIPES.values() for k in _allowed_keys(r.Config, "recipe.")))
            continue
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _allowed_keys(ann, prefix + name + ".")
    return keys


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        if part.isdigit() and isinstance(node, list):
            node = node[int(part)]
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"cannot set {dotted!r}: {part!r} is not a section")
    last = parts[-1]
    if last.isdigit() and isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _explain(err: ValidationError) -> str:
    """One line per error, naming the key and what is allowed."""
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        allowed = _allowed_keys(TrainConfig)
        if loc[:1] == ["recipe"] and len(loc) > 1 and loc[1] in RECIPES:  # pydantic names the union member
            allowed = [k for k in allowed if not k.startswith("recipe.")]
            allowed += _allowed_keys(RECIPES[loc.pop(1)].Config, "recipe.")
        key = ".".join(loc)
        if e["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(key, allowed, n=3)
            section = key.rpartition(".")[0]
            siblings = [k for k in allowed if k.rpartition(".")[0] == section]
            lines.append(f"unknown config key {key!r}; " + (f"did you mean {', '.join(hint)}?" if hint else
                         f"keys of {section or 'the top level'}: {', '.join(siblings)}"))
        elif e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            tag = (e.get("ctx") or {}).get("tag")
            hint = difflib.get_close_matches(str(tag), list(RECIPES), n=1)
            lines.append(f"unknown recipe {tag!r} in 'recipe.name'" + (f" (did you mean {hint[0]}?)" if hint else "")
                         + f"; available: {', '.join(sorted(RECIPES))}")
        elif e["type"] == "value_error":  # our own validators: the message names what is wrong
            message = str((e.get("ctx") or {}).get("error", e["msg"]))
            lines.append(f"bad value for {key!r}: {message}" if key else message)
        else:
            lines.append(f"bad value for {key!r}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not YAML ({_yaml_problem(err)}); "
                              "quote it, e.g. key='\"{}+{}\"'") from None
        out.append((key.strip(), value))
    return out


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(err, 'problem', None) or type(err).__name__}{where}"


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A TrainConfig from an optional YAML file and `key=value` overrides (values in YAML
    syntax: `steps=10`, `recipe.games=[{name: kuhn_poker}]`, `optim.betas=[0.9,0.99]`)."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    try:  # validate the file alone first, so its errors name the file
        TrainConfig.model_validate(_recipe_as_section(tree))
    except ValidationError as err:
        raise ConfigError(f"{path}: {_explain(err)}") from None
    for key, value in parse_overrides(list(overrides)):
        _set_dotted(tree, key, value)
    tree = _recipe_as_section(tree)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None


def _recipe_as_section(tree: dict) -> dict:
    """`recipe: rlvr` is short for `recipe: {name: rlvr}`; a recipe section without a name is SPIRAL's."""
    recipe = tree.get("recipe")
    if isinstance(recipe, str):
        return {**tree, "recipe": {"name": recipe}}
    if isinstance(recipe, dict) and "name" not in recipe:
        return {**tree, "recipe": {"name": "spiral", **recipe}}
    return tree


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
