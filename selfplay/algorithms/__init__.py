"""Algorithms: advantage estimators, policy losses, the PPO learner. Knows nothing of games."""

from selfplay.algorithms.advantages import (
    RAEBaselines,
    drop_zero_advantage,
    grpo_advantages,
    learnability_reward,
    lsp_advantages,
    query_values,
    rae_advantages,
    raw_advantages,
    rzero_reward,
    trr_plus_plus_advantages,
)
from selfplay.algorithms.averaging import WeightAverage, average_decay
from selfplay.algorithms.learner import Learner, LearnerSettings
from selfplay.algorithms.losses import aggregate, kl_penalty, ppo_clip_loss

__all__ = [
    "RAEBaselines", "drop_zero_advantage", "grpo_advantages", "learnability_reward", "lsp_advantages",
    "query_values", "rae_advantages", "raw_advantages", "rzero_reward", "trr_plus_plus_advantages",
    "WeightAverage", "average_decay", "Learner", "LearnerSettings", "aggregate", "kl_penalty", "ppo_clip_loss",
]
