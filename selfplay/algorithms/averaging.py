"""Polyak averaging: a running average of the policy's weights.

Why: in an imperfect-information game such as Kuhn Poker, self-play policy gradient circles
the equilibrium instead of settling on it. At a mixed equilibrium each player is
indifferent between its mixed actions, so near it the gradient that pins the mixing
probabilities is small against the sampling noise, and the last policy wanders. The
*time average* of the policies is what converges in such games (fictitious play; CFR's
average strategy). While the weights move in a small region, averaging the weights
averages the logits, so the averaged model plays close to the average policy.

The learner keeps training the online weights; the average is what evaluation sees and
what checkpoints export (`selfplay eval --agent llm:RUN_DIR`, `selfplay play`).

Until the cap `decay` is reached the average weights the policy after update t by t + 1
(linear averaging, as CFR+ averages its strategies): recent policies count more, the early
near-random ones little, and the average spans the whole run, not a fixed window.
After that it is an exponential moving average over about 1 / (1 - decay) updates:
    decay_t = min(decay, t / (t + 2))        t = updates so far
    average <- average + (1 - decay_t) * (online - average)
The Kuhn preset uses decay 0.995: linear up to step ~400, then about the last 200 steps.
Longer windows (0.998, or linear over the whole run) measured worse there: they keep
policies from before the drift settled (docs/spiral.md).
"""

from __future__ import annotations

import torch


def average_decay(decay: float, updates: int) -> float:
    """The decay used for the update after `updates` earlier ones."""
    return min(decay, updates / (updates + 2))


class WeightAverage:
    def __init__(self, average_model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"averaging decay must be in (0, 1), got {decay}")
        self.model = average_model.eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, online: torch.nn.Module) -> None:
        weight = 1.0 - average_decay(self.decay, self.updates)
        avg = list(self.model.parameters())
        new = list(online.parameters())
        if len(avg) != len(new):
            raise ValueError("the averaged model and the online model have different parameters")
        torch._foreach_lerp_(avg, [p.detach() for p in new], weight)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates}  # the weights are saved as a model

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
