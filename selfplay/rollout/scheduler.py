"""Plays many games at once and batches every pending model turn into one generation call.

Continuous batching: a lane whose game ends starts a new game at once, so every
generation call is as full as `parallel_games` allows. Games still running when a step
has its samples carry over into the next step (their earlier turns keep the log-probs
of the policy that sampled them, which is what PPO's ratio needs). `lockstep=True`
reproduces the original SPIRAL loop instead: all games start together and the batch
shrinks as they end (kept for the benchmark).

Opponents: in self-play (`opponent=None`) the learner holds both seats. A fixed
`opponent` agent takes the other seat of every episode. `past_opponents` (a pool of
agents, e.g. earlier snapshots of the policy, that the trainer fills) take the other seat
of a `past_fraction` share of new self-play episodes: each `collect` draws one of them for
the episodes it starts (one snapshot per step, so a round makes one or two generation
calls for snapshots, not one per snapshot in the pool). Against an opponent only the
learner's seat makes samples, and its seat alternates.

Scheduling: `round` (the default) makes one generation call per round for every pending
learner turn, so a round lasts as long as its longest answer. `token` hands turns to a
token-level engine (`generator.engine`) instead: each round adds the new turns and
generates one token for every turn in flight, and a game moves on as soon as its own
answer ends while longer answers keep generating. `collect` lets the answers in flight
finish before it returns, so nothing but games is carried between steps.

`random_opening_moves=N` starts every new episode after 0..N (uniformly) random legal
moves that are not trained, so training also meets positions its own play avoids.

Each learner turn becomes a `Sample`; when its game ends, every sample of a seat gets
that seat's final return (gamma = 1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Callable

from selfplay.agents.base import Agent
from selfplay.agents.llm import GamePrompter
from selfplay.games import make as make_game
from selfplay.games.base import Game
from selfplay.rollout.sample import Sample

LEARNER = "learner"
FIXED = "fixed"  # Episode.opponent of an episode against the fixed `opponent`


@dataclass
class GameChoice:
    name: str
    options: dict
    weight: float = 1.0
    max_new_tokens: int | None = None  # this game's generation limit (None: the sampling's)


@dataclass
class Episode:
    id: int
    game_name: str
    game: Game
    seed: int
    learner_seats: tuple[int, ...]  # (0, 1) in self-play, one seat against an opponent
    opponent: str | None = None  # None in self-play; else FIXED or a key of past_opponents
    samples: list[Sample] = field(default_factory=list)
    transcript: list[dict] = field(default_factory=list)


@dataclass
class EpisodeResult:
    id: int
    game_name: str
    learner_seats: tuple[int, ...]
    returns: list[float]
    length: int
    invalid: str | None  # reason, when the game ended on an invalid move
    invalid_by_learner: bool
    transcript: list[dict]
    opponent: str | None = None


class RolloutScheduler:
    def __init__(
        self,
        games: list[GameChoice],
        style: str,
        generator,
        prompter: GamePrompter,
        sampling,
        parallel_games: int,
        seed: int = 0,
        opponent: Agent | None = None,
        lockstep: bool = False,
        make: Callable[..., Game] = make_game,
        legal_token_ids: bool = False,
        past_fraction: float = 0.0,
        random_opening_moves: int = 0,
        scheduling: str = "round",
    ):
        self.games, self.style = games, style
        self.generator, self.prompter, self.sampling = generator, prompter, sampling
        self.parallel_games, self.seed, self.opponent, self.lockstep = parallel_games, seed, opponent, lockstep
        self._make = make
        self.legal_token_ids = legal_token_ids  # record each learner turn's legal moves as token ids
        if past_fraction and opponent is not None:
            raise ValueError("past opponents are for self-play; a fixed opponent already takes the other seat")
        self.past_fraction = past_fraction
        self.random_opening_moves = random_opening_moves
        if scheduling not in ("round", "token"):
            raise ValueError(f"scheduling must be 'round' or 'token', got {scheduling!r}")
        self.scheduling = scheduling
        self._engine = None  # token scheduling: made on first use
        self._in_flight: dict[int, list[int]] = {}  # token scheduling: lane -> prompt of its answer in flight
        self.past_opponents: dict[str, Agent] = {}  # the pool, and retired ones still in a game
        self.past_pool: list[str] = []  # the keys each collect draws from
        self._past_drawn: str | None = None  # the snapshot of this collect's new past-opponent episodes
        self._move_tokens: dict[tuple[str, str], int] = {}
        self._rng = random.Random(seed)  # which game each new episode plays
        self.lanes: list[Episode | None] = [None] * parallel_games
        self.next_episode = 0
        self.generate_calls = 0
        self.generated_tokens = 0
        self.rounds = 0  # rounds in which the learner moved (a statistic, not resumed)

    # ---- episodes -----------------------------------------------------------------
    def _new_game(self, choice: GameChoice) -> Game:
        return self._make(choice.name, style=self.style, **choice.options)

    def _start_episode(self) -> Episode:
        choice = self._rng.choices(self.games, weights=[g.weight for g in self.games])[0]
        eid = self.next_episode
        self.next_episode += 1
        game = self._new_game(choice)
        seed = self.seed * 1_000_003 + eid
        game.reset(seed)
        opponent = FIXED if self.opponent is not None else None
        if self._past_drawn and self._rng.random() < self.past_fraction:
            opponent = self._past_drawn
        seats = (0, 1) if opponent is None else (eid % 2,)  # alternate the learner's seat
        episode = Episode(eid, choice.name, game, seed, seats, opponent)
        if self.random_opening_moves:  # 0..N uniformly random moves, not trained
            for _ in range(self._rng.randint(0, self.random_opening_moves)):
                if game.is_terminal():
                    break
                action = self._rng.choice(sorted(game.legal_actions()))
                self._step(episode, game.format_action(action), None)
                episode.transcript[-1]["opening"] = True
        return episode

    def _finish(self, ep: Episode) -> EpisodeResult:
        returns = ep.game.returns()
        for s in ep.samples:
            s.reward = float(returns[int(s.role)])
        inv = ep.game.invalid
        return EpisodeResult(
            ep.id, ep.game_name, ep.learner_seats, returns, ep.game.turn + (inv is not None),
            inv.reason if inv else None, bool(inv and inv.player in ep.learner_seats), ep.transcript,
            ep.opponent,
        )

    # ---- the loop -------------------------------------------------------------------
    def collect(self, min_samples: int) -> tuple[list[Sample], list[EpisodeResult]]:
        """Play until finished episodes hold at least `min_samples` learner turns; return
        all samples of those episodes (whole episodes, so each counts once in RAE)."""
        samples: list[Sample] = []
        results: list[EpisodeResult] = []
        # (no draw without a pool, so plain self-play's episode stream is unchanged)
        self._past_drawn = self._rng.choice(self.past_pool) if self.past_pool and self.past_fraction else None
        while len(samples) < min_samples or self._in_flight:
            draining = len(samples) >= min_samples  # token scheduling: finish the answers in flight
            if not draining:
                self._refill()
                self._play_opponents()
            learner_lanes = [i for i, ep in enumerate(self.lanes)
                             if ep is not None and not ep.game.is_terminal()]
            if self.scheduling == "token":
                self._step_engine([] if draining else [i for i in learner_lanes if i not in self._in_flight])
                self.rounds += 1
            elif learner_lanes:
                self._play_learner(learner_lanes)
                self.rounds += 1
            for i, ep in enumerate(self.lanes):
                if ep is not None and ep.game.is_terminal():
                    results.append(self._finish(ep))
                    samples.extend(ep.samples)
                    self.lanes[i] = None
        if len(self.past_opponents) > len(self.past_pool):
            self._release_retired()
        return samples, results

    def _refill(self) -> None:
        if self.lockstep and any(ep is not None for ep in self.lanes):
            return  # the original loop: wait until the whole wave has finished
        for i, ep in enumerate(self.lanes):
            if ep is None:
                self.lanes[i] = self._start_episode()

    def add_past_opponent(self, key: str, agent: Agent, keep: int) -> None:
        """Put `agent` in the pool under `key` (keys sort by age); the pool keeps the newest
        `keep`. A retired opponent finishes the games it is in, then is let go."""
        self.past_opponents[key] = agent
        self.past_pool = sorted({*self.past_pool, key})[-keep:]
        self._release_retired()

    def _release_retired(self) -> None:
        playing = {ep.opponent for ep in self.lanes if ep is not None}
        for key in [k for k in self.past_opponents if k not in self.past_pool and k not in playing]:
            del self.past_opponents[key]

    def _agent(self, key: str) -> Agent:
        return self.opponent if key == FIXED else self.past_opponents[key]

    def _play_opponents(self) -> None:
        """Let the opponents move (one batched call per opponent) until every lane waits on the learner."""
        while True:
            waiting: dict[str, list[Episode]] = {}
            for ep in self.lanes:
                if (ep is not None and ep.opponent is not None and not ep.game.is_terminal()
                        and ep.game.current_player not in ep.learner_seats):
                    waiting.setdefault(ep.opponent, []).append(ep)
            if not waiting:
                return
            for key in sorted(waiting):
                eps = waiting[key]
                for ep, text in zip(eps, self._agent(key).act_batch([ep.game for ep in eps])):
                    self._step(ep, text, None)

    def _limit(self, game_name: str) -> int:
        """A game's generation limit (a game of the mixture may set its own `max_new_tokens`)."""
        return next(g.max_new_tokens for g in self.games if g.name == game_name) or self.sampling.max_new_tokens

    def _play_learner(self, lane_ids: list[int]) -> None:
        # One generation call per generation limit (one call in all unless a game of the
        # mixture sets its own `max_new_tokens`).
        groups: dict[int, list[Episode]] = {}
        for i in lane_ids:
            groups.setdefault(self._limit(self.lanes[i].game_name), []).append(self.lanes[i])
        for limit, eps in sorted(groups.items()):
            prompts = [self.prompter.ids(ep.game) for ep in eps]
            self.generate_calls += 1
            gens = self.generator.generate(prompts, replace(self.sampling, max_new_tokens=limit),
                                           seed=self.seed * 7_919 + self.generate_calls)
            for ep, prompt, gen in zip(eps, prompts, gens):
                self._learner_moved(ep, prompt, gen)

    def _step_engine(self, lane_ids: list[int]) -> None:
        """Token scheduling: add the new turns of `lane_ids`, generate one token for every
        turn in flight, and play the answers that ended."""
        if self._engine is None:
            self._engine = self.generator.engine(self.sampling)
        cap = getattr(self.generator, "max_batch_size", None)  # the most turns in flight at once
        if cap:
            lane_ids = lane_ids[:max(cap - len(self._in_flight), 0)]
        requests = []
        for i in lane_ids:
            self._in_flight[i] = self.prompter.ids(self.lanes[i].game)
            requests.append((i, self._in_flight[i], self._limit(self.lanes[i].game_name)))
        if not self._in_flight:
            return
        self.generate_calls += 1
        for i, gen in self._engine.step(requests, seed=self.seed * 7_919 + self.generate_calls):
            self._learner_moved(self.lanes[i], self._in_flight.pop(i), gen)

    def _learner_moved(self, ep: Episode, prompt: list[int], gen) -> None:
        """Record the learner's answer `gen` to `prompt` as a sample and play it."""
        self.generated_tokens += len(gen.response_ids)
        sample = Sample(
            prompt_ids=prompt, response_ids=list(gen.response_ids), logprobs=list(gen.logprobs),
            game=ep.game_name, role=str(ep.game.current_player), episode_id=ep.id, reward=0.0,
            truncated=gen.truncated, info={"turn": ep.game.turn, "text": gen.text},
            legal_token_ids=self._legal_tokens(ep) if self.legal_token_ids else None,
        )
        ep.samples.append(sample)
        self._step(ep, gen.text, sample)

    def _legal_tokens(self, ep: Episode) -> list[int]:
        out = []
        for action in ep.game.legal_actions():
            text = ep.game.format_action(action)
            token = self._move_tokens.get((ep.game_name, text))
            if token is None:
                ids = self.prompter.tokenizer(text, add_special_tokens=False)["input_ids"]
                if len(ids) != 1:
                    raise ValueError(f"the legal-move entropy needs one-token moves, but {ep.game_name}'s move "
                                     f"{text!r} is {len(ids)} tokens; use optim.entropy_over=vocab "
                                     "(or style=compact for games with one-character moves)")
                token = self._move_tokens[(ep.game_name, text)] = ids[0]
            out.append(token)
        return out

    def _step(self, ep: Episode, text: str, sample: Sample | None) -> None:
        player = ep.game.current_player
        result = ep.game.step(text)
        ep.transcript.append({"player": player, "text": text, "action": result.action,
                              "invalid": result.invalid.reason if result.invalid else None})
        if sample is not None and result.invalid is not None:
            sample.info["invalid"] = result.invalid.reason

    # ---- exact resume -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly, as plain data: games in flight are
        stored as (name, seed, actions) and replayed on load, never pickled."""
        lanes = []
        for ep in self.lanes:
            if ep is None:
                lanes.append(None)
                continue
            lanes.append({
                "id": ep.id, "game_name": ep.game_name, "seed": ep.seed,
                "learner_seats": list(ep.learner_seats), "opponent": ep.opponent,
                "actions": [a for _, a in ep.game.history],
                "samples": [vars(s) for s in ep.samples], "transcript": ep.transcript,
            })
        return {"lanes": lanes, "next_episode": self.next_episode, "generate_calls": self.generate_calls,
                "generated_tokens": self.generated_tokens, "rng": _rng_state_to_list(self._rng.getstate()),
                "opponent_rng": _rng_state_to_list(self.opponent.rng.getstate()) if self.opponent else None,
                # a model opponent (`frozen`) seeds each generation call from its call count
                "opponent_calls": getattr(self.opponent, "_calls", None),
                # past opponents' keys (the trainer reloads their weights) and call counts
                "past_opponents": {k: getattr(a, "_calls", None) for k, a in self.past_opponents.items()},
                "past_pool": self.past_pool}

    def load_state_dict(self, state: dict) -> None:
        choices = {g.name: g for g in self.games}
        self.lanes = []
        for lane in state["lanes"]:
            if lane is None:
                self.lanes.append(None)
                continue
            game = self._new_game(choices[lane["game_name"]])
            game.reset(lane["seed"])
            for action in lane["actions"]:
                game.apply(action)
            ep = Episode(lane["id"], lane["game_name"], game, lane["seed"], tuple(lane["learner_seats"]),
                         lane.get("opponent", FIXED if self.opponent is not None else None),
                         [Sample(**s) for s in lane["samples"]], lane["transcript"])
            self.lanes.append(ep)
        self.next_episode, self.generate_calls = state["next_episode"], state["generate_calls"]
        self.generated_tokens = state["generated_tokens"]
        self._rng.setstate(_rng_state_from_list(state["rng"]))
        if self.opponent is not None and state["opponent_rng"] is not None:
            self.opponent.rng.setstate(_rng_state_from_list(state["opponent_rng"]))
        if state.get("opponent_calls") is not None:
            self.opponent._calls = state["opponent_calls"]
        missing = set(state.get("past_opponents", {})) - set(self.past_opponents)
        if missing:
            raise ValueError(f"the rollout state plays past opponents {sorted(missing)} that are not loaded")
        for key, calls in state.get("past_opponents", {}).items():
            if calls is not None:
                self.past_opponents[key]._calls = calls
        self.past_pool = list(state.get("past_pool", []))


def _rng_state_to_list(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_state_from_list(state):
    version, internal, gauss = state
    return (version, tuple(internal), gauss)

