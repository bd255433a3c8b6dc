"""The PPO learner on the real tiny model: direction, exact ratios, accumulation, determinism, resume."""

import copy
import math

import pytest
import torch

from selfplay.algorithms import Learner, LearnerSettings
from selfplay.models import HFGenerator, SamplingParams, load_model, render_prompt
from selfplay.rollout.sample import Sample


def make_samples(tokenizer, answers_and_advantages):
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    samples = []
    for i, (observation, answer, advantage) in enumerate(answers_and_advantages):
        response = tokenizer(answer, add_special_tokens=False)["input_ids"] + [im_end]
        samples.append(Sample(prompt_ids=render_prompt(tokenizer, observation), response_ids=response,
                              logprobs=[0.0] * len(response), task="tictactoe", role=str(i % 2),
                              episode_id=i, reward=advantage, advantage=advantage))
    return samples


BATCH = [("x.o..x...o", "4", 1.0), ("xx.oo....", "2", -0.5), ("........x", "I pick 4", 0.25)]


def sequence_logprob(learner, sample):
    with torch.no_grad():
        return learner.response_logprobs(learner.model, learner.collate([sample]))[0].sum().item()


def test_positive_advantage_raises_and_negative_lowers_the_responses_logprob():
    model, tokenizer = load_model("tiny", seed=0)
    learner = Learner(model, LearnerSettings(lr=1e-3, epochs=2, micro_batch_size=2, loss_norm="token_mean"))
    samples = make_samples(tokenizer, BATCH)
    before = [sequence_logprob(learner, s) for s in samples[:2]]
    learner.update(samples)
    after = [sequence_logprob(learner, s) for s in samples[:2]]
    assert after[0] > before[0]  # A = +1
    assert after[1] < before[1]  # A = -0.5


def test_first_epoch_ratio_is_exactly_one_and_matches_hand_computed_loss():
    model, tokenizer = load_model("tiny", seed=0)
    learner = Learner(model, LearnerSettings(lr=1e-3, epochs=1, micro_batch_size=2, loss_norm="constant",
                                      norm_constant=10))
    samples = make_samples(tokenizer, BATCH)  # responses of 2, 2 and 9 tokens
    stats = learner.update(samples)
    assert stats["approx_kl"] == 0.0 and stats["clip_fraction"] == 0.0
    # ratio 1: loss = -(sum_i A_i * tokens_i) / (C * batch) = -(1*2 - 0.5*2 + 0.25*9) / (10 * 3)
    assert stats["pg_loss"] == pytest.approx(-(2 - 1 + 2.25) / 30)
    assert stats["num_tokens"] == 13


def test_sampler_logprobs_from_the_hf_generator_agree_with_the_learner():
    model, tokenizer = load_model("tiny", seed=0)
    generations = HFGenerator(model, tokenizer).generate(
        [render_prompt(tokenizer, obs) for obs, _, _ in BATCH], SamplingParams(max_new_tokens=8), seed=0)
    samples = [Sample(prompt_ids=g.prompt_ids, response_ids=g.response_ids, logprobs=g.logprobs, task="t",
                      role="0", episode_id=i, reward=1.0, advantage=1.0) for i, g in enumerate(generations)]
    learner = Learner(model, LearnerSettings(lr=1e-3, epochs=1, micro_batch_size=2, loss_norm="token_mean"),
                      use_sampler_logprobs=True)
    stats = learner.update(samples)
    # old = the generator's log-probs (KV-cached, left-padded batch); new = the learner's full
    # forward pass: the same function of the same weights, equal up to float rounding
    assert stats["sampler_logprob_gap"] < 1e-5
    assert stats["approx_kl"] < 1e-10 and stats["clip_fraction"] == 0.0


def test_a_written_sample_trains_on_the_learners_logprobs_and_stays_out_of_the_gap():
    model, tokenizer = load_model("tiny", seed=0)
    settings = LearnerSettings(lr=1e-3, epochs=1, micro_batch_size=2, loss_norm="token_mean")
    sampled = make_samples(tokenizer, BATCH[:2])
    for s in sampled:
        s.logprobs = [-1.0] * len(s.response_ids)  # the sampler's, as a generator would give them
    written = make_samples(tokenizer, BATCH[2:])[0]
    written.logprobs = []  # written by a recipe, not sampled
    gaps = []
    for batch in (sampled, sampled + [written]):
        learner = Learner(copy.deepcopy(model), settings)
        before = sequence_logprob(learner, written)
        stats = learner.update(batch)
        gaps.append(stats["sampler_logprob_gap"])
        assert stats["approx_kl"] == 0.0  # the learner's own log-probs are the old ones: ratio 1
        if written in batch:
            assert sequence_logprob(learner, written) > before  # A = +0.25: trained on
    assert gaps[0] > 0 and gaps[1] == pytest.approx(gaps[0])  # the gap is over sampled tokens only
    learner = Learner(copy.deepcopy(model), settings)  # written samples alone: trained on, no gap to report
    before = sequence_logprob(learner, written)
    assert "sampler_logprob_gap" not in learner.update([written])
    assert sequence_logprob(learner, written) > before
    # with the sampler's log-probs as the old ones (async workers, vLLM): the written sample
    # still takes the learner's own (ratio 1, no KL from a made-up old log-prob) and is trained on
    learner = Learner(copy.deepcopy(model), settings, use_sampler_logprobs=True)
    stats = learner.update([written])
    assert stats["approx_kl"] == 0.0 and stats["clip_fraction"] == 0.0
    assert sequence_logprob(learner, written) > before
    stats = Learner(copy.deepcopy(model), settings, use_sampler_logprobs=True).update(sampled + [written])
    assert stats["approx_kl"] > 0 and stats["sampler_logprob_gap"] == pytest.approx(gaps[0])
    written.logprobs = [-1.0] * 4  # some, but not one a token: a broken sampler, an error
    with pytest.raises(ValueError, match="has 4 logprobs for 9 response tokens"):
        Learner(copy.deepcopy(model), settings).update(sampled + [written])


def test_a_restricted_sample_is_trained_as_the_softmax_over_its_allowed_tokens():
    model, tokenizer = load_model("tiny", seed=0)
    settings = LearnerSettings(lr=1e-3, epochs=1, micro_batch_size=2, loss_norm="token_mean")
    sample = make_samples(tokenizer, BATCH[:1])[0]  # "4" then <|im_end|>
    sample.logprobs = [-5.0, -5.0]  # the sampler's, over the whole vocabulary: not this policy's
    digits = tokenizer("0123456789", add_special_tokens=False)["input_ids"]
    sample.allowed_token_ids = (*digits, sample.response_ids[-1])
    learner = Learner(copy.deepcopy(model), settings)
    with torch.no_grad():  # by hand: each response token's logit against the allowed tokens' logsumexp
        logits = model(torch.tensor([sample.prompt_ids + sample.response_ids])).logits[0].float()
        rows = logits[len(sample.prompt_ids) - 1:-1]
        allowed = list(sample.allowed_token_ids)
        by_hand = sum(row[token] - torch.logsumexp(row[allowed], 0) for row, token in zip(rows, sample.response_ids))
        whole_vocabulary = sum(torch.log_softmax(row, 0)[token] for row, token in zip(rows, sample.response_ids))
    assert sequence_logprob(learner, sample) == pytest.approx(by_hand.item(), abs=1e-5)
    assert by_hand > whole_vocabulary + 0.1  # the allowed tokens hold less than all the mass
    # its whole-vocabulary sampler log-probs stay out: no gap, and as the old log-probs the learner's own
    stats = Learner(copy.deepcopy(model), settings, use_sampler_logprobs=True).update([sample])
    assert "sampler_logprob_gap" not in stats and stats["approx_kl"] == 0.0
    before = sequence_logprob(learner, sample)
    learner.update([sample])  # A = +1
    assert sequence_logprob(learner, sample) > before
    # in a batch with an unrestricted sample, that one keeps the whole vocabulary
    plain = make_samples(tokenizer, BATCH[1:2])[0]
    with torch.no_grad():
        both = learner.response_logprobs(learner.model, learner.collate([sample, plain]))[0]
    assert both[1].sum().item() == pytest.approx(sequence_logprob(learner, plain), abs=1e-5)
    assert both[0].sum().item() == pytest.approx(sequence_logprob(learner, sample), abs=1e-5)


@pytest.mark.parametrize("norm", ["token_mean", "constant"])
def test_micro_batches_accumulate_to_the_full_batch_gradient(norm):
    grads = []
    for micro_batch_size in (1, 3):
        model, tokenizer = load_model("tiny", seed=0)
        learner = Learner(model, LearnerSettings(lr=0.0, epochs=1, micro_batch_size=micro_batch_size, loss_norm=norm,
                                                 norm_constant=16, grad_clip=None))
        learner.update(make_samples(tokenizer, BATCH))
        grads.append([p.grad.clone() for p in learner.params])
    for one, full in zip(*grads):
        torch.testing.assert_close(one, full, atol=1e-7, rtol=1e-5)


def test_repeated_sequences_run_once_with_the_same_loss_and_gradient():
    """A batch with repeats computes each distinct sequence once; its loss and gradient
    equal those of the same samples computed one per micro-batch (no sharing)."""
    batch = BATCH + [BATCH[0], ("x.o..x...o", "4", -0.3), BATCH[1]]  # two exact repeats, one A differs
    results = []
    for micro_batch_size in (6, 1):
        model, tokenizer = load_model("tiny", seed=0)
        learner = Learner(model, LearnerSettings(lr=0.0, epochs=1, micro_batch_size=micro_batch_size,
                                                 loss_norm="constant", norm_constant=16, grad_clip=None,
                                                 entropy_coef=0.1))
        samples = make_samples(tokenizer, batch)
        if micro_batch_size == 6:
            assert learner.collate(samples)["input_ids"].shape[0] == 3  # 6 samples, 3 distinct sequences
        stats = learner.update(samples)
        results.append((stats, [p.grad.clone() for p in learner.params]))
    (shared, shared_grads), (separate, separate_grads) = results
    for key in ("loss", "pg_loss", "entropy"):
        assert shared[key] == pytest.approx(separate[key], rel=1e-5)
    for a, b in zip(shared_grads, separate_grads):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)


def _gradient(samples, norm, norm_constant):
    """The gradient of one update (lr 0) with all three terms on: PPO, KL (k1: its gradient
    is not zero even where pi = pi_ref) and entropy."""
    model, _ = load_model("tiny", seed=0)
    learner = Learner(model, LearnerSettings(lr=0.0, epochs=1, micro_batch_size=8, loss_norm=norm,
                                             norm_constant=norm_constant, grad_clip=None, kl_coef=0.1,
                                             kl_estimator="k1", entropy_coef=0.1), ref_model=copy.deepcopy(model))
    learner.update(samples)
    return [p.grad.clone() for p in learner.params]


@pytest.mark.parametrize("norm", ["constant", "token_mean"])
def test_sample_weight_two_is_the_sample_twice_and_weight_zero_is_the_sample_left_out(norm):
    """Weights scale a sample's terms and leave the denominators alone. BATCH: 3 samples of
    2, 2 and 9 tokens (13 in all); S_i = sample i's summed token terms.

    constant, sum / (C * batch):
      weight 2 on sample 0: (2 S0 + S1 + S2) / (3 C); sample 0 twice: (2 S0 + S1 + S2) / (4 C'),
        equal when 3 C = 4 C': C = 16, C' = 12
      weight 0 on sample 2: (S0 + S1) / (3 C); sample 2 left out: (S0 + S1) / (2 C'): C = 8, C' = 12
    token_mean, sum / tokens (C unused):
      weight 2: (2 S0 + S1 + S2) / 13; twice: / 15, so grad(twice) = 13/15 grad(weight 2)
      weight 0: (S0 + S1) / 13; left out: / 4, so grad(left out) = 13/4 grad(weight 0)
    """
    tokenizer = load_model("tiny")[1]

    def batch(rows, weights=None):
        samples = make_samples(tokenizer, rows)
        for s, w in zip(samples, weights or [1.0] * len(rows)):
            s.weight = w
        return samples

    constant = norm == "constant"
    pairs = [(_gradient(batch(BATCH, [2.0, 1.0, 1.0]), norm, 16), _gradient(batch(BATCH + [BATCH[0]]), norm, 12),
              1.0 if constant else 13 / 15),
             (_gradient(batch(BATCH, [1.0, 1.0, 0.0]), norm, 8), _gradient(batch(BATCH[:2]), norm, 12),
              1.0 if constant else 13 / 4)]
    for weighted, plain, scale in pairs:
        assert any(g.abs().max() > 0.1 for g in plain)
        # float32 rounding: the batches differ in shape; gradients reach about 1
        for w, g in zip(weighted, plain):
            torch.testing.assert_close(w * scale, g, atol=2e-6, rtol=1e-5)


def test_unit_weights_skip_the_multiplication_and_bad_weights_are_errors():
    model, tokenizer = load_model("tiny", seed=0)
    learner = Learner(model, LearnerSettings(norm_constant=16))
    samples = make_samples(tokenizer, BATCH)
    assert "weights" not in learner.collate(samples)  # all 1: the unweighted sums, bit for bit
    samples[1].weight = 0.5
    assert learner.collate(samples)["weights"].tolist() == [1.0, 0.5, 1.0]
    samples[1].weight = -1.0
    with pytest.raises(ValueError, match=r"Sample.weight must be finite and >= 0; got .*\(1, -1.0\)"):
        learner.update(samples)


def test_kl_estimator_and_per_sequence():
    """k1 per sequence is k1 per token summed over the response, and is reduced as that sum is:
    the same loss and gradient (the stat is per response, not per token). k3 is not additive."""
    results = {}
    for estimator, per in [("k1", "token"), ("k1", "sequence"), ("k3", "token"), ("k3", "sequence")]:
        model, tokenizer = load_model("tiny", seed=0)
        reference = copy.deepcopy(model)
        torch.manual_seed(0)
        with torch.no_grad():
            for p in reference.parameters():
                p.add_(0.2 * torch.randn_like(p))
        learner = Learner(model, LearnerSettings(lr=0.0, epochs=1, micro_batch_size=2, loss_norm="constant",
                                                 norm_constant=16, grad_clip=None, kl_coef=1.0,
                                                 kl_estimator=estimator, kl_per=per), ref_model=reference)
        stats = learner.update(make_samples(tokenizer, BATCH))
        results[estimator, per] = stats, [p.grad.clone() for p in learner.params]
        # per role (samples 0 and 2 are role "0", 11 response tokens; sample 1 is role "1", 2 tokens):
        # each role's mean, and together the whole batch's
        if per == "token":
            assert stats["kl/0"] * 11 + stats["kl/1"] * 2 == pytest.approx(stats["kl"] * 13, rel=1e-5)
        else:
            assert stats["kl/0"] * 2 + stats["kl/1"] * 1 == pytest.approx(stats["kl"] * 3, rel=1e-5)
        assert stats["kl/0"] != pytest.approx(stats["kl/1"], rel=1e-3)
    (token, token_grads), (sequence, sequence_grads) = results["k1", "token"], results["k1", "sequence"]
    assert abs(token["kl"]) > 1e-3 and results["k3", "token"][0]["kl"] > 1e-3
    assert sequence["loss"] == pytest.approx(token["loss"], rel=1e-5)
    for a, b in zip(token_grads, sequence_grads):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)
    assert sequence["kl"] * 3 == pytest.approx(token["kl"] * 13, rel=1e-5)  # per response (3) vs per token (13)
    assert results["k3", "sequence"][0]["kl"] * 3 != pytest.approx(results["k3", "token"][0]["kl"] * 13, rel=1e-3)
    with pytest.raises(ValueError, match="kl_estimator must be one of"):
        Learner(model, LearnerSettings(norm_constant=1, kl_estimator="k4"))
    with pytest.raises(ValueError, match="kl_per must be one of"):
        Learner(model, LearnerSettings(norm_constant=1, kl_per="response"))


def test_the_configs_optim_section_is_a_settings_object():
    import dataclasses

    from selfplay.config import OptimConfig

    names = [f.name for f in dataclasses.fields(LearnerSettings)]
    assert {name: getattr(OptimConfig(), name) for name in names} == dataclasses.asdict(LearnerSettings())
    model, _ = load_model("tiny", seed=0)
    learner = Learner(model, OptimConfig(lr=1e-3, kl_per="sequence"), norm_constant=16)
    assert (learner.norm_constant, learner.kl_per, learner.optimizer.param_groups[0]["lr"]) == (16, "sequence", 1e-3)
    # optim.norm_constant, when set, is used over the keyword (the trainer's max generation length)
    assert Learner(model, LearnerSettings(norm_constant=5), norm_constant=16).norm_constant == 5


def test_update_is_deterministic_and_resumes_exactly_from_saved_state():
    def fresh():
        model, tokenizer = load_model("tiny", seed=0)
        return Learner(model, LearnerSettings(lr=1e-3, epochs=2, micro_batch_size=2, loss_norm="token_mean")), tokenizer

    first_batch = BATCH
    second_batch = [("o.x......", "0", 1.0), ("xoxoxo...", "6", -1.0)]

    straight, tokenizer = fresh()
    stats_a = [straight.update(make_samples(tokenizer, b)) for b in (first_batch, second_batch)]

    interrupted, _ = fresh()
    stats_b = [interrupted.update(make_samples(tokenizer, first_batch))]
    weights = copy.deepcopy(interrupted.model.state_dict())
    optimizer = copy.deepcopy(interrupted.state_dict())
    resumed, _ = fresh()  # a new process would load these from the checkpoint folder
    resumed.model.load_state_dict(weights)
    resumed.load_state_dict(optimizer)
    stats_b.append(resumed.update(make_samples(tokenizer, second_batch)))

    assert stats_a == stats_b
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_kl_to_a_frozen_reference_starts_at_zero_and_grows():
    model, tokenizer = load_model("tiny", seed=0)
    reference = copy.deepcopy(model)
    learner = Learner(model, LearnerSettings(lr=1e-2, epochs=1, micro_batch_size=4, loss_norm="token_mean",
                                             kl_coef=0.1), ref_model=reference)
    samples = make_samples(tokenizer, BATCH)
    assert learner.update(samples)["kl"] == 0.0
    assert learner.update(samples)["kl"] > 0.0
    assert all(not p.requires_grad for p in reference.parameters())
    with pytest.raises(ValueError, match="ref_model"):
        Learner(model, LearnerSettings(kl_coef=0.1, loss_norm="token_mean"))


def test_entropy_bonus_alone_raises_entropy():
    model, tokenizer = load_model("tiny", seed=0)
    learner = Learner(model, LearnerSettings(lr=1e-3, epochs=1, micro_batch_size=4, loss_norm="token_mean",
                                             entropy_coef=1.0))
    samples = make_samples(tokenizer, [(obs, ans, 0.0) for obs, ans, _ in BATCH])  # A = 0: only the bonus acts
    first = learner.update(samples)["entropy"]
    assert learner.update(samples)["entropy"] > first


def test_learner_rejects_constant_norm_without_constant():
    model, _ = load_model("tiny", seed=0)
    with pytest.raises(ValueError, match="norm_constant"):
        Learner(model, LearnerSettings(loss_norm="constant"))


def _move_sample(tokenizer, game, move, advantage=0.0):
    from selfplay.agents.llm import GamePrompter

    legal = [tokenizer(game.format_action(a), add_special_tokens=False)["input_ids"][0] for a in game.legal_actions()]
    response = tokenizer(move, add_special_tokens=False)["input_ids"]
    return Sample(prompt_ids=GamePrompter(tokenizer).ids(game), response_ids=response, logprobs=[0.0],
                  task="tictactoe", role="0", episode_id=0, reward=advantage, advantage=advantage,
                  legal_token_ids=legal)


def _next_token_probs(model, sample):
    with torch.no_grad():
        return torch.softmax(model(torch.tensor([sample.prompt_ids])).logits[0, -1].float(), -1)


def test_legal_move_entropy_by_hand_and_it_keeps_mass_on_legal_moves():
    from selfplay.games import make

    game = make("tictactoe", style="compact").reset(seed=0)
    for move in ("4", "0"):
        game.step(move)  # seven legal moves left
    model, tokenizer = load_model("tiny", seed=0)
    sample = _move_sample(tokenizer, game, "8")
    probs = _next_token_probs(model, sample)
    legal = torch.tensor(sample.legal_token_ids)
    q = probs[legal] / probs[legal].sum()
    by_hand = -(q * q.log()).sum().item()
    learner = Learner(model, LearnerSettings(lr=0.0, epochs=1, micro_batch_size=4, norm_constant=1,
                                             entropy_coef=0.1, entropy_over="legal_moves"))
    assert learner.update([sample])["entropy"] == pytest.approx(by_hand, rel=1e-5)

    # A model that mostly plays legal moves (as a trained one does); then entropy alone
    # (advantage 0): over legal moves it mixes the legal moves and leaves their total mass
    # alone; over the vocabulary it moves mass onto illegal tokens.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        logp = torch.log_softmax(model(torch.tensor([sample.prompt_ids])).logits[0, -1], -1)
        optimizer.zero_grad()
        (-torch.logsumexp(logp[legal], 0)).backward()
        optimizer.step()
    trained = copy.deepcopy(model.state_dict())
    assert _next_token_probs(model, sample)[legal].sum() > 0.9
    outcome = {}
    for over in ("legal_moves", "vocab"):
        model.load_state_dict(trained)
        learner = Learner(model, LearnerSettings(lr=1e-2, epochs=1, micro_batch_size=4, norm_constant=1,
                                                 entropy_coef=1.0, entropy_over=over))
        before = _next_token_probs(model, sample)
        for _ in range(20):
            learner.update([sample])
        after = _next_token_probs(model, sample)
        q_after = after[legal] / after[legal].sum()
        outcome[over] = (before[legal].sum().item(), after[legal].sum().item(), -(q_after * q_after.log()).sum().item())
    mass_before, mass_after, entropy_after = outcome["legal_moves"]
    assert entropy_after > outcome["vocab"][2] and entropy_after <= math.log(7) + 1e-6
    assert mass_after >= mass_before - 0.01
    assert outcome["vocab"][1] < outcome["vocab"][0] - 0.01


def test_legal_move_entropy_needs_the_legal_moves():
    model, tokenizer = load_model("tiny", seed=0)
    learner = Learner(model, LearnerSettings(lr=0.0, norm_constant=1, entropy_coef=0.1, entropy_over="legal_moves"))
    sample = make_samples(tokenizer, BATCH[:1])[0]
    with pytest.raises(ValueError, match="legal_token_ids"):
        learner.update([sample])


def test_fp32_master_weights_keep_the_small_updates_that_bf16_weights_round_away():
    """AdamW's first step moves a weight by lr * g / (|g| + eps) = lr * sign(g) (m_hat = g,
    v_hat = g^2). At the paper's lr 1e-6, fp32 master weights (bf16 forward passes under
    autocast) move by 1e-6 each. bf16 keeps 8 significant bits: weights with |w| > 2^-11
    are spaced >= 2^-18 = 3.8e-6 apart, so a 1e-6 step rounds back to the same weight."""
    samples = make_samples(load_model("tiny")[1], BATCH)
    settings = LearnerSettings(lr=1e-6, epochs=1, micro_batch_size=3, loss_norm="token_mean", grad_clip=None)

    master, _ = load_model("tiny", seed=0)  # fp32 on the CPU
    learner = Learner(master, settings, autocast_dtype=torch.bfloat16)
    before = [p.detach().clone() for p in learner.params]
    learner.update(samples)
    for p, old in zip(learner.params, before):
        assert p.dtype == torch.float32
        live = p.grad.abs() > 1e-5  # eps = 1e-8 is then < 0.1% of |g|
        moved = (p.detach() - old)[live]
        # fp32 rounding near |w| = 1 (the norms' weights) is 6e-8
        torch.testing.assert_close(moved, -1e-6 * p.grad[live].sign(), atol=7e-8, rtol=0)

    pure, _ = load_model("tiny", seed=0, dtype="bfloat16")
    learner = Learner(pure, settings)
    before = [p.detach().clone() for p in learner.params]
    learner.update(samples)
    large = [(p.detach() - old)[old.abs() > 2 ** -11] for p, old in zip(learner.params, before)]
    assert sum(d.numel() for d in large) > 10_000
    assert all(bool((d == 0).all()) for d in large)


def test_gradient_checkpointing_recomputes_layers_and_gives_the_same_update():
    samples = make_samples(load_model("tiny")[1], BATCH)
    results = []
    for checkpointing in (False, True):
        model, _ = load_model("tiny", seed=0)
        learner = Learner(model, LearnerSettings(lr=1e-3, epochs=2, micro_batch_size=2, loss_norm="token_mean",
                                                 gradient_checkpointing=checkpointing))
        calls = []  # the attention module runs again in the backward pass when its layer is checkpointed
        model.model.layers[0].self_attn.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
        stats = learner.update(samples)
        results.append((len(calls), stats, [p.detach().clone() for p in learner.params]))
    (plain_calls, plain_stats, plain_weights), (ckpt_calls, ckpt_stats, ckpt_weights) = results
    assert plain_calls == 4 and ckpt_calls == 8  # 2 epochs x 2 micro-batches, recomputed once each
    assert ckpt_stats["loss"] == pytest.approx(plain_stats["loss"], rel=1e-6)
    for a, b in zip(plain_weights, ckpt_weights):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)
    # generation after the update runs in eval mode: no checkpointing, the KV cache is kept
    assert not any(layer.training for layer in model.model.layers)


RULES = "Tic Tac Toe. You are X. Reply with your move only, as one digit. "  # every prompt starts with it


def with_visible_adapter(model):
    """`model` with a LoRA adapter whose B is not zero (at zero the adapter changes nothing), and
    its KL reference: the same model with the adapter off."""
    from selfplay.config import LoraSettings
    from selfplay.models.lora import WithoutAdapter, add_adapter

    model = add_adapter(model, LoraSettings(r=4, alpha=8), seed=0, base_name="tiny")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    return model, WithoutAdapter(model)


def update_recording_passes(learner, samples):
    """One update; the (rows, columns) of every forward pass of the learner's transformer, the
    stats and the gradients."""
    model = learner.model
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    shapes = []
    hook = inner.model.register_forward_pre_hook(
        lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    stats = learner.update(samples)
    hook.remove()
    return shapes, stats, [p.grad.clone() for p in learner.params]


def assert_same_update(a, b):
    """Two updates' loss, KL, entropy and gradients agree up to float rounding."""
    (_, a_stats, a_grads), (_, b_stats, b_grads) = a, b
    for key in ("loss", "pg_loss", "kl", "entropy"):
        assert a_stats[key] == pytest.approx(b_stats[key], rel=1e-5, abs=1e-7)
    for x, y in zip(a_grads, b_grads):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("lora", [False, True])
def test_a_shared_prompt_prefix_runs_once_with_the_same_loss_and_gradient(lora):
    """Prompts that start with the same rules: the rules run once, for one row, and the loss, KL,
    entropy and gradient equal those of every prompt run whole (with LoRA, the KL reference is the
    same model with its adapter off, which shares the prefix too)."""
    batch = [(RULES + board, answer, advantage) for board, answer, advantage in BATCH + [("o", "5", -1.0)]]
    results = []
    for share in (True, False):
        model, tokenizer = load_model("tiny", seed=0)
        reference = copy.deepcopy(model)
        if lora:
            model, reference = with_visible_adapter(model)
        learner = Learner(model, LearnerSettings(lr=0.0, epochs=1, micro_batch_size=4, loss_norm="constant",
                                                 norm_constant=16, grad_clip=None, kl_coef=0.1, kl_estimator="k1",
                                                 entropy_coef=0.1, share_prompt_prefix=share),
                          ref_model=reference)
        samples = make_samples(tokenizer, batch)
        results.append(update_recording_passes(learner, samples))
    (rows, shared, _), (whole_rows, _, _) = results
    longest = max(len(s.prompt_ids) for s in samples) + max(len(s.response_ids) for s in samples)
    passes = 2 if lora else 1  # with LoRA the reference's forward runs on the same model first
    assert whole_rows == [(4, longest)] * passes
    prefix = rows[0][1]
    assert prefix > len(RULES) and rows == [(1, prefix), (4, longest - prefix)] * passes
    assert shared["kl"] > 0 or not lora  # with LoRA the policy and its reference differ
    assert_same_update(*results)


@pytest.mark.parametrize("answers, lora", [(["4", "I pick 4", "2", "4"], False), (["4", "2", "7", "4"], False),
                                           (["4", "I pick 4", "2", "4"], True)])
def test_each_prompt_runs_once_for_its_answers_with_the_same_loss_and_gradient(answers, lora):
    """G answers to each prompt (`share_prompts`): every distinct prompt runs once, its answers
    attend to its keys and values, and the loss, KL, entropy and gradient equal those of every
    sequence run whole, with prompts of different lengths, answers of different lengths (or all
    one token long, the second case, where the prompts' pass is the only one), a restricted
    sample and sample weights; with LoRA too (the reference: the same model, its adapter off)."""
    model, tokenizer = load_model("tiny", seed=0)
    reference = copy.deepcopy(model)
    with torch.no_grad():  # a reference that differs, so the KL is not zero
        for p in reference.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
    boards = ["x.o..x...o", "xx.oo....", "o"]
    batch = [(board, answer, 0.5 - 0.3 * i + 0.2 * j) for i, board in enumerate(boards) for j, answer in enumerate(answers)]
    samples = make_samples(tokenizer, batch)
    if answers[1] == "2":  # one token each: the answer without <|im_end|>
        for s in samples:
            s.response_ids, s.logprobs = s.response_ids[:1], s.logprobs[:1]
    samples[3].weight = 2.0
    samples[5].allowed_token_ids = tuple(tokenizer("0123456789", add_special_tokens=False)["input_ids"]) + (
        samples[5].response_ids[-1],)
    results = []
    for share in (True, False):
        policy, policy_reference = with_visible_adapter(copy.deepcopy(model)) if lora else (copy.deepcopy(model), reference)
        learner = Learner(policy, LearnerSettings(lr=0.0, epochs=1, micro_batch_size=len(samples),
                                                  loss_norm="constant", norm_constant=4, grad_clip=None,
                                                  kl_coef=0.1, kl_estimator="k3", entropy_coef=0.1,
                                                  share_prompts=share),
                          ref_model=policy_reference)
        results.append(update_recording_passes(learner, samples))
    (shapes, shared, _), (whole_shapes, _, _) = results
    distinct = len({(tuple(s.prompt_ids), tuple(s.response_ids)) for s in samples})  # "4" twice per board
    prompt_width = max(len(s.prompt_ids) for s in samples)
    width = max(len(s.response_ids) for s in samples)
    passes = 2 if lora else 1  # with LoRA the reference's passes run on the same model first
    assert whole_shapes == [(distinct, prompt_width + width)] * passes
    assert shapes == ([(len(boards), prompt_width)] + ([(distinct, width - 1)] if width > 1 else [])) * passes
    assert shared["kl"] > 0
    assert_same_update(*results)


def test_share_prompts_leaves_a_batch_of_distinct_prompts_whole():
    model, tokenizer = load_model("tiny", seed=0)
    learner = Learner(model, LearnerSettings(lr=1e-3, micro_batch_size=4, loss_norm="token_mean", share_prompts=True))
    batch = learner.collate(make_samples(tokenizer, BATCH))
    assert "prompt_of_row" not in batch and batch["input_ids"].shape[0] == len(BATCH)
