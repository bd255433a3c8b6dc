"""The one record every recipe produces and every learner consumes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sample:
    """One generated response (a game turn, a query, an answer) and how it scored."""

    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]  # log-probs of response_ids under the policy that sampled them
    task: str  # game or task type, e.g. "tictactoe", "deduction"; baselines are kept per (task, role)
    role: str  # seat ("0", "1") or role name ("challenger", "solver", "propose")
    episode_id: int  # the episode (game, query, task) it belongs to; RAE orders episodes by it
    reward: float  # SPIRAL: the player's final return (gamma = 1); LSP/AZR/RLVR: the response's reward
    advantage: float = 0.0  # filled by an estimator in selfplay.algorithms.advantages
    group: str | None = None  # what the response answers (a prompt or query): group-relative baselines
    weight: float = 1.0  # the sample's weight in the loss (e.g. LSP's alpha_ch on challenger samples)
    truncated: bool = False  # hit the generation limit before EOS
    # token ids of the legal moves, when asked for and every move is one token (the
    # learner's legal-move entropy bonus needs them)
    legal_token_ids: list[int] | None = None
    # the only tokens its sampler could draw (SamplingParams.allowed_token_ids), when the recipe
    # trains the policy it sampled from: the learner's log-probs are then over these tokens, and
    # `logprobs` (over the whole vocabulary, as generators give them) are not used. None: any token
    allowed_token_ids: tuple[int, ...] | None = None
    info: dict = field(default_factory=dict)  # free-form: turn index, invalid reason, text
