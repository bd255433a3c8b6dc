"""Typed training configs: YAML presets plus `key=value` overrides, with errors that name
the bad key and what is allowed.

    cfg = load_config("configs/spiral_kuhn_tiny.yaml", ["steps=50", "optim.lr=3e-4"])
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = "tiny"  # a tiny preset, a Hugging Face id or a local folder
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: fp32 on CPU, bf16 on GPU
    device: str = "auto"
    # None: the chat template when the tokenizer has one and the style is `chat`.
    use_chat_template: bool | None = None


class GameSpec(Section):
    name: str  # anything selfplay.games.make accepts
    weight: float = Field(1.0, gt=0)  # share of new episodes in a multi-game mixture
    options: dict[str, Any] = {}  # passed to selfplay.games.make
    # the strong fixed opponent evaluated against during training (None: only `random`)
    eval_opponent: str | None = None
    max_new_tokens: int | None = Field(None, gt=0)  # this game's generation limit (None: rollout's)


class PastOpponentsConfig(Section):
    """Opponent sampling in self-play: a share of new episodes is played against an
    earlier snapshot of the policy (as in fictitious self-play), so the policy also meets,
    and learns to punish, the weaker play it has moved away from."""

    fraction: float = Field(0.0, ge=0, lt=1)  # share of new episodes against a snapshot (0: off)
    every: int = Field(100, gt=0)  # steps between snapshots
    keep: int = Field(8, gt=0)  # snapshots in the pool (the oldest leaves first); each is a model in memory


class RolloutConfig(Section):
    samples_per_step: int = Field(128, gt=0)  # turn-samples per training step (paper: 128)
    parallel_games: int = Field(32, gt=0)  # games in flight; finished ones are replaced at once
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(4096, gt=0)
    # most prompts in one generation batch, or turns in flight with `scheduling: token` (None:
    # every pending turn at once); on a GPU the KV cache of 128 games x 4k tokens of a 4B
    # model alone is about 90 GB
    generation_batch_size: int | None = Field(None, gt=0)
    # `round`: one generation call per round for every pending turn (a round lasts as long as
    # its longest answer). `token`: a token-level engine; a game moves on as soon as its own
    # answer ends while longer answers keep generating (see rollout/scheduler.py)
    scheduling: Literal["round", "token"] = "round"
    # "self": one policy plays both seats (SPIRAL). Otherwise an agent spec (`random`,
    # `minimax`, `nash`, `openai:MODEL`) or `frozen` (a frozen copy of the initial model):
    # only the learner's seat is trained; the learner's seat alternates between games.
    opponent: str = "self"
    past_opponents: PastOpponentsConfig = PastOpponentsConfig()
    # each new episode opens with 0..N (uniformly drawn) random legal moves, not trained:
    # exploration of positions the policy's own play avoids (0: off, the paper's)
    random_opening_moves: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _past_opponents_need_self_play(self):
        if self.past_opponents.fraction and self.opponent != "self":
            raise ValueError(f"rollout.past_opponents is for self-play, but rollout.opponent is {self.opponent!r}; "
                             "set rollout.past_opponents.fraction=0 or rollout.opponent=self")
        return self


class AdvantageConfig(Section):
    estimator: Literal["rae", "none"] = "rae"  # none: raw returns (the paper's ablation)
    rae_alpha: float = Field(0.95, ge=0, le=1)
    drop_zero_advantage: bool = False


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
    norm_constant: float | None = None  # None: rollout.max_new_tokens
    kl_coef: float = Field(0.0, ge=0)  # KL to the frozen initial model; the paper uses 0
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


class EvalConfig(Section):
    every: int = Field(16, ge=0)  # steps between evaluations (0: never)
    games: int = Field(64, gt=0)  # games per opponent
    temperature: float = Field(1.0, ge=0)  # 0: greedy
    exploitability: bool = True  # exact exploitability for kuhn_poker (rounds=1)


class TrainConfig(Section):
    recipe: Literal["spiral"] = "spiral"
    seed: int = 0
    output_dir: str | None = None  # default: runs/<recipe>-<first game>-<time>
    steps: int = Field(400, gt=0)
    time_limit_minutes: float | None = None  # stop early (and save) after this much wall time
    style: Literal["chat", "compact"] = "chat"
    backend: Literal["hf", "vllm"] = "hf"
    threads: int | None = None  # torch CPU threads (None: torch's default)
    games: list[GameSpec] = [GameSpec(name="tictactoe", eval_opponent="minimax")]
    model: ModelConfig = ModelConfig()
    rollout: RolloutConfig = RolloutConfig()
    advantage: AdvantageConfig = AdvantageConfig()
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    save_every: int = Field(50, gt=0)
    keep_last: int = Field(2, gt=0)  # checkpoints kept on disk

    @field_validator("games")
    @classmethod
    def _some_games(cls, games):
        if not games:
            raise ValueError("at least one game is needed")
        return games

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
    allowed = _allowed_keys(TrainConfig)
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(key, allowed, n=3)
            lines.append(f"unknown config key {key!r}" + (f" (did you mean {', '.join(hint)}?)" if hint else ""))
        else:
            lines.append(f"bad value for {key!r}: {e['msg']} (got {e.get('input')!r})")
    lines.append("allowed keys: " + ", ".join(allowed))
    return "\n".join(lines)


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw.strip() else None))
    return out


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A TrainConfig from an optional YAML file and `key=value` overrides (values in YAML
    syntax: `steps=10`, `games=[{name: kuhn_poker}]`, `optim.betas=[0.9,0.99]`)."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        tree = yaml.safe_load(path.read_text()) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    try:  # validate the file alone first, so its errors name the file
        tree = TrainConfig.model_validate(tree).model_dump()
    except ValidationError as err:
        raise ConfigError(f"{path}:\n{_explain(err)}") from None
    for key, value in parse_overrides(list(overrides)):
        _set_dotted(tree, key, value)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
