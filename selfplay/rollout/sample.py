"""The one record every recipe produces and every learner consumes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sample:
    """One generated response (a game turn, a query, an answer) and how it scored."""

    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]  # log-probs of response_ids under the policy that sampled them
    game: str  # game or task name, e.g. "tictactoe"; advantages are kept per (game, role)
    role: str  # seat ("0", "1") or role name ("challenger", "solver", "propose_deduction")
    episode_id: int
    reward: float  # for SPIRAL: the player's final return of the episode (gamma = 1)
    advantage: float = 0.0  # filled by an estimator in selfplay.algorithms.advantages
    truncated: bool = False  # hit the generation limit before EOS
    # token ids of the legal moves, when asked for and every move is one token (the
    # learner's legal-move entropy bonus needs them)
    legal_token_ids: list[int] | None = None
    info: dict = field(default_factory=dict)  # free-form: turn index, invalid reason, text
