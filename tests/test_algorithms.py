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
    learnability_reward,
    lsp_advantages,
    ppo_clip_loss,
    query_values,
    rae_advantages,
    raw_advantages,
    rzero_reward,
    trr_plus_plus_advantages,
)
from selfplay.rollout.sample import Sample


def sample(task, role, episode, reward, group=None, tokens=1):
    return Sample(prompt_ids=[1], response_ids=[2] * tokens, logprobs=[-1.0] * tokens, task=task, role=role,
                  episode_id=episode, reward=reward, group=group)


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


# ---------------------------------------------------------------- group-relative (RLVR), LSP and TRR++ (AZR)

def test_grpo_is_reward_minus_group_mean_and_optionally_over_std():
    batch = [sample("q", "solver", 0, r, group=g) for r, g in [(1, "a"), (0, "a"), (0, "a"), (1, "a"), (1, "b")]]
    assert [s.advantage for s in grpo_advantages(batch)] == [0.5, -0.5, -0.5, 0.5, 0.0]
    # population std of [1, 0, 0, 1] is 0.5
    scaled = grpo_advantages(batch, scale_by_std=True, eps=1e-12)
    assert [s.advantage for s in scaled[:4]] == pytest.approx([1.0, -1.0, -1.0, 1.0])
    # LSP challenger: reward -V(q) for V = [0.5, 0.25, 1.0]; A = Vbar - V(q) with Vbar = 7/12
    challenger = [sample("q", "challenger", i, -v, group="all") for i, v in enumerate([0.5, 0.25, 1.0])]
    assert [s.advantage for s in grpo_advantages(challenger)] == pytest.approx([1 / 12, 4 / 12, -5 / 12])


def test_grpo_needs_every_sample_to_have_a_group():
    batch = [sample("q", "solver", 0, 1.0, group="a"), sample("q", "solver", 1, 0.0)]
    with pytest.raises(ValueError, match=r"sample 1 \(q/solver\) has no Sample.group"):
        grpo_advantages(batch)
    assert [s.advantage for s in batch] == [0.0, 0.0]  # a rejected batch changes nothing


def test_lsp_advantages_by_hand_two_queries_three_answers():
    # The solver answers q1 and q2 three times each; the challenger wrote each query once.
    solver_rewards = {"q1": [1.0, 0.0, 0.5], "q2": [0.0, 0.25, 0.5]}
    # V(q1) = 1.5 / 3 = 0.5;  V(q2) = 0.75 / 3 = 0.25 (q2 is harder)
    V = {"q1": 0.5, "q2": 0.25}
    batch = [sample("chat", "challenger", 0, -V["q1"], group="q1")]
    batch += [sample("chat", "solver", 0, r, group="q1") for r in solver_rewards["q1"]]
    batch += [sample("chat", "solver", 1, r, group="q2") for r in solver_rewards["q2"]]
    batch += [sample("chat", "challenger", 1, -V["q2"], group="q2")]  # r_ch = -V(q)
    assert query_values(batch) == V
    out = lsp_advantages(batch)
    assert out is batch
    # A_sol = R - V(q): q1: 1 - 0.5, 0 - 0.5, 0.5 - 0.5;  q2: 0 - 0.25, 0.25 - 0.25, 0.5 - 0.25 (no std)
    assert [s.advantage for s in batch[1:7]] == [0.5, -0.5, 0.0, -0.25, 0.0, 0.25]
    # A_ch = r_ch - mean(r_ch), mean(r_ch) = (-0.5 - 0.25) / 2 = -0.375:  -0.5 + 0.375, -0.25 + 0.375
    # = Vbar - V(q) with Vbar = (0.5 + 0.25) / 2 = 0.375:  0.375 - 0.5, 0.375 - 0.25
    assert (batch[0].advantage, batch[7].advantage) == (-0.125, 0.125)

    # with the quality self-reward the recipe sets r_ch = -V(q) + V_Q(q); V_Q = 5 and 3 (0-7 scale):
    # r_ch = 4.5 and 2.75, mean 3.625: A_ch = 0.875 and -0.875; the solver's advantages do not change
    batch[0].reward, batch[7].reward = -0.5 + 5, -0.25 + 3
    lsp_advantages(batch)
    assert (batch[0].advantage, batch[7].advantage) == (0.875, -0.875)
    assert [s.advantage for s in batch[1:7]] == [0.5, -0.5, 0.0, -0.25, 0.0, 0.25]

    # the role names are options; any other role, or a solver answer without its query, is an error
    renamed = [sample("m", "ask", 0, -1.0, group="q"), sample("m", "answer", 0, 1.0, group="q")]
    assert [s.advantage for s in lsp_advantages(renamed, solver="answer", challenger="ask")] == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"takes roles 'solver' and 'challenger', got \['judge'\]"):
        lsp_advantages(batch + [sample("chat", "judge", 0, 1.0, group="q1")])
    with pytest.raises(ValueError, match="no Sample.group"):
        lsp_advantages([sample("chat", "solver", 0, 1.0)])


def test_trr_plus_plus_per_sequence_by_hand():
    # one baseline per (task, role); std Bessel-corrected (n - 1), eps 1e-8
    batch = [sample("deduction", "solve", i, r) for i, r in enumerate([1.0, 0.0, 0.0, 0.0])]
    batch += [sample("deduction", "propose", 4, -1.0), sample("deduction", "propose", 5, 0.5)]
    batch += [sample("abduction", "propose", 6, 0.5), sample("abduction", "propose", 7, 0.5)]
    batch += [sample("induction", "solve", 8, 1.0)]
    out = trr_plus_plus_advantages(batch)
    assert out is batch
    # deduction/solve: mean 0.25; var = (0.75^2 + 3 * 0.25^2) / 3 = 0.75 / 3 = 0.25, std 0.5
    #   A = 0.75 / 0.5 = 1.5 and -0.25 / 0.5 = -0.5
    # deduction/propose: mean -0.25; var = (0.75^2 + 0.75^2) / 1 = 1.125, std = 3 / (2 sqrt 2)
    #   A = -+0.75 / std = -+ 1 / sqrt 2
    # abduction/propose: both 0.5, std 0: A = 0 / (0 + eps) = 0;  induction/solve: n = 1, std 0: A = 0
    h = 1 / math.sqrt(2)
    assert [s.advantage for s in out] == pytest.approx([1.5, -0.5, -0.5, -0.5, -h, h, 0, 0, 0], rel=1e-7)
    assert [s.advantage for s in out[6:]] == [0.0, 0.0, 0.0]
    # eps is added to the std: with eps = 0.5, deduction/solve's A = 0.75 / (0.5 + 0.5)
    assert trr_plus_plus_advantages(batch[:4], eps=0.5)[0].advantage == 0.75


def test_trr_plus_plus_token_weighted_by_hand():
    # the authors' code: each response token carries its sequence's reward. Two solves of one
    # task, reward 1 with 3 tokens and 0 with 1 token: token rewards [1, 1, 1, 0].
    batch = [sample("deduction", "solve", 0, 1.0, tokens=3), sample("deduction", "solve", 1, 0.0, tokens=1),
             sample("abduction", "solve", 2, 1.0, tokens=1)]
    out = trr_plus_plus_advantages(batch, token_weighted=True)
    # mean = 3/4; var = (3 * 0.25^2 + 0.75^2) / (4 - 1) = 0.75 / 3 = 0.25;  A = (r - 0.75) / sqrt(0.25 + 1e-8)
    # = 0.25 / 0.5 = 0.5 and -0.75 / 0.5 = -1.5;  abduction/solve: one token, A = 0
    assert [s.advantage for s in out] == pytest.approx([0.5, -1.5, 0.0], rel=1e-7)
    assert out[0].advantage == 0.25 / math.sqrt(0.25 + 1e-8)
    # per sequence the lengths do not count: mean 0.5, var = (0.25 + 0.25) / 1, A = +-0.5 / sqrt(0.5)
    per_sequence = trr_plus_plus_advantages(batch)
    assert [s.advantage for s in per_sequence] == pytest.approx([math.sqrt(0.5), -math.sqrt(0.5), 0.0], rel=1e-7)


# ---------------------------------------------------------------- challenger rewards

def test_rzero_reward_by_hand():
    # 1 - 2|p - 1/2|
    assert rzero_reward(0.5) == 1.0  # the solver's answers split evenly: the most informative query
    assert rzero_reward(0.0) == 0.0 and rzero_reward(1.0) == 0.0  # 1 - 2 * 0.5
    assert rzero_reward(0.75) == 0.5 and rzero_reward(0.25) == 0.5  # 1 - 2 * 0.25
    assert rzero_reward(5 / 8) == 0.75  # 5 of 8 agree: 1 - 2 * 1/8
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        rzero_reward(1.5)


def test_learnability_reward_by_hand():
    # 1 - s if 0 < s < 1 else 0
    assert learnability_reward(0.0) == 0.0  # never solved
    assert learnability_reward(1.0) == 0.0  # always solved
    assert learnability_reward(0.5) == 0.5
    assert learnability_reward(1 / 8) == 0.875  # 1 of 8 attempts solved it: 1 - 1/8
    assert learnability_reward(7 / 8) == 0.125
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        learnability_reward(-0.1)


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


def test_sample_weights_scale_each_samples_terms_and_leave_the_denominator():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    weights = torch.tensor([2.0, 0.5])
    # 2 * (1 + 2 + 3) + 0.5 * (4 + 5) = 12 + 4.5 = 16.5, over 5 tokens or C * batch = 10 * 2
    assert aggregate(values, mask, "token_mean", weights=weights).item() == pytest.approx(16.5 / 5)
    assert aggregate(values, mask, "constant", 10, weights=weights).item() == pytest.approx(16.5 / 20)
    unweighted = aggregate(values, mask, "token_mean")
    assert torch.equal(aggregate(values, mask, "token_mean", weights=torch.ones(2)), unweighted)

    # the PPO example above: per-token losses -1, -1.2, -0.5 (sample 0) and 2.2, 1.6 (sample 1)
    # weighted: 2 * -2.7 + 0.5 * 3.8 = -3.5, over 5 tokens; the stats stay unweighted
    old = torch.full((2, 3), -2.0)
    new = (old + RATIOS.log()).requires_grad_()
    loss, stats = ppo_clip_loss(new, old, ADVANTAGES, MASK, clip=0.2, norm="token_mean", weights=weights)
    assert loss.item() == pytest.approx(-3.5 / 5)
    assert stats["clip_fraction"] == pytest.approx(2 / 5)
    loss.backward()  # -w * A * r / 5 where unclipped
    torch.testing.assert_close(new.grad, torch.tensor([[-0.4, 0.0, -0.2], [0.22, 0.0, 0.0]]))


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
    with pytest.raises(ValueError, match="'token' or 'sequence'"):
        kl_penalty(logprobs, ref, mask, "k3", per="sample")


def test_kl_per_sequence_by_hand():
    # d = log pi - log pi_ref per token; the last token of sample 2 is padding
    log2 = math.log(2)
    d = torch.tensor([[log2, log2], [log2, -log2], [log2, 5.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    logprobs = torch.full((3, 2), -1.0)
    ref = logprobs - d
    # summed log-ratio D per response: log 2 + log 2 = log 4;  log 2 - log 2 = 0;  log 2 (padding left out)
    D = [math.log(4), 0.0, log2]
    assert kl_penalty(logprobs, ref, mask, "k1", per="sequence").tolist() == pytest.approx(D)
    assert kl_penalty(logprobs, ref, mask, "k2", per="sequence").tolist() == pytest.approx([x**2 / 2 for x in D])
    # k3 = exp(-D) + D - 1:  1/4 + log 4 - 1,  1 + 0 - 1 = 0,  1/2 + log 2 - 1
    k3 = kl_penalty(logprobs, ref, mask, "k3", per="sequence")
    assert k3.tolist() == pytest.approx([0.25 + math.log(4) - 1, 0.0, 0.5 + log2 - 1])
    # k1 per sequence is k1 per token summed; k3 is not: per token, sample 1 gives
    # (1/2 + log 2 - 1) + (2 - log 2 - 1) = 1/2, per sequence 0
    assert kl_penalty(logprobs, ref, mask, "k1").sum(-1).tolist() == pytest.approx(D)
    assert kl_penalty(logprobs, ref, mask, "k3")[1].sum().item() == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_sequence_kl_expected_gradients_k1_inert_k2_reverse_k3_forward(kind):
    """Two-token responses from a factorised policy over {0, 1} x {0, 1}, enumerated exactly:
    sum_y pi(y) grad kl(y) is 0 for k1 (E[grad log pi] = 0: LSP's literal form does nothing),
    grad KL(pi || pi_ref) for k2 and grad KL(pi_ref || pi) for k3."""
    logits = torch.tensor([[0.3, -0.4], [1.0, 0.2]], dtype=torch.float64, requires_grad=True)
    ref_logits = torch.tensor([[-0.5, 0.5], [0.1, 0.9]], dtype=torch.float64)
    ys = [(a, b) for a in (0, 1) for b in (0, 1)]

    def token_logprobs(l):  # (4 responses, 2 tokens)
        logp = torch.log_softmax(l, -1)
        return torch.stack([torch.stack([logp[0, a], logp[1, b]]) for a, b in ys])

    logprobs, ref = token_logprobs(logits), token_logprobs(ref_logits)
    pi, pi_ref = logprobs.sum(-1).exp(), ref.sum(-1).exp()
    kl = kl_penalty(logprobs, ref, torch.ones(4, 2, dtype=torch.float64), kind, per="sequence")
    (expected_grad,) = torch.autograd.grad((pi.detach() * kl).sum(), logits, retain_graph=True)
    if kind == "k1":
        target = torch.zeros_like(logits)
    elif kind == "k2":
        (target,) = torch.autograd.grad((pi * (pi.log() - pi_ref.log())).sum(), logits)
    else:
        (target,) = torch.autograd.grad((pi_ref * (pi_ref.log() - pi.log())).sum(), logits)
    assert target.abs().max() > 0.01 or kind == "k1"
    torch.testing.assert_close(expected_grad, target, atol=1e-12, rtol=1e-9)


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
