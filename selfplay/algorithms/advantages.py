"""Advantage estimators: turn each Sample's reward into `Sample.advantage`.

All of them are "per-role baselines" (ALGORITHMS.md section 4); they differ in what
the baseline is:

    rae_advantages            SPIRAL   A = R - b[task, role], b an EMA kept across steps
    raw_advantages            RAE off  A = R
    grpo_advantages           RLVR     A = r - mean(r of the group)   (optionally / std)
    lsp_advantages            LSP      A_sol = R - V(q),  A_ch = r_ch - mean(r_ch)
    trr_plus_plus_advantages  AZR      A = (r - mean[task, role]) / (std[task, role] + eps), in the batch

Each is one function that sets `Sample.advantage` on every sample in place and returns
the same list (so both `rae_advantages(samples, b)` and `samples = rae_advantages(...)`
work); a new estimator is one more function here. `drop_zero_advantage` filters afterwards.
At the end: the challenger rewards of LSP's neighbours (ALGORITHMS.md section 2).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

from selfplay.rollout.sample import Sample


class RAEBaselines:
    """Role-conditioned baselines: one EMA of returns per (task, role), b starting at 0.

        b[task, role] <- alpha * b[task, role] + (1 - alpha) * R

    Persist `state_dict()` in checkpoints: the baselines carry across training steps.
    """

    def __init__(self, alpha: float = 0.95):
        if not 0 <= alpha < 1:
            raise ValueError(f"RAE alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha
        self.values: dict[tuple[str, str], float] = {}

    def get(self, task: str, role: str) -> float:
        return self.values.get((task, role), 0.0)

    def update(self, task: str, role: str, episode_return: float) -> None:
        self.values[task, role] = self.alpha * self.get(task, role) + (1 - self.alpha) * episode_return

    def state_dict(self) -> dict:
        # lists, not tuple keys, so the state is JSON-able
        return {"alpha": self.alpha, "baselines": [[t, r, b] for (t, r), b in sorted(self.values.items())]}

    def load_state_dict(self, state: dict) -> None:
        self.alpha = state["alpha"]
        self.values = {(t, r): float(b) for t, r, b in state["baselines"]}


def rae_advantages(samples: list[Sample], baselines: RAEBaselines) -> list[Sample]:
    """SPIRAL's RAE: A = R - b[task, role], b read before this episode's update.

    Order, exactly: the batch's episodes are taken in ascending `episode_id`. For each
    episode and each of its (task, role) pairs, every sample of that player in that
    episode gets A = R - b (the baseline as it stands *before* the episode), then b is
    updated once with the episode's return R. So with two episodes of the same task and
    role in one batch, the second episode's samples see a baseline that already includes
    the first. (gamma = 1: every turn of a player carries the same return R; anything
    else is an error.) `baselines` is updated in place.
    """
    players: dict[tuple[int, str, str], list[int]] = defaultdict(list)  # (episode, task, role) -> sample indices
    for i, s in enumerate(samples):
        players[s.episode_id, s.task, s.role].append(i)

    for (episode, task, role), indices in players.items():  # check everything before changing anything
        rewards = {samples[i].reward for i in indices}
        if len(rewards) > 1:
            raise ValueError(f"RAE needs one return per player and episode (gamma = 1), but episode "
                             f"{episode} gives {task}/{role} rewards {sorted(rewards)}")

    advantages = [0.0] * len(samples)
    for (episode, task, role), indices in sorted(players.items(), key=lambda item: item[0][0]):
        episode_return = samples[indices[0]].reward
        baseline = baselines.get(task, role)  # read first ...
        for i in indices:
            advantages[i] = episode_return - baseline
        baselines.update(task, role, episode_return)  # ... then update with this episode's return
    for s, advantage in zip(samples, advantages):
        s.advantage = advantage
    return samples


def raw_advantages(samples: list[Sample]) -> list[Sample]:
    """RAE off: A = R (the paper's ablation that ends in "thinking collapse")."""
    for s in samples:
        s.advantage = s.reward
    return samples


def drop_zero_advantage(samples: Iterable[Sample]) -> list[Sample]:
    """Samples with advantage exactly 0 carry no policy gradient; dropping them saves compute.

    Note that with token-mean normalisation this also changes the denominator (fewer tokens).
    """
    return [s for s in samples if s.advantage != 0.0]


# ---------------------------------------------------------------- batch baselines (RLVR, LSP, AZR)

def _group_stats(values: list[float], unbiased: bool, counts: list[int] | None = None) -> tuple[float, float]:
    """Mean and variance of `values`, each counted `counts[i]` times (once by default); the
    variance divides by the count, or by the count - 1 with `unbiased` (0 when that is 0)."""
    if counts is None:
        mean = sum(values) / len(values)
        dof = len(values) - 1 if unbiased else len(values)
        var = sum((v - mean) ** 2 for v in values) / dof if dof > 0 else 0.0
        return mean, var
    total = sum(counts)
    mean = sum(n * v for n, v in zip(counts, values)) / total
    dof = total - 1 if unbiased else total
    var = sum(n * (v - mean) ** 2 for n, v in zip(counts, values)) / dof if dof > 0 else 0.0
    return mean, var


def _groups_of(samples: list[Sample], roles: Iterable[str] | None = None) -> dict[str, list[int]]:
    """`Sample.group` -> indices of the samples (of `roles`, if given) that answer it."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        if roles is not None and s.role not in roles:
            continue
        if s.group is None:
            raise ValueError(f"sample {i} ({s.task}/{s.role}) has no Sample.group: a group-relative baseline "
                             f"needs the prompt or query each response answers")
        groups[s.group].append(i)
    return groups


def grpo_advantages(samples: list[Sample], scale_by_std: bool = False, eps: float = 1e-6,
                    unbiased: bool = False) -> list[Sample]:
    """Group-relative: A = r - mean_g(r), or A = (r - mean_g(r)) / (std_g(r) + eps) with `scale_by_std`.

    The group g is `Sample.group`, the prompt the response answers. std is the population
    std (`unbiased=True`: divide by n - 1). Without the std it is Dr. GRPO's; with it, GRPO's.
    """
    groups = _groups_of(samples)
    for indices in groups.values():
        r = [samples[i].reward for i in indices]
        mean, var = _group_stats(r, unbiased)
        std = math.sqrt(var)
        for i in indices:
            s = samples[i]
            s.advantage = (s.reward - mean) / (std + eps) if scale_by_std else s.reward - mean
    return samples


def query_values(samples: list[Sample], solver: str = "solver") -> dict[str, float]:
    """V(q) = mean_j R(q, a^j): each query's mean reward over the solver's answers to it (low: hard).

    The solver samples are those with role `solver`; q is their `Sample.group`.
    """
    return {q: sum(samples[i].reward for i in indices) / len(indices)
            for q, indices in _groups_of(samples, roles=(solver,)).items()}


def lsp_advantages(samples: list[Sample], solver: str = "solver", challenger: str = "challenger") -> list[Sample]:
    """LSP (ALGORITHMS.md section 2): the solver against its query's value, the challenger against the batch.

        V(q)  = mean_j R(q, a^j)        over the solver samples answering q (`Sample.group`)
        A_sol = R - V(q)                no division by a std
        A_ch  = r_ch - mean(r_ch)       over the batch's challenger samples

    The recipe sets each challenger sample's reward r_ch beforehand: -V(q), so that
    A_ch = Vbar - V(q) with Vbar = mean_q V(q); or -V(q) + V_Q(q) with the quality
    self-reward. A sample of any other role is an error. `query_values` gives V(q).
    """
    other = sorted({s.role for s in samples} - {solver, challenger})
    if other:
        raise ValueError(f"lsp_advantages takes roles {solver!r} and {challenger!r}, got {other}")
    V = query_values(samples, solver)
    r_ch = [s.reward for s in samples if s.role == challenger]
    mean_r_ch = sum(r_ch) / len(r_ch) if r_ch else 0.0
    for s in samples:
        if s.role == solver:
            s.advantage = s.reward - V[s.group]  # A_sol
        else:
            s.advantage = s.reward - mean_r_ch  # A_ch
    return samples


def trr_plus_plus_advantages(samples: list[Sample], eps: float = 1e-8, token_weighted: bool = False) -> list[Sample]:
    """AZR's Task-Relative REINFORCE++: one baseline per (task, role) within the batch.

        A = (r - mean[task, role]) / (std[task, role] + eps)

    Per sequence (the paper's equation; the default): mean and std over that (task, role)'s
    samples, the std Bessel-corrected (divide by n - 1) and eps 1e-8, both as in the authors'
    code. `token_weighted=True` is the authors' code (verl's `masked_whiten` per (task, role)):
    every response token carries its sequence's reward, so a sample counts len(response_ids)
    times, n counts tokens, and A = (r - mean) / sqrt(var + eps) (eps under the root: the same
    as + eps unless std is near 0). One sample (or token) alone has std 0, and A = 0.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[s.task, s.role].append(i)
    for indices in groups.values():
        r = [samples[i].reward for i in indices]
        n = [len(samples[i].response_ids) for i in indices] if token_weighted else None
        mean, var = _group_stats(r, unbiased=True, counts=n)
        scale = math.sqrt(var + eps) if token_weighted else math.sqrt(var) + eps
        for i in indices:
            s = samples[i]
            s.advantage = (s.reward - mean) / scale
    return samples


# ---------------------------------------------------------------- challenger rewards of LSP's neighbours

def rzero_reward(p: float) -> float:
    """R-Zero: r = 1 - 2|p - 1/2|, p the share of the solver's m answers that agree with their
    majority answer. Highest (1) when the solver is split half and half, 0 at p = 0 or 1."""
    if not 0 <= p <= 1:
        raise ValueError(f"p is a share of answers, in [0, 1]; got {p}")
    return 1 - 2 * abs(p - 0.5)


def learnability_reward(s: float) -> float:
    """AZR's learnability: r = 1 - s if 0 < s < 1 else 0, s the solver's solve rate. A task
    always or never solved teaches nothing; among the rest, the harder the better."""
    if not 0 <= s <= 1:
        raise ValueError(f"s is a solve rate, in [0, 1]; got {s}")
    return 1 - s if 0 < s < 1 else 0.0
