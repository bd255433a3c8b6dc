"""The Game interface every game implements (rules only, nothing about models).

Modelled on OpenSpiel's State: a game object *is* the current state of one match.
Actions are canonical strings such as "[4]" or "[bet]"; the model's raw text is turned
into one by `parse`, in the game's observation style. Algorithms never look behind this.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass

STYLES = ("chat", "compact")

# Returns when a player makes an invalid move: (offender, opponent).
# "default" keeps the game zero-sum; "spiral" is the original SPIRAL code's quirk.
INVALID_PENALTIES = {"default": (-1.0, 1.0), "spiral": (-1.5, 0.5)}


@dataclass(frozen=True)
class InvalidMove:
    player: int
    text: str  # what the player wrote (possibly truncated for display)
    reason: str  # human-readable: why it is not a legal move


@dataclass(slots=True)  # not frozen: built every step, and frozen construction is slow
class StepResult:
    action: str | None  # the legal action that was applied, None if the move was invalid
    invalid: InvalidMove | None
    done: bool


@dataclass(slots=True)
class Parsed:
    action: str | None  # a legal action, or None
    reason: str | None = None  # why not, when action is None


class Game(ABC):
    """One match of a two-player zero-sum game.

    Subclasses implement the rules (`_reset`, `legal_actions`, `_apply`, `_terminal`,
    `_returns`, the observations, `information_state`). This base class handles the
    shared conventions: invalid moves end the game with the configured penalty, the
    turn limit gives a draw, and every step goes through `parse`.
    """

    name: str = "game"
    num_players: int = 2
    # What an evaluation can measure exactly for this game, as data (so no evaluation tests
    # game names): "optimal_moves" (a perfect-play solver rates every move, e.g. minimax for
    # TicTacToe) and "exploitability" (OpenSpiel computes the exact best response). Games
    # whose answer depends on their options override `exact_measures`.
    measures: tuple[str, ...] = ()

    @property
    def exact_measures(self) -> tuple[str, ...]:
        return self.measures

    def __init__(
        self,
        style: str = "chat",
        invalid_penalty: str | tuple[float, float] = "default",
        lenient: bool = False,
        max_turns: int = 50,
    ):
        if style not in STYLES:
            raise ValueError(f"unknown observation style {style!r}; choose one of {STYLES}")
        if isinstance(invalid_penalty, str):
            if invalid_penalty not in INVALID_PENALTIES:
                raise ValueError(
                    f"unknown invalid_penalty {invalid_penalty!r}; choose one of "
                    f"{sorted(INVALID_PENALTIES)} or give (offender, opponent) returns"
                )
            invalid_penalty = INVALID_PENALTIES[invalid_penalty]
        self.style = style
        self.invalid_penalty = tuple(float(x) for x in invalid_penalty)
        self.lenient = lenient
        self.max_turns = max_turns
        self.reset()

    # ---- lifecycle -------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Game:
        """Start a new match; `seed` fixes any chance events (deals, starting offers)."""
        self.turn = 0
        self.history: list[tuple[int, str]] = []  # (player, action), never the reasoning
        self.invalid: InvalidMove | None = None
        self._truncated = False
        self._reset(seed)
        self._sync_over()
        return self

    def clone(self) -> Game:
        return copy.deepcopy(self)

    # ---- moving ------------------------------------------------------------------
    def step(self, text: str) -> StepResult:
        """Play the current player's raw text. Never raises for bad text: an unparsable or
        illegal move ends the game with the invalid-move penalty and a reason."""
        if self._over:
            raise RuntimeError("step() on a finished game; call reset()")
        action = self._exact_action(text)
        if action is None:
            parsed = self.parse(text)
            if parsed.action is None:
                shown = text if len(text) <= 200 else text[:200] + "..."
                self.invalid = InvalidMove(self.current_player, shown, parsed.reason or "invalid move")
                self._over = True
                return StepResult(None, self.invalid, True)
            action = parsed.action
        # _commit, inlined: this is the hot path of every rollout. (parse only returns
        # legal actions.)
        self.history.append((self.current_player, action))
        self._apply(action)
        self.turn += 1
        over = self._over = self._terminal()
        if not over and self.turn >= self.max_turns:
            self._truncated = self._over = over = True
        return StepResult(action, None, over)

    def apply(self, action: str) -> None:
        """Apply a legal canonical action (programming errors raise ValueError)."""
        if self.is_terminal():
            raise RuntimeError("apply() on a finished game; call reset()")
        if not self.is_legal(action):
            raise ValueError(f"{action!r} is not legal here; legal: {self.legal_actions()}")
        self._commit(action)

    def _commit(self, action: str) -> None:
        self.history.append((self.current_player, action))
        self._apply(action)
        self.turn += 1
        self._over = self._terminal()
        if not self._over and self.turn >= self.max_turns:
            self._truncated = self._over = True

    def _sync_over(self) -> None:
        """Recompute the cached `is_terminal()` after changing the state by hand."""
        self._over = self.invalid is not None or self._truncated or self._terminal()

    def is_terminal(self) -> bool:
        # Asked several times per step (by the caller, step, observations), so cached in
        # `_over` and refreshed wherever the state changes: reset, _commit, an invalid move.
        return self._over

    @property
    def length(self) -> int:
        """Turns taken, counting a final invalid move."""
        return self.turn + (self.invalid is not None)

    @property
    def truncated(self) -> bool:
        """Whether the game ended at its turn limit (a draw)."""
        return self._truncated

    def returns(self) -> list[float]:
        """Per-player returns; zeros while the game is running."""
        if self.invalid is not None:
            offender, other = self.invalid_penalty
            out = [other] * self.num_players
            out[self.invalid.player] = offender
            return out
        if self._truncated or not self._terminal():
            return [0.0] * self.num_players
        return self._returns()

    def is_legal(self, action: str) -> bool:
        """Whether the canonical `action` is legal now. Games whose action set is too
        large to list (negotiation offers) override this and `legal_actions` lists a
        representative subset."""
        return action in self.legal_actions()

    def sample_action(self, rng) -> str:
        """A random legal action (`rng` is a `random.Random`); what random agents play.
        Uniform over `legal_actions()` unless the game says otherwise."""
        return rng.choice(self.legal_actions())

    def format_action(self, action: str) -> str:
        """Text that `parse` maps back to `action` in this game's style (used by scripted
        agents, so that every agent's move goes through the same `step`)."""
        if self.style == "chat":
            return f"\\boxed{{{action}}}"
        return action[1:-1] if action.startswith("[") and action.endswith("]") else action

    def parse(self, text: str) -> Parsed:
        """Turn raw text into a legal action (see selfplay.games.extract)."""
        action = None if self._over else self._exact_action(text)
        if action is not None:
            return Parsed(action)
        parser = parse_chat if self.style == "chat" else parse_compact
        return parser(text, self.legal_actions(), lenient=self.lenient)

    def _exact_action(self, text: str) -> str | None:
        """Fast path of `parse`, tried first: the legal action that `text` names when it is
        written exactly as `format_action` writes it (what scripted agents and well-trained
        models send), else None and `parse` reads the text in full. Games override it with
        a dictionary lookup; it must never disagree with the full reading. Only called while
        the game is running."""
        return None

    # ---- what subclasses provide -------------------------------------------------
    @property
    @abstractmethod
    def current_player(self) -> int:
        """The player to move (meaningless once terminal)."""

    @abstractmethod
    def legal_actions(self) -> list[str]:
        """Canonical action strings legal for the current player."""

    @abstractmethod
    def observation(self, player: int | None = None) -> str:
        """What `player` (default: the current one) sees, in this game's style."""

    def brief_observation(self) -> str:
        """The current player's view in as few words as it can be said, for small models
        (the `brief` prompt); by default the full chat observation."""
        view = self.clone()
        view.style = "chat"
        return view.observation()

    @abstractmethod
    def information_state(self, player: int | None = None) -> str:
        """A key identifying everything `player` knows (equal keys = same decision)."""

    @abstractmethod
    def _reset(self, seed: int | None) -> None: ...

    @abstractmethod
    def _apply(self, action: str) -> None: ...

    @abstractmethod
    def _terminal(self) -> bool: ...

    @abstractmethod
    def _returns(self) -> list[float]: ...


# At the end: extract.py needs Parsed from this module.
from selfplay.games.extract import parse_chat, parse_compact  # noqa: E402
