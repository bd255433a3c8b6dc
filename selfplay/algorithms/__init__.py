"""Algorithms: advantage estimators, policy losses, the PPO learner. Knows nothing of games."""

from selfplay.algorithms.advantages import (
    RAEBaselines,
    drop_zero_advantage,
    grpo_advantages,
    rae_advantages,
    raw_advantages,
    trr_plus_plus_advantages,
)
from selfplay.algorithms.averaging import WeightAverage, average_decay
from selfplay.algorithms.learner import Learner
from selfplay.algorithms.losses import aggregate, kl_penalty, ppo_clip_loss

__all__ = [
    "RAEBaselines", "drop_zero_advantage", "grpo_advantages", "rae_advantages", "raw_advantages",
    "trr_plus_plus_advantages", "WeightAverage", "average_decay", "Learner", "aggregate", "kl_penalty", "ppo_clip_loss",
]
