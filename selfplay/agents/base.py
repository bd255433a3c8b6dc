"""The Agent interface: who chooses a move.

An agent returns *text* that goes through `game.step`, exactly as a model's response
does, so scripted opponents and language models are judged by the same rules.
Agents that can say how likely each legal action is (needed for exact exploitability)
implement `action_probabilities`.

A model-backed agent (the `llm` agent of the trainer) fits the same shape:
- `act_batch(games)` generates one response per game in a single batched call; the
  arena groups every pending turn of an agent across concurrent games into one call.
- `action_probabilities(game)` gives the probability of each legal action *string*
  (e.g. the normalised likelihood of "\\boxed{[bet]}" vs "\\boxed{[check]}"), which is
  what exact exploitability needs.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod

from selfplay.games.base import Game
from selfplay.seeding import rng_state_from_list, rng_state_to_list


class Agent(ABC):
    name: str = "agent"
    interactive: bool = False  # a person at a terminal: the arena plays one game at a time

    def __init__(self, seed: int | None = None):
        self.rng = random.Random(seed)

    def seed(self, seed: int | None) -> None:
        self.rng.seed(seed)

    def state_dict(self) -> dict:
        """What a resumed run needs to continue this agent's choices exactly (JSON-able)."""
        return {"rng": rng_state_to_list(self.rng.getstate())}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(rng_state_from_list(state["rng"]))

    @abstractmethod
    def act(self, game: Game) -> str:
        """The response text for the current player of `game` (not modified)."""

    def act_batch(self, games: list[Game]) -> list[str]:
        """Many games at once; model-backed agents override this to batch generation."""
        return [self.act(g) for g in games]

    def action_probabilities(self, game: Game) -> dict[str, float]:
        """Probability of each legal action of the current player (sums to 1)."""
        raise NotImplementedError(f"agent {self.name!r} does not expose action probabilities")

    def action_probabilities_batch(self, games: list[Game]) -> list[dict[str, float]]:
        """Many decisions at once (exploitability asks at every information state: 12 for
        Kuhn, 936 for Leduc); model-backed agents override this to batch forward passes."""
        return [self.action_probabilities(g) for g in games]

    # ---- helpers shared by the built-in agents ---------------------------------------
    @property
    def has_action_probabilities(self) -> bool:
        """True if this agent overrides `action_probabilities` (exploitability needs it)."""
        return type(self).action_probabilities is not Agent.action_probabilities

    def sample(self, probs: dict[str, float]) -> str:
        """Draw one action from `probs` with this agent's RNG (reproducible given the seed).

        Actions are visited in sorted order so the draw does not depend on dict order."""
        actions = sorted(probs)
        return self.rng.choices(actions, weights=[probs[a] for a in actions])[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
