"""The SPIRAL recipe's rollouts on a tiny model: who plays which seat, what each sample
carries, past opponents, random openings, exact state round trips, token scheduling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfplay.config import load_config
from selfplay.models import SamplingParams
from selfplay.models.policy import Policy
from selfplay.recipes import RecipeContext
from selfplay.recipes.spiral import FIXED, SpiralRecipe

PRESET = "selfplay/configs/spiral_tictactoe_tiny.yaml"  # compact style, one-character moves
# 8 games in flight; no random openings unless a test asks (every move is the learner's or an opponent's)
BASE = ["recipe.parallel_games=8", "recipe.random_opening_moves=0", "recipe.samples_per_step=32"]


@pytest.fixture(scope="module")
def policy():
    """The tiny model, shared: the recipes only sample with it."""
    cfg = load_config(PRESET, [])
    return Policy(cfg.model, cfg.optim, cfg.sampling, cfg.seed)


def spiral(policy, run_dir: Path, *overrides: str, seed: int = 0, sampling: SamplingParams | None = None,
           legal_token_ids: bool = False) -> SpiralRecipe:
    """A SpiralRecipe from the TicTacToe preset with `overrides`, sampling with `policy`."""
    cfg = load_config(PRESET, [*BASE, *overrides])
    s = cfg.sampling
    context = RecipeContext(
        seed=seed, run_dir=Path(run_dir),
        sampling=sampling or SamplingParams(s.temperature, s.top_p, s.max_new_tokens),
        eval_sampling=SamplingParams(cfg.eval.temperature, s.top_p, s.max_new_tokens),
        legal_token_ids=legal_token_ids,
    )
    return SpiralRecipe(cfg.recipe, policy, context)


def record_episodes(recipe: SpiralRecipe) -> list:
    """The finished episodes of every later `recipe.collect` (a Batch carries only samples)."""
    episodes = []
    collect = recipe.scheduler.collect

    def recording(min_samples):
        samples, eps = collect(min_samples)
        episodes.extend(eps)
        return samples, eps

    recipe.scheduler.collect = recording
    return episodes


def test_selfplay_samples_carry_each_seats_final_return(policy, tmp_path):
    recipe = spiral(policy, tmp_path, "recipe.games=[{name: tictactoe}, {name: kuhn_poker, options: {rounds: 1}}]")
    samples, episodes = recipe.scheduler.collect(200)
    assert len(samples) >= 200 and {e.game_name for e in episodes} == {"tictactoe", "kuhn_poker"}
    by_episode = {e.id: e for e in episodes}
    seen_roles = set()
    for s in samples:
        ep = by_episode[s.episode_id]
        assert s.task == ep.game_name
        mover = ep.transcript[s.info["turn"]]["player"]  # who actually moved at that turn
        assert s.role == str(mover)
        assert s.reward == ep.returns[mover]  # gamma = 1: every turn gets the final return
        seen_roles.add(s.role)
    assert seen_roles == {"0", "1"}
    # Self-play: every turn of every finished episode is a learner sample.
    assert sum(len(e.transcript) for e in episodes) == len(samples)


def test_samples_carry_the_legal_moves_as_tokens_when_asked(policy, tmp_path):
    tokenizer = policy.tokenizer
    samples, _ = spiral(policy, tmp_path, legal_token_ids=True).scheduler.collect(40)
    for s in samples:
        board = tokenizer.decode(s.prompt_ids).split(":")[0]  # "X12O45678": free cells are digits
        assert sorted(tokenizer.decode([t]) for t in s.legal_token_ids) == sorted(c for c in board if c.isdigit())
    negotiation = spiral(policy, tmp_path, "recipe.games=[{name: simple_negotiation}]", "recipe.parallel_games=2",
                         legal_token_ids=True)
    with pytest.raises(ValueError, match="one-token moves.*entropy_over=vocab"):
        negotiation.scheduler.collect(2)
    assert spiral(policy, tmp_path).scheduler.collect(8)[0][0].legal_token_ids is None


def test_fixed_opponent_trains_only_the_learners_alternating_seat(policy, tmp_path):
    recipe = spiral(policy, tmp_path, "recipe.opponent=random")
    assert set(recipe.opponents) == {FIXED}
    samples, episodes = recipe.scheduler.collect(100)
    seats = {e.id: e.learner_seats for e in episodes}
    assert {s for e in episodes for s in e.learner_seats} == {0, 1}  # alternates by episode
    assert {e.opponent for e in episodes} == {FIXED}
    for s in samples:
        assert (int(s.role),) == seats[s.episode_id]
    for e in episodes:
        learner_turns = [m for m in e.transcript if m["player"] in e.learner_seats]
        assert len(learner_turns) == sum(s.episode_id == e.id for s in samples)


# snapshots are added by hand below (`every` is never reached)
PAST = ["recipe.past_opponents.every=1000", "recipe.past_opponents.keep=2"]


def test_past_opponents_take_the_other_seat_of_a_share_of_new_episodes(policy, tmp_path):
    recipe = spiral(policy, tmp_path, *PAST, "recipe.past_opponents.fraction=0.5", "recipe.samples_per_step=40")
    recipe._add_snapshot(1)  # what collect(step) does every `every` steps: the policy now, saved and pooled
    recipe._add_snapshot(2)
    assert recipe.past_pool == ["step-000001", "step-000002"]
    assert {p.name for p in (tmp_path / "opponents").iterdir()} == {"step-000001", "step-000002"}
    episodes = record_episodes(recipe)
    samples, drawn = [], []
    for step in range(1, 13):
        first, done = recipe.scheduler.next_episode, len(episodes)
        samples += recipe.collect(step).samples
        # one snapshot per collect (step) plays the new episodes against the past
        started_here = {ep.opponent for ep in [*episodes[done:], *recipe.scheduler.lanes]
                        if ep is not None and ep.id >= first} - {None}
        assert len(started_here) <= 1
        drawn += started_here
    assert set(drawn) == {"step-000001", "step-000002"}  # drawn from the whole pool
    against = [e for e in episodes if e.opponent is not None]
    assert 0.3 < len(against) / len(episodes) < 0.7  # about half, drawn per episode
    assert {e.learner_seats for e in against} == {(0,), (1,)}  # the learner's seat alternates
    assert all(e.learner_seats == (0, 1) for e in episodes if e.opponent is None)
    seats = {e.id: e.learner_seats for e in episodes}
    assert all(int(s.role) in seats[s.episode_id] for s in samples)  # the snapshot's moves are not trained
    for e in against:
        assert sum(s.episode_id == e.id for s in samples) == sum(m["player"] in e.learner_seats for m in e.transcript)


def test_the_past_opponent_pool_keeps_the_newest_and_retired_ones_finish_their_games(policy, tmp_path):
    recipe = spiral(policy, tmp_path, *PAST, "recipe.past_opponents.keep=1", "recipe.past_opponents.fraction=0.9",
                    "recipe.samples_per_step=20")
    recipe._add_snapshot(1)
    recipe.collect(1)
    in_flight = [ep for ep in recipe.scheduler.lanes if ep is not None and ep.opponent == "step-000001"]
    assert in_flight  # games against the first snapshot are still being played
    first_new = recipe.scheduler.next_episode
    recipe._add_snapshot(2)
    assert recipe.past_pool == ["step-000002"] and "step-000001" in recipe.opponents
    episodes = record_episodes(recipe)
    recipe.cfg.samples_per_step = 200
    recipe.collect(2)
    assert {e.id for e in in_flight} <= {e.id for e in episodes if e.opponent == "step-000001"}
    assert all(e.opponent != "step-000001" for e in episodes if e.id >= first_new)
    assert "step-000001" not in recipe.opponents  # let go once its games ended


def test_random_opening_moves_are_played_but_not_trained(policy, tmp_path):
    recipe = spiral(policy, tmp_path, "recipe.random_opening_moves=2")
    samples, episodes = recipe.scheduler.collect(300)
    openings = [sum(bool(m.get("opening")) for m in e.transcript) for e in episodes]
    assert set(openings) == {0, 1, 2}  # 0..N, drawn per episode
    for e, n in zip(episodes, openings):
        assert all(m.get("opening") for m in e.transcript[:n])  # the random moves come first
        own = [s for s in samples if s.episode_id == e.id]
        assert len(own) == len(e.transcript) - n  # every later move is trained, no opening move is
        assert all(s.info["turn"] >= n for s in own)


def _round_trip(a: SpiralRecipe, b: SpiralRecipe, folder: Path) -> None:
    """Save `a`'s state into a checkpoint folder and load it into `b`."""
    folder.mkdir()
    a.save(folder)
    json.loads((folder / "spiral.json").read_text())  # plain data only
    b.load(folder)


def test_scheduler_state_round_trips_games_in_flight(policy, tmp_path):
    game = "recipe.games=[{name: kuhn_poker, options: {rounds: 2}}]"
    a = spiral(policy, tmp_path, game, seed=3)
    a.scheduler.collect(20)
    b = spiral(policy, tmp_path, game, seed=3)
    _round_trip(a, b, tmp_path / "ckpt")
    for x, y in zip(a.scheduler.lanes, b.scheduler.lanes):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.game.history == y.game.history and x.game.observation() == y.game.observation()
    sa, _ = a.scheduler.collect(30)
    sb, _ = b.scheduler.collect(30)
    assert [(s.episode_id, s.response_ids, s.reward) for s in sa] == [(s.episode_id, s.response_ids, s.reward) for s in sb]


MIXTURE = ["recipe.games=[{name: tictactoe}, {name: simple_negotiation, max_new_tokens: 8}]",
           "recipe.parallel_games=16"]


def test_token_scheduling_moves_games_on_while_longer_answers_generate(policy, tmp_path):
    model, tokenizer = policy.generator.model, policy.tokenizer
    # a quarter of the vocabulary ends an answer: negotiation answers of 1-8 tokens
    sampling = SamplingParams(1.0, 1.0, 1, stop_token_ids=tuple(range(3, len(tokenizer), 4)))
    forwards, runs = {}, {}
    for mode in ("round", "token"):
        calls = []
        hook = model.register_forward_hook(lambda *_: calls.append(1))
        try:
            recipe = spiral(policy, tmp_path, *MIXTURE, f"recipe.scheduling={mode}", seed=1, sampling=sampling)
            samples, episodes = recipe.scheduler.collect(150)
        finally:
            hook.remove()
        forwards[mode], runs[mode] = len(calls) / len(samples), (recipe, samples, episodes)
    recipe, samples, episodes = runs["token"]
    batcher = recipe.scheduler.batcher
    assert not batcher.in_flight and batcher._engine.running == 0  # nothing carried over but games
    assert {s.task for s in samples} == {"tictactoe", "simple_negotiation"}
    assert max(len(s.response_ids) for s in samples) > 1  # negotiation answers span several steps
    by_episode = {e.id: e for e in episodes}
    for s in samples:  # the right seat's final return, as in round scheduling
        ep = by_episode[s.episode_id]
        mover = ep.transcript[s.info["turn"]]["player"]
        assert s.role == str(mover) and s.reward == ep.returns[mover]
    assert sum(len(e.transcript) for e in episodes) == len(samples)
    # a round no longer waits for the longest answer: fewer forward passes per sample
    assert forwards["token"] < 0.6 * forwards["round"], forwards
    # deterministic, and the state between collects is games only
    other = spiral(policy, tmp_path, *MIXTURE, "recipe.scheduling=token", seed=1, sampling=sampling)
    _round_trip(recipe, other, tmp_path / "ckpt")
    a, _ = recipe.scheduler.collect(60)
    b, _ = other.scheduler.collect(60)
    assert [(s.episode_id, s.response_ids, s.logprobs) for s in a] == [(s.episode_id, s.response_ids, s.logprobs)
                                                                        for s in b]


def test_lockstep_waits_for_the_whole_wave(policy, tmp_path):
    recipe = spiral(policy, tmp_path, "recipe.parallel_games=4")
    recipe.scheduler.lockstep = True
    recipe.scheduler.collect(1)
    # In lockstep no lane was refilled while others were still playing.
    assert recipe.scheduler.next_episode % 4 == 0
