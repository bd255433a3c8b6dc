"""SPIRAL: one policy plays both seats of two-player zero-sum text games (ALGORITHMS.md section 1).

Each learner turn is a sample (prompt = that turn's observation, response = the model's
text); when the game ends every turn of a seat gets that seat's return R (gamma = 1).
Role-conditioned advantage estimation (RAE), one baseline per (game, seat), kept across steps:

    A = R - b[game, role]                        b read before this episode updates it
    b[game, role] <- alpha * b + (1 - alpha) * R  alpha = 0.95, b starts at 0

Deviations from the paper, each an option:
- `advantage: none` is the paper's RAE-off ablation (A = R).
- An invalid move ends the game with returns (-1, +1) (zero-sum); the original's
  (-1.5, +0.5) is the game option `invalid_penalty: spiral`.
- `opponent`: self-play by default; a fixed agent (`random`, `minimax`, `nash`,
  `openai:MODEL`) or `frozen` (the initial model) as the paper's fixed-opponent variant.
- `past_opponents` (off by default): a share of new self-play games is played against a
  snapshot of the policy from earlier steps (fictitious-play style opponent sampling).
- `random_opening_moves` (0 by default): each new game opens with 0..N random legal
  moves, not trained, so that training meets positions its own play avoids.
- `style: compact` observations and one-character moves for tiny models on a CPU; `chat`
  is the paper's prompt.

Sections: config, the recipe (collect, advantages, evaluate, state), episodes and opponents.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from selfplay.agents import AGENTS, make_agent, parse_spec
from selfplay.agents.llm import GamePrompter, LLMAgent
from selfplay.algorithms.advantages import RAEBaselines, drop_zero_advantage, rae_advantages, raw_advantages
from selfplay.evals.arena import play
from selfplay.games import make as make_game
from selfplay.recipes import Batch, Evaluation, Recipe, RecipeSection
from selfplay.rollout.batching import Batcher
from selfplay.rollout.scheduler import Episode, GameScheduler
from selfplay.runs import checkpoints
from selfplay.seeding import derive_seed, rng_state_from_list, rng_state_to_list

FIXED = "fixed"  # Episode.opponent of a game against the fixed `opponent`
OPPONENTS = "opponents"  # the run folder's snapshots of past policies (past_opponents)
STATE_FILE = "spiral.json"  # the recipe's state in a checkpoint folder


# ---- config ---------------------------------------------------------------------------
class GameSpec(RecipeSection):
    name: str  # anything selfplay.games.make accepts
    weight: float = Field(1.0, gt=0)  # share of new episodes in a multi-game mixture
    options: dict[str, Any] = {}  # passed to selfplay.games.make
    # the strong fixed opponent evaluated against during training (None: only `random`)
    eval_opponent: str | None = None
    max_new_tokens: int | None = Field(None, gt=0)  # this game's generation limit (None: sampling's)


class PastOpponentsConfig(RecipeSection):
    """Opponent sampling in self-play: a share of new episodes is played against an
    earlier snapshot of the policy (as in fictitious self-play), so the policy also meets,
    and learns to punish, the weaker play it has moved away from."""

    fraction: float = Field(0.0, ge=0, lt=1)  # share of new episodes against a snapshot (0: off)
    every: int = Field(100, gt=0)  # steps between snapshots
    keep: int = Field(8, gt=0)  # snapshots in the pool (the oldest leaves first); each is a model in memory


class Config(RecipeSection):
    name: Literal["spiral"] = "spiral"
    style: Literal["chat", "compact"] = "chat"  # chat: the paper's prompt; compact: tiny models
    # chat style's prompt: `paper` (SPIRAL's: reason step by step, then \boxed{}) or `brief`
    # (a short observation and "reply with your move only"; small chat models, agents/prompt.py)
    prompt: Literal["paper", "brief"] = "paper"
    games: list[GameSpec] = [GameSpec(name="tictactoe", eval_opponent="minimax")]
    samples_per_step: int = Field(128, gt=0)  # turn-samples per training step (paper: 128)
    parallel_games: int = Field(32, gt=0)  # games in flight; finished ones are replaced at once
    # `round`: one generation call per round for every pending turn (a round lasts as long as
    # its longest answer). `token`: a token-level engine; a game moves on as soon as its own
    # answer ends while longer answers keep generating (see rollout/batching.py)
    scheduling: Literal["round", "token"] = "round"
    # "self": one policy plays both seats (SPIRAL). Otherwise an agent spec (`random`,
    # `minimax`, `nash`, `openai:MODEL`) or `frozen` (a frozen copy of the initial model):
    # only the learner's seat is trained; the learner's seat alternates between games.
    opponent: str = "self"
    past_opponents: PastOpponentsConfig = PastOpponentsConfig()
    # each new episode opens with 0..N (uniformly drawn) random legal moves, not trained:
    # exploration of positions the policy's own play avoids (0: off, the paper's)
    random_opening_moves: int = Field(0, ge=0)
    advantage: Literal["rae", "none"] = "rae"  # none: raw returns (the paper's ablation)
    rae_alpha: float = Field(0.95, ge=0, lt=1)
    drop_zero_advantage: bool = False  # samples with A = 0 carry no gradient
    eval_games: int = Field(64, gt=0)  # games per opponent in each evaluation
    exploitability: bool = True  # exact exploitability where the game has it (classic Kuhn)

    @field_validator("games")
    @classmethod
    def _known_games(cls, games):
        if not games:
            raise ValueError("at least one game is needed")
        for spec in games:
            make_game(spec.name, **spec.options)  # unknown names and options say what exists
            if spec.eval_opponent is not None:
                _check_agent(spec.eval_opponent)
        return games

    @field_validator("opponent")
    @classmethod
    def _known_opponent(cls, opponent):
        if opponent not in ("self", "frozen"):
            _check_agent(opponent, "self, frozen, ")
        return opponent

    @model_validator(mode="after")
    def _past_opponents_need_self_play(self):
        if self.past_opponents.fraction and self.opponent != "self":
            raise ValueError(f"recipe.past_opponents is for self-play, but recipe.opponent is {self.opponent!r}; "
                             "set recipe.past_opponents.fraction=0 or recipe.opponent=self")
        return self


def _check_agent(spec: str, also: str = "") -> None:
    name, _ = parse_spec(spec)
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; available: {also}{', '.join(sorted(AGENTS))}")


# ---- the recipe -----------------------------------------------------------------------
class SpiralRecipe(Recipe):
    name = "spiral"
    Config = Config

    def __init__(self, cfg: Config, policy, context):
        super().__init__(cfg, policy, context)
        self.specs = {spec.name: spec for spec in reversed(cfg.games)}  # the first spec of a name wins
        self.prompter = GamePrompter(policy.tokenizer, policy.use_chat_template, prompt=cfg.prompt)
        self.rng = random.Random(context.seed)  # which game each new episode plays, openings, opponents
        self.opponents: dict[str, Any] = {}  # FIXED and past snapshots, by key
        if cfg.opponent == "frozen":
            self.opponents[FIXED] = self._model_opponent(policy.reference, derive_seed(context.seed, 1, "offset"))
        elif cfg.opponent != "self":
            self.opponents[FIXED] = make_agent(cfg.opponent, seed=derive_seed(context.seed, 1, "offset"))
        self.past_pool: list[str] = []  # snapshot keys each step draws from (newest `keep`)
        self._past_drawn: str | None = None  # this step's snapshot for new past-opponent games
        batcher = Batcher(policy.generator, context.sampling, cfg.scheduling, context.seed)
        self.scheduler = GameScheduler(self._start_episode, self.opponents, batcher, self.prompter,
                                       cfg.parallel_games, legal_token_ids=context.legal_token_ids)
        self.baselines = RAEBaselines(alpha=cfg.rae_alpha)

    # ---- collect ---------------------------------------------------------------------
    def reads_weights(self, step: int) -> bool:
        past = self.cfg.past_opponents
        return bool(past.fraction and step and step % past.every == 0)

    def collect(self, step: int) -> Batch:
        past = self.cfg.past_opponents
        if self.reads_weights(step):  # the policy after `step` updates joins the pool
            self._add_snapshot(step)
        # one snapshot per step plays the new past-opponent games (no draw without a pool,
        # so plain self-play's episode stream is unchanged)
        self._past_drawn = self.rng.choice(self.past_pool) if self.past_pool and past.fraction else None
        samples, episodes = self.scheduler.collect(self.cfg.samples_per_step)
        self._release_retired()
        metrics = {
            "episodes": len(episodes),
            # share of episodes the learner ended with an invalid move, and of its moves
            "invalid_rate": float(np.mean([e.invalid_by_learner for e in episodes])) if episodes else 0.0,
            "invalid_move_rate": float(np.mean(["invalid" in s.info for s in samples])),
            "game_length": float(np.mean([e.length for e in episodes])) if episodes else 0.0,
        }
        for game in sorted({e.game_name for e in episodes}):
            # In self-play the learner holds both seats: seat 0's result says who the game favours.
            own = [e.returns[0] for e in episodes if e.game_name == game and e.opponent is None]
            if own:
                metrics[f"selfplay/{game}/seat0_return"] = float(np.mean(own))
            past_games = [e.returns[e.learner_seats[0]] for e in episodes
                          if e.game_name == game and e.opponent not in (None, FIXED)]
            if past_games:  # how the learner fares against its past snapshots
                metrics[f"past_opponents/{game}/learner_return"] = float(np.mean(past_games))
        if past.fraction:
            metrics["past_opponents/pool"] = len(self.past_pool)
        return Batch(samples, metrics)

    # ---- advantages ------------------------------------------------------------------
    def advantages(self, batch: Batch) -> list:
        if self.cfg.advantage == "rae":
            rae_advantages(batch.samples, self.baselines)
        else:
            raw_advantages(batch.samples)
        for (game, role), b in sorted(self.baselines.values.items()):
            batch.metrics[f"rae_baseline/{game}/{role}"] = b
        return drop_zero_advantage(batch.samples) if self.cfg.drop_zero_advantage else batch.samples

    # ---- evaluate --------------------------------------------------------------------
    def agent(self, sampling=None, seed: int | None = None, online: bool = False) -> LLMAgent:
        """The run's policy as an arena agent (the evaluator; `online=True`: the weights the
        learner trains)."""
        policy = self.policy
        model, generator = (policy.model, policy.generator) if online else (policy.evaluator, policy.eval_generator)
        return LLMAgent(model, policy.tokenizer, generator, sampling or self.context.eval_sampling, seed=seed,
                        use_chat_template=policy.use_chat_template, prompt=self.cfg.prompt)

    def evaluate(self, step: int) -> Evaluation:
        """Games against `random` and each game's `eval_opponent`: win / draw / loss / invalid
        rates, plus what the game can measure exactly (optimal moves, exploitability)."""
        from selfplay.evals.exploitability import exploitability

        cfg, seed = self.cfg, self.context.seed
        out, transcripts = {}, []
        for spec in cfg.games:
            sampling = replace(self.context.eval_sampling,
                               max_new_tokens=spec.max_new_tokens or self.context.sampling.max_new_tokens)
            agent = self.agent(sampling, seed=derive_seed(seed, 10_000 + step, "offset"))
            options = {"style": cfg.style, **spec.options}
            measures = make_game(spec.name, **options).exact_measures
            for opp in ["random"] + ([spec.eval_opponent] if spec.eval_opponent else []):
                result = play(agent, make_agent(opp), spec.name, cfg.eval_games, game_options=options,
                              seed=derive_seed(seed, step, "offset"), progress=False,
                              optimal_moves="optimal_moves" in measures)
                rates = result.rates()
                prefix = f"eval/{spec.name}/vs_{opp}/"
                for key in ("win", "draw", "loss", "invalid", "optimal_move_rate"):
                    if key in rates:
                        out[prefix + key] = rates[key]["rate"]
                out[prefix + "non_loss"] = rates["win"]["rate"] + rates["draw"]["rate"]
                transcripts += [{"step": step, "game": spec.name, "opponent": opp, **t}
                                for t in result.transcripts[:2]]
            if cfg.exploitability and "exploitability" in measures:
                out[f"eval/{spec.name}/exploitability"] = float(exploitability(agent, spec.name, options))
                if self.policy.average:  # the policy the learner samples with, for comparison
                    online = self.agent(sampling, online=True)
                    out[f"eval/{spec.name}/exploitability_online"] = float(exploitability(online, spec.name,
                                                                                          options))
        return Evaluation(out, transcripts)

    # ---- state -----------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        state = {
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state_to_list(self.rng.getstate()),
            "rae_baselines": self.baselines.state_dict(),
            "opponents": {key: agent.state_dict() for key, agent in self.opponents.items()},
            "past_pool": self.past_pool,
        }
        (folder / STATE_FILE).write_text(json.dumps(state))
        self._remove_unused_snapshots()

    def close(self) -> None:
        self._remove_unused_snapshots()  # against the checkpoints the run leaves behind

    def load(self, folder: Path) -> None:
        state = json.loads((folder / STATE_FILE).read_text())
        for key in state["opponents"]:  # past snapshots, as they were at the checkpoint
            if key != FIXED:
                self.opponents[key] = self._snapshot_opponent(key, self.policy.load_frozen(self._snapshot_dir(key)))
        for key, agent_state in state["opponents"].items():
            self.opponents[key].load_state_dict(agent_state)
        self.past_pool = list(state["past_pool"])
        self.rng.setstate(rng_state_from_list(state["rng"]))
        self.baselines.load_state_dict(state["rae_baselines"])
        self.scheduler.load_state_dict(state["scheduler"], self._new_game)

    def _remove_unused_snapshots(self) -> None:
        """Delete snapshots that neither the pool nor a checkpoint on disk plays (one that only
        a checkpoint about to be pruned plays goes at the next save, or when the run ends)."""
        folder = self.context.run_dir / OPPONENTS
        if not folder.is_dir():
            return
        used = set(self.opponents)
        for ckpt in checkpoints(self.context.run_dir):
            used |= set(json.loads((ckpt / STATE_FILE).read_text())["opponents"])
        for snapshot in folder.iterdir():
            if snapshot.name not in used:
                shutil.rmtree(snapshot, ignore_errors=True)

    # ---- episodes and opponents ----------------------------------------------------------
    def _new_game(self, name: str):
        return make_game(name, style=self.cfg.style, **self.specs[name].options)

    def _start_episode(self, eid: int) -> Episode:
        """Episode `eid`: a game drawn by weight, its opponent, and its random opening."""
        spec = self.rng.choices(self.cfg.games, weights=[g.weight for g in self.cfg.games])[0]
        game = self._new_game(spec.name)
        seed = derive_seed(self.context.seed, eid, "game")
        game.reset(seed)
        opponent = FIXED if FIXED in self.opponents else None
        if self._past_drawn and self.rng.random() < self.cfg.past_opponents.fraction:
            opponent = self._past_drawn
        seats = (0, 1) if opponent is None else (eid % 2,)  # against an opponent the learner's seat alternates
        episode = Episode(eid, spec.name, game, seed, seats, opponent, spec.max_new_tokens)
        for _ in range(self.rng.randint(0, self.cfg.random_opening_moves) if self.cfg.random_opening_moves else 0):
            if game.is_terminal():
                break
            episode.play(game.format_action(self.rng.choice(sorted(game.legal_actions()))))
            episode.transcript[-1]["opening"] = True
        return episode

    def _model_opponent(self, model, seed: int) -> LLMAgent:
        """A frozen model as the rollout's opponent, sampling as the learner does."""
        return LLMAgent(model, self.policy.tokenizer, self.policy.generator_for(model), self.context.sampling,
                        seed=seed, use_chat_template=self.policy.use_chat_template, prompt=self.cfg.prompt)

    def _snapshot_dir(self, key: str) -> Path:
        return self.context.run_dir / OPPONENTS / key

    def _snapshot_opponent(self, key: str, model) -> LLMAgent:
        # the seed of snapshot `step-N` is a function of its key, so a reloaded one samples the same
        return self._model_opponent(model, derive_seed(self.context.seed, int(key.removeprefix("step-")), "offset"))

    def _add_snapshot(self, step: int) -> None:
        """Save the policy to opponents/step-N (so a resumed run reloads the same pool), add it
        to the pool and let the oldest beyond `keep` go once its games end."""
        key = f"step-{step:06d}"
        self.policy.save_evaluator(self._snapshot_dir(key))
        self.opponents[key] = self._snapshot_opponent(key, self.policy.snapshot())
        self.past_pool = sorted({*self.past_pool, key})[-self.cfg.past_opponents.keep:]
        self._release_retired()

    def _release_retired(self) -> None:
        playing = {ep.opponent for ep in self.scheduler.lanes if ep is not None}
        for key in [k for k in self.opponents if k != FIXED and k not in self.past_pool and k not in playing]:
            del self.opponents[key]
