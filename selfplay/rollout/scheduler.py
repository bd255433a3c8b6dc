"""Plays many games at once and batches every pending model turn into generation calls.

Continuous batching: a lane whose game ends starts a new game at once, so every
generation call is as full as `parallel_games` allows. Games still running when a step
has its samples carry over into the next step (their earlier turns keep the log-probs
of the policy that sampled them, which is what PPO's ratio needs). `lockstep=True`
reproduces the original SPIRAL loop instead: all games start together and the batch
shrinks as they end (kept for the benchmark).

Who starts which game against whom is the caller's: `start_episode(id)` returns a new
`Episode` (its game, the learner's seats, the key of its opponent in `opponents`, or None
in self-play, where the learner holds both seats). Against an opponent only the
learner's seats make samples; the opponents move in one batched call per opponent.

The learner's turns go through a `Batcher` (round or token scheduling, see
rollout/batching.py). With token scheduling `collect` lets the answers in flight finish
before it returns, so nothing but games is carried between steps.

Each learner turn becomes a `Sample`; when its game ends, every sample of a seat gets
that seat's final return (gamma = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from selfplay.agents.base import Agent
from selfplay.agents.llm import GamePrompter
from selfplay.games.base import Game
from selfplay.rollout.batching import Batcher
from selfplay.rollout.sample import Sample


@dataclass
class Episode:
    id: int
    game_name: str
    game: Game
    seed: int
    learner_seats: tuple[int, ...]  # (0, 1) in self-play, one seat against an opponent
    opponent: str | None = None  # None in self-play; else a key of the scheduler's `opponents`
    max_new_tokens: int | None = None  # this game's generation limit (None: the sampling's)
    samples: list[Sample] = field(default_factory=list)
    transcript: list[dict] = field(default_factory=list)

    def play(self, text: str, sample: Sample | None = None) -> None:
        """Step the game with the current player's text and record the move."""
        player = self.game.current_player
        result = self.game.step(text)
        self.transcript.append({"player": player, "text": text, "action": result.action,
                                "invalid": result.invalid.reason if result.invalid else None})
        if sample is not None and result.invalid is not None:
            sample.info["invalid"] = result.invalid.reason

    def state_dict(self) -> dict:
        """Plain data: the game is stored as its seed and actions and replayed on load."""
        return {"id": self.id, "game_name": self.game_name, "seed": self.seed,
                "learner_seats": list(self.learner_seats), "opponent": self.opponent,
                "max_new_tokens": self.max_new_tokens, "actions": [a for _, a in self.game.history],
                "samples": [vars(s) for s in self.samples], "transcript": self.transcript}

    @classmethod
    def from_state(cls, state: dict, new_game: Callable[[str], Game]) -> Episode:
        game = new_game(state["game_name"])
        game.reset(state["seed"])
        for action in state["actions"]:
            game.apply(action)
        return cls(state["id"], state["game_name"], game, state["seed"], tuple(state["learner_seats"]),
                   state["opponent"], state["max_new_tokens"], [Sample(**s) for s in state["samples"]],
                   state["transcript"])


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


class GameScheduler:
    def __init__(self, start_episode: Callable[[int], Episode], opponents: dict[str, Agent], batcher: Batcher,
                 prompter: GamePrompter, parallel_games: int, lockstep: bool = False,
                 legal_token_ids: bool = False):
        self.start_episode, self.opponents, self.batcher, self.prompter = start_episode, opponents, batcher, prompter
        self.parallel_games, self.lockstep = parallel_games, lockstep
        self.legal_token_ids = legal_token_ids  # record each learner turn's legal moves as token ids
        self._move_tokens: dict[tuple[str, str], int] = {}
        self.lanes: list[Episode | None] = [None] * parallel_games
        self.next_episode = 0
        self.rounds = 0  # rounds in which the learner moved (a statistic, not resumed)

    def _finish(self, ep: Episode) -> EpisodeResult:
        returns = ep.game.returns()
        for s in ep.samples:
            s.reward = float(returns[int(s.role)])
        inv = ep.game.invalid
        return EpisodeResult(
            ep.id, ep.game_name, ep.learner_seats, returns, ep.game.length,
            inv.reason if inv else None, bool(inv and inv.player in ep.learner_seats), ep.transcript,
            ep.opponent,
        )

    # ---- the loop -------------------------------------------------------------------
    def collect(self, min_samples: int) -> tuple[list[Sample], list[EpisodeResult]]:
        """Play until finished episodes hold at least `min_samples` learner turns; return
        all samples of those episodes (whole episodes, so each counts once in RAE)."""
        samples: list[Sample] = []
        results: list[EpisodeResult] = []
        token = self.batcher.scheduling == "token"
        while len(samples) < min_samples or self.batcher.in_flight:
            draining = len(samples) >= min_samples  # token scheduling: finish the answers in flight
            if not draining:
                self._refill()
                self._play_opponents()
            learner_lanes = [i for i, ep in enumerate(self.lanes)
                             if ep is not None and not ep.game.is_terminal()]
            if token:
                new = [] if draining else [i for i in learner_lanes if i not in self.batcher.in_flight]
                self._learner_moved(self.batcher.step([self._request(i) for i in new]))
                self.rounds += 1
            elif learner_lanes:
                self._learner_moved(self.batcher.generate([self._request(i) for i in learner_lanes]))
                self.rounds += 1
            for i, ep in enumerate(self.lanes):
                if ep is not None and ep.game.is_terminal():
                    results.append(self._finish(ep))
                    samples.extend(ep.samples)
                    self.lanes[i] = None
        return samples, results

    def _refill(self) -> None:
        if self.lockstep and any(ep is not None for ep in self.lanes):
            return  # the original loop: wait until the whole wave has finished
        for i, ep in enumerate(self.lanes):
            if ep is None:
                self.lanes[i] = self.start_episode(self.next_episode)
                self.next_episode += 1

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
                for ep, text in zip(eps, self.opponents[key].act_batch([ep.game for ep in eps])):
                    ep.play(text)

    def _request(self, lane: int) -> tuple[int, list[int], int]:
        ep = self.lanes[lane]
        return lane, self.prompter.ids(ep.game), ep.max_new_tokens or self.batcher.sampling.max_new_tokens

    def _learner_moved(self, answers) -> None:
        """Record each learner answer to its lane's prompt as a sample and play it."""
        for lane, prompt, gen in answers:
            ep = self.lanes[lane]
            sample = Sample(
                prompt_ids=prompt, response_ids=list(gen.response_ids), logprobs=list(gen.logprobs),
                task=ep.game_name, role=str(ep.game.current_player), episode_id=ep.id, reward=0.0,
                truncated=gen.truncated, info={"turn": ep.game.turn, "text": gen.text},
                legal_token_ids=self._legal_tokens(ep) if self.legal_token_ids else None,
            )
            ep.samples.append(sample)
            ep.play(gen.text, sample)

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
                                     "(or recipe.style=compact for games with one-character moves)")
                token = self._move_tokens[(ep.game_name, text)] = ids[0]
            out.append(token)
        return out

    # ---- exact resume -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly, as plain data (games are replayed on load)."""
        return {"lanes": [ep.state_dict() if ep is not None else None for ep in self.lanes],
                "next_episode": self.next_episode, "batcher": self.batcher.state_dict()}

    def load_state_dict(self, state: dict, new_game: Callable[[str], Game]) -> None:
        self.lanes = [Episode.from_state(lane, new_game) if lane is not None else None for lane in state["lanes"]]
        self.next_episode = state["next_episode"]
        self.batcher.load_state_dict(state["batcher"])
