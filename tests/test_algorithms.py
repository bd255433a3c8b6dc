"""Advantage estimators and losses against numbers worked out by hand."""

import math

import pytest
import torch

from selfplay.algorithms import (
    RAEBaselines,
    aggregate,
    drop_zero_advantage,
    grpo_advantages,
    kl_penalty,
    ppo_clip_loss,
    rae_advantages,
    raw_advantages,
    trr_plus_plus_advantages,
)
from selfplay.rollout.sample import Sample


def sample(game, role, episode, reward, **info):
    return Sample(prompt_ids=[1], response_ids=[2], logprobs=[-1.0], game=game, role=role,
                  episode_id=episode, reward=reward, info=info)


# ---------------------------------------------------------------- RAE

def test_rae_reads_the_baseline_before_each_episodes_update_in_episode_order():
    # Two tictactoe episodes, listed out of order and interleaved as a scheduler might emit them,
    # plus a kuhn draw. alpha = 0.95, every baseline starts at 0.
    batch = [
        sample("tictactoe", "0", 2, -1.0),
        sample("tictactoe", "0", 1, +1.0),
        sample("tictactoe", "1", 1, -1.0),
        sample("tictactoe", "1", 2, +1.0),
        sample("tictactoe", "0", 1, +1.0),
        sample("kuhn_poker", "0", 3, 0.0),
        sample("tictactoe", "1", 1, -1.0),
    ]
    baselines = RAEBaselines(alpha=0.95)
    out = rae_advantages(batch, baselines)
    # episode 1: seat 0: A = 1 - 0 = 1, then b0 = 0.05 * 1 = 0.05;  seat 1: A = -1, b1 = -0.05
    # episode 2: seat 0: A = -1 - 0.05 = -1.05, then b0 = 0.95 * 0.05 + 0.05 * -1 = -0.0025
    #            seat 1: A = 1 + 0.05 = 1.05,   then b1 = 0.95 * -0.05 + 0.05 * 1 = 0.0025
    # episode 3 (kuhn, its own baseline): A = 0 - 0 = 0, b stays 0
    assert [s.advantage for s in out] == pytest.approx([-1.05, 1.0, -1.0, 1.05, 1.0, 0.0, -1.0])
    assert baselines.get("tictactoe", "0") == pytest.approx(-0.0025)
    assert baselines.get("tictactoe", "1") == pytest.approx(0.0025)
    assert baselines.get("kuhn_poker", "0") == 0.0
    assert out is batch  # set in place, and returned for chaining

    # the baselines persist: a later batch, or a run resumed from the saved state, continues from them
    restored = RAEBaselines()
    restored.load_state_dict(baselines.state_dict())
    later = rae_advantages([sample("tictactoe", "0", 4, +1.0)], restored)
    assert later[0].advantage == pytest.approx(1.0025)  # 1 - (-0.0025)
    assert restored.get("tictactoe", "0") == pytest.approx(0.95 * -0.0025 + 0.05)


def test_rae_state_is_json_friendly_and_rejects_per_turn_rewards():
    import json

    baselines = RAEBaselines(alpha=0.5)
    rae_advantages([sample("g", "challenger", 0, 2.0)], baselines)
    assert json.loads(json.dumps(baselines.state_dict())) == {"alpha": 0.5, "baselines": [["g", "challenger", 1.0]]}
    with pytest.raises(ValueError, match="one return per player"):
        rae_advantages([sample("g", "1", 0, 1.0), sample("g", "0", 1, 1.0), sample("g", "0", 1, 0.0)], baselines)
    assert baselines.values == {("g", "challenger"): 1.0}  # a rejected batch changes no baseline


def test_raw_advantages_and_dropping_zero_advantages():
    batch = raw_advantages([sample("g", "0", 1, 1.0), sample("g", "1", 1, 0.0), sample("g", "0", 2, -1.5)])
    assert [s.advantage for s in batch] == [1.0, 0.0, -1.5]
    assert [s.reward for s in drop_zero_advantage(batch)] == [1.0, -1.5]


# ---------------------------------------------------------------- group-relative (LSP) and TRR++ (AZR)

def test_grpo_is_reward_minus_group_mean_and_optionally_over_std():
    batch = [sample("q", "solver", 0, r, group=g) for r, g in [(1, "a"), (0, "a"), (0, "a"), (1, "a"), (1, "b")]]
    assert [s.advantage for s in grpo_advantages(batch)] == [0.5, -0.5, -0.5, 0.5, 0.0]
    # population std of [1, 0, 0, 1] is 0.5
    scaled = grpo_advantages(batch, scale_by_std=True, eps=1e-12)
    assert [s.advantage for s in scaled[:4]] == pytest.approx([1.0, -1.0, -1.0, 1.0])
    # LSP challenger: reward -V(q) for V = [0.5, 0.25, 1.0]; A = Vbar - V(q) with Vbar = 7/12
    challenger = [sample("q", "challenger", i, -v, group="all") for i, v in enumerate([0.5, 0.25, 1.0])]
    assert [s.advantage for s in grpo_advantages(challenger)] == pytest.approx([1 / 12, 4 / 12, -5 / 12])


def test_trr_plus_plus_normalises_within_each_task_and_role():
    batch = [sample("deduction", "solve", i, r) for i, r in enumerate([1.0, 0.0, 0.0, 0.0])]
    batch += [sample("abduction", "propose", 9, 0.5), sample("abduction", "propose", 10, 0.5)]
    out = trr_plus_plus_advantages(batch, eps=1e-6)
    # deduction/solve: mean 0.25, population std sqrt(3/16) = 0.4330; abduction/propose: all equal -> 0
    std = math.sqrt(3 / 16)
    assert [s.advantage for s in out] == pytest.approx([0.75 / std, -0.25 / std, -0.25 / std, -0.25 / std, 0, 0],
                                                       rel=1e-5)


# ---------------------------------------------------------------- PPO clip loss

# Two responses, three columns; the second has two tokens. Ratios chosen so every case shows:
#   sample 0, A = +1:  r = 1.0 -> -1.0 | r = 1.5 -> max(-1.5, -1.2) = -1.2 (clipped) | r = 0.5 -> max(-0.5, -0.8) = -0.5
#   sample 1, A = -2:  r = 1.1 -> max(2.2, 2.2) = 2.2 | r = 0.7 -> max(1.4, 1.6) = 1.6 (clipped) | padding
# sum over response tokens = -1 - 1.2 - 0.5 + 2.2 + 1.6 = 1.1
RATIOS = torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.7, 3.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ADVANTAGES = torch.tensor([1.0, -2.0])


def test_ppo_clip_loss_by_hand_with_both_normalisations():
    old = torch.full((2, 3), -2.0)
    new = (old + RATIOS.log()).requires_grad_()
    loss, stats = ppo_clip_loss(new, old, ADVANTAGES, MASK, clip=0.2, norm="token_mean")
    assert loss.item() == pytest.approx(1.1 / 5)
    assert stats["clip_fraction"] == pytest.approx(2 / 5)
    # (r - 1) - log r: 0, 0.5 - log 1.5, -0.5 - log 0.5, 0.1 - log 1.1, -0.3 - log 0.7
    kl = [0.0, 0.5 - math.log(1.5), -0.5 - math.log(0.5), 0.1 - math.log(1.1), -0.3 - math.log(0.7)]
    assert stats["approx_kl"] == pytest.approx(sum(kl) / 5)
    # gradient: -A * r / 5 where unclipped, 0 where the clipped term is in force or padding
    loss.backward()
    torch.testing.assert_close(new.grad, torch.tensor([[-0.2, 0.0, -0.1], [0.44, 0.0, 0.0]]))

    constant, _ = ppo_clip_loss(new, old, ADVANTAGES, MASK, clip=0.2, norm="constant", norm_constant=10)
    assert constant.item() == pytest.approx(1.1 / (10 * 2))  # Dr. GRPO: sum / (C * batch)


def test_ppo_ratio_is_exactly_one_when_nothing_changed():
    logprobs = torch.tensor([[-0.3, -2.0, -1.1], [-0.7, -0.2, 0.0]])
    loss, stats = ppo_clip_loss(logprobs, logprobs.clone(), ADVANTAGES, MASK, norm="constant", norm_constant=4)
    assert stats["approx_kl"] == 0.0 and stats["clip_fraction"] == 0.0 and stats["ratio_max"] == 1.0
    assert loss.item() == pytest.approx(-(1.0 * 3 - 2.0 * 2) / (4 * 2))  # -(sum A * tokens) / (C * batch)


def test_aggregate_rejects_unknown_norms_and_missing_constant():
    with pytest.raises(ValueError, match="norm must be one of"):
        aggregate(torch.ones(1, 1), torch.ones(1, 1), norm="seq_mean")
    with pytest.raises(ValueError, match="norm_constant"):
        aggregate(torch.ones(1, 1), torch.ones(1, 1), norm="constant")


# ---------------------------------------------------------------- KL penalty

def test_kl_estimators_by_hand():
    logprobs = torch.tensor([[math.log(0.5), math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.5)]])
    mask = torch.tensor([[1.0, 1.0]])
    # d = log pi - log pi_ref = log 2 on the first token, 0 on the second
    log2 = math.log(2)
    assert kl_penalty(logprobs, ref, mask, "k1")[0].tolist() == pytest.approx([log2, 0.0])
    assert kl_penalty(logprobs, ref, mask, "k2")[0].tolist() == pytest.approx([log2**2 / 2, 0.0])
    # k3 = pi_ref/pi - log(pi_ref/pi) - 1 = 0.5 + log 2 - 1
    assert kl_penalty(logprobs, ref, mask, "k3")[0].tolist() == pytest.approx([0.5 + log2 - 1, 0.0])
    assert kl_penalty(logprobs, ref, torch.tensor([[0.0, 1.0]]), "k3").tolist() == [[0.0, 0.0]]
    with pytest.raises(ValueError, match="k1, k2 or k3"):
        kl_penalty(logprobs, ref, mask, "k4")


def test_weight_average_by_hand():
    """decay_t = min(decay, t/(t+2)); average += (1 - decay_t) * (online - average): below
    the cap, the average of the online weights after updates 0..t weighted 1, 2, ..., t+1."""
    from selfplay.algorithms import WeightAverage, average_decay

    assert average_decay(0.999, 0) == 0.0  # the first update replaces the initial weights
    assert average_decay(0.999, 2) == pytest.approx(0.5)  # 2/4
    assert average_decay(0.999, 5000) == 0.999  # 5000/5002 > 0.999: the cap
    average, online = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        average.weight.fill_(7.0)
    avg = WeightAverage(average, decay=0.999)
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            online.weight.fill_(value)
        avg.update(online)
    # (1*1 + 2*2 + 3*4) / (1 + 2 + 3) = 17/6
    assert average.weight.item() == pytest.approx(17 / 6)
    capped = WeightAverage(torch.nn.Linear(1, 1, bias=False), decay=0.25)
    capped.updates = 10  # past the cap: decay 0.25
    with torch.no_grad():
        capped.model.weight.fill_(0.0)
    capped.update(online)  # 0 + 0.75 * (4 - 0)
    assert capped.model.weight.item() == pytest.approx(3.0)
    assert online.weight.item() == 4.0 and not average.weight.requires_grad
    state = avg.state_dict()
    fresh = WeightAverage(torch.nn.Linear(1, 1, bias=False), decay=0.5)
    fresh.load_state_dict(state)
    assert fresh.updates == 3
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(average, decay=1.0)
