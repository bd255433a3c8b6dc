"""The PPO learner on the real tiny model: direction, exact ratios, accumulation, determinism, resume."""

import copy
import math

import pytest
import torch

from selfplay.algorithms import Learner
from selfplay.models import HFGenerator, SamplingParams, load_model, render_prompt
from selfplay.rollout.sample import Sample


def make_samples(tokenizer, answers_and_advantages):
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    samples = []
    for i, (observation, answer, advantage) in enumerate(answers_and_advantages):
        response = tokenizer(answer, add_special_tokens=False)["input_ids"] + [im_end]
        samples.append(Sample(prompt_ids=render_prompt(tokenizer, observation), response_ids=response,
                              logprobs=[0.0] * len(response), game="tictactoe", role=str(i % 2),
                              episode_id=i, reward=advantage, advantage=advantage))
    return samples


BATCH = [("x.o..x...o", "4", 1.0), ("xx.oo....", "2", -0.5), ("........x", "I pick 4", 0.25)]


def sequence_logprob(learner, sample):
    with torch.no_grad():
        return learner.response_logprobs(learner.model, learner.collate([sample]))[0].sum().item()


def test_positive_advantage_raises_and_negative_lowers_the_responses_logprob():
    model, tokenizer = load_model("tiny", seed=0)
    learner = Learner(model, lr=1e-3, epochs=2, micro_batch_size=2, loss_norm="token_mean")
    samples = make_samples(tokenizer, BATCH)
    before = [sequence_logprob(learner, s) for s in samples[:2]]
    learner.update(samples)
    after = [sequence_logprob(learner, s) for s in samples[:2]]
    assert after[0] > before[0]  # A = +1
    assert after[1] < before[1]  # A = -0.5


def test_first_epoch_ratio_is_exactly_one_and_matches_hand_computed_loss():
    model, tokenizer = load_model("tiny", seed=0)
    learner = Learner(model, lr=1e-3, epochs=1, micro_batch_size=2, loss_norm="constant", norm_constant=10)
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
    samples = [Sample(prompt_ids=g.prompt_ids, response_ids=g.response_ids, logprobs=g.logprobs, game="t",
                      role="0", episode_id=i, reward=1.0, advantage=1.0) for i, g in enumerate(generations)]
    learner = Learner(model, lr=1e-3, epochs=1, micro_batch_size=2, loss_norm="token_mean",
                      use_sampler_logprobs=True)
    stats = learner.update(samples)
    # old = the generator's log-probs (KV-cached, left-padded batch); new = the learner's full
    # forward pass: the same function of the same weights, equal up to float rounding
    assert stats["sampler_logprob_gap"] < 1e-5
    assert stats["approx_kl"] < 1e-10 and stats["clip_fraction"] == 0.0


@pytest.mark.parametrize("norm", ["token_mean", "constant"])
def test_micro_batches_accumulate_to_the_full_batch_gradient(norm):
    grads = []
    for micro_batch_size in (1, 3):
        model, tokenizer = load_model("tiny", seed=0)
        learner = Learner(model, lr=0.0, epochs=1, micro_batch_size=micro_batch_size, loss_norm=norm,
                          norm_constant=16, grad_clip=None)
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
        learner = Learner(model, lr=0.0, epochs=1, micro_batch_size=micro_batch_size, loss_norm="constant",
                          norm_constant=16, grad_clip=None, entropy_coef=0.1)
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


def test_update_is_deterministic_and_resumes_exactly_from_saved_state():
    def fresh():
        model, tokenizer = load_model("tiny", seed=0)
        return Learner(model, lr=1e-3, epochs=2, micro_batch_size=2, loss_norm="token_mean"), tokenizer

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
    learner = Learner(model, lr=1e-2, epochs=1, micro_batch_size=4, loss_norm="token_mean",
                      kl_coef=0.1, ref_model=reference)
    samples = make_samples(tokenizer, BATCH)
    assert learner.update(samples)["kl"] == 0.0
    assert learner.update(samples)["kl"] > 0.0
    assert all(not p.requires_grad for p in reference.parameters())
    with pytest.raises(ValueError, match="ref_model"):
        Learner(model, kl_coef=0.1, loss_norm="token_mean")


def test_entropy_bonus_alone_raises_entropy():
    model, tokenizer = load_model("tiny", seed=0)
    learner = Learner(model, lr=1e-3, epochs=1, micro_batch_size=4, loss_norm="token_mean", entropy_coef=1.0)
    samples = make_samples(tokenizer, [(obs, ans, 0.0) for obs, ans, _ in BATCH])  # A = 0: only the bonus acts
    first = learner.update(samples)["entropy"]
    assert learner.update(samples)["entropy"] > first


def test_learner_rejects_constant_norm_without_constant():
    model, _ = load_model("tiny", seed=0)
    with pytest.raises(ValueError, match="norm_constant"):
        Learner(model, loss_norm="constant")


def _move_sample(tokenizer, game, move, advantage=0.0):
    from selfplay.agents.llm import GamePrompter

    legal = [tokenizer(game.format_action(a), add_special_tokens=False)["input_ids"][0] for a in game.legal_actions()]
    response = tokenizer(move, add_special_tokens=False)["input_ids"]
    return Sample(prompt_ids=GamePrompter(tokenizer).ids(game), response_ids=response, logprobs=[0.0],
                  game="tictactoe", role="0", episode_id=0, reward=advantage, advantage=advantage,
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
    learner = Learner(model, lr=0.0, epochs=1, micro_batch_size=4, norm_constant=1, entropy_coef=0.1,
                      entropy_over="legal_moves")
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
        learner = Learner(model, lr=1e-2, epochs=1, micro_batch_size=4, norm_constant=1, entropy_coef=1.0,
                          entropy_over=over)
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
    learner = Learner(model, lr=0.0, norm_constant=1, entropy_coef=0.1, entropy_over="legal_moves")
    sample = make_samples(tokenizer, BATCH[:1])[0]
    with pytest.raises(ValueError, match="legal_token_ids"):
        learner.update([sample])


def test_fp32_master_weights_keep_the_small_updates_that_bf16_weights_round_away():
    """AdamW's first step moves a weight by lr * g / (|g| + eps) = lr * sign(g) (m_hat = g,
    v_hat = g^2). At the paper's lr 1e-6, fp32 master weights (bf16 forward passes under
    autocast) move by 1e-6 each. bf16 keeps 8 significant bits: weights with |w| > 2^-11
    are spaced >= 2^-18 = 3.8e-6 apart, so a 1e-6 step rounds back to the same weight."""
    samples = make_samples(load_model("tiny")[1], BATCH)
    kwargs = dict(lr=1e-6, epochs=1, micro_batch_size=3, loss_norm="token_mean", grad_clip=None)

    master, _ = load_model("tiny", seed=0)  # fp32 on the CPU
    learner = Learner(master, autocast_dtype=torch.bfloat16, **kwargs)
    before = [p.detach().clone() for p in learner.params]
    learner.update(samples)
    for p, old in zip(learner.params, before):
        assert p.dtype == torch.float32
        live = p.grad.abs() > 1e-5  # eps = 1e-8 is then < 0.1% of |g|
        moved = (p.detach() - old)[live]
        # fp32 rounding near |w| = 1 (the norms' weights) is 6e-8
        torch.testing.assert_close(moved, -1e-6 * p.grad[live].sign(), atol=7e-8, rtol=0)

    pure, _ = load_model("tiny", seed=0, dtype="bfloat16")
    learner = Learner(pure, **kwargs)
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
        learner = Learner(model, lr=1e-3, epochs=2, micro_batch_size=2, loss_norm="token_mean",
                          gradient_checkpointing=checkpointing)
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
