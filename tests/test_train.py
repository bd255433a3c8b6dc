"""SPIRAL training end to end on a tiny model: samples, checkpoints, exact resume, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfplay.agents import make_agent
from selfplay.agents.llm import GamePrompter
from selfplay.config import ConfigError, load_config
from selfplay.metrics import read_metrics
from selfplay.models import HFGenerator, SamplingParams, load_model
from selfplay.rollout.scheduler import GameChoice, RolloutScheduler
from selfplay.runs import latest_checkpoint
from selfplay.trainer import Trainer

# Small and fast: a few steps of the CPU TicTacToe preset.
TINY = ["threads=1", "rollout.samples_per_step=32", "rollout.parallel_games=16", "eval.games=8",
        "time_limit_minutes=null"]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_model("tiny", seed=0)
    return model, tokenizer, HFGenerator(model, tokenizer)


def scheduler(tiny, games, opponent=None, parallel=8, seed=0, max_new_tokens=1):
    model, tokenizer, generator = tiny
    return RolloutScheduler(games, "compact", generator, GamePrompter(tokenizer), SamplingParams(1.0, 1.0, max_new_tokens),
                            parallel, seed=seed, opponent=opponent)


def test_selfplay_samples_carry_each_seats_final_return(tiny):
    sched = scheduler(tiny, [GameChoice("tictactoe", {}), GameChoice("kuhn_poker", {"rounds": 1})])
    samples, episodes = sched.collect(200)
    assert len(samples) >= 200 and {e.game_name for e in episodes} == {"tictactoe", "kuhn_poker"}
    by_episode = {e.id: e for e in episodes}
    seen_roles = set()
    for s in samples:
        ep = by_episode[s.episode_id]
        assert s.game == ep.game_name
        mover = ep.transcript[s.info["turn"]]["player"]  # who actually moved at that turn
        assert s.role == str(mover)
        assert s.reward == ep.returns[mover]  # gamma = 1: every turn gets the final return
        seen_roles.add(s.role)
    assert seen_roles == {"0", "1"}
    # Self-play: every turn of every finished episode is a learner sample.
    assert sum(len(e.transcript) for e in episodes) == len(samples)


def test_samples_carry_the_legal_moves_as_tokens_when_asked(tiny):
    _, tokenizer, generator = tiny
    sched = RolloutScheduler([GameChoice("tictactoe", {})], "compact", generator, GamePrompter(tokenizer),
                             SamplingParams(1.0, 1.0, 1), 8, legal_token_ids=True)
    samples, _ = sched.collect(40)
    for s in samples:
        board = tokenizer.decode(s.prompt_ids).split(":")[0]  # "X12O45678": free cells are digits
        assert sorted(tokenizer.decode([t]) for t in s.legal_token_ids) == sorted(c for c in board if c.isdigit())
    negotiation = RolloutScheduler([GameChoice("simple_negotiation", {})], "compact", generator,
                                   GamePrompter(tokenizer), SamplingParams(1.0, 1.0, 1), 2, legal_token_ids=True)
    with pytest.raises(ValueError, match="one-token moves.*entropy_over=vocab"):
        negotiation.collect(2)
    assert scheduler(tiny, [GameChoice("tictactoe", {})]).collect(8)[0][0].legal_token_ids is None


def test_fixed_opponent_trains_only_the_learners_alternating_seat(tiny):
    sched = scheduler(tiny, [GameChoice("tictactoe", {})], opponent=make_agent("random", seed=1))
    samples, episodes = sched.collect(100)
    seats = {e.id: e.learner_seats for e in episodes}
    assert {s for e in episodes for s in e.learner_seats} == {0, 1}  # alternates by episode
    for s in samples:
        assert (int(s.role),) == seats[s.episode_id]
    for e in episodes:
        learner_turns = [m for m in e.transcript if m["player"] in e.learner_seats]
        assert len(learner_turns) == sum(s.episode_id == e.id for s in samples)


def test_past_opponents_take_the_other_seat_of_a_share_of_new_episodes(tiny):
    _, tokenizer, generator = tiny
    sched = RolloutScheduler([GameChoice("tictactoe", {})], "compact", generator, GamePrompter(tokenizer),
                             SamplingParams(1.0, 1.0, 1), 8, past_fraction=0.5)
    sched.add_past_opponent("step-000001", make_agent("random", seed=1), keep=2)
    sched.add_past_opponent("step-000002", make_agent("random", seed=2), keep=2)
    samples, episodes, drawn = [], [], []
    for _ in range(12):
        first = sched.next_episode
        got, eps = sched.collect(40)
        samples += got
        episodes += eps
        # one snapshot per collect (step) plays the new episodes against the past
        started_here = {ep.opponent for ep in [*eps, *sched.lanes] if ep is not None and ep.id >= first} - {None}
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


def test_the_past_opponent_pool_keeps_the_newest_and_retired_ones_finish_their_games(tiny):
    _, tokenizer, generator = tiny
    sched = RolloutScheduler([GameChoice("tictactoe", {})], "compact", generator, GamePrompter(tokenizer),
                             SamplingParams(1.0, 1.0, 1), 8, past_fraction=0.9)
    sched.add_past_opponent("step-000001", make_agent("random", seed=1), keep=1)
    sched.collect(20)
    in_flight = [ep for ep in sched.lanes if ep is not None and ep.opponent == "step-000001"]
    assert in_flight  # games against the first snapshot are still being played
    first_new = sched.next_episode
    sched.add_past_opponent("step-000002", make_agent("random", seed=2), keep=1)
    assert sched.past_pool == ["step-000002"] and "step-000001" in sched.past_opponents
    _, episodes = sched.collect(200)
    assert {e.id for e in in_flight} <= {e.id for e in episodes if e.opponent == "step-000001"}
    assert all(e.opponent != "step-000001" for e in episodes if e.id >= first_new)
    assert "step-000001" not in sched.past_opponents  # let go once its games ended


def test_random_opening_moves_are_played_but_not_trained(tiny):
    _, tokenizer, generator = tiny
    sched = RolloutScheduler([GameChoice("tictactoe", {})], "compact", generator, GamePrompter(tokenizer),
                             SamplingParams(1.0, 1.0, 1), 8, random_opening_moves=2)
    samples, episodes = sched.collect(300)
    openings = [sum(bool(m.get("opening")) for m in e.transcript) for e in episodes]
    assert set(openings) == {0, 1, 2}  # 0..N, drawn per episode
    for e, n in zip(episodes, openings):
        assert all(m.get("opening") for m in e.transcript[:n])  # the random moves come first
        own = [s for s in samples if s.episode_id == e.id]
        assert len(own) == len(e.transcript) - n  # every later move is trained, no opening move is
        assert all(s.info["turn"] >= n for s in own)


def test_scheduler_state_round_trips_games_in_flight(tiny):
    a = scheduler(tiny, [GameChoice("kuhn_poker", {"rounds": 2})], seed=3)
    a.collect(20)
    state = json.loads(json.dumps(a.state_dict()))  # plain data only
    b = scheduler(tiny, [GameChoice("kuhn_poker", {"rounds": 2})], seed=3)
    b.load_state_dict(state)
    for x, y in zip(a.lanes, b.lanes):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.game.history == y.game.history and x.game.observation() == y.game.observation()
    sa, _ = a.collect(30)
    sb, _ = b.collect(30)
    assert [(s.episode_id, s.response_ids, s.reward) for s in sa] == [(s.episode_id, s.response_ids, s.reward) for s in sb]


MIXTURE = [GameChoice("tictactoe", {}), GameChoice("simple_negotiation", {}, max_new_tokens=8)]


def test_token_scheduling_moves_games_on_while_longer_answers_generate(tiny):
    model, tokenizer, generator = tiny
    # a quarter of the vocabulary ends an answer: negotiation answers of 1-8 tokens
    sampling = SamplingParams(1.0, 1.0, 1, stop_token_ids=tuple(range(3, len(tokenizer), 4)))
    forwards, runs = {}, {}
    for mode in ("round", "token"):
        calls = []
        hook = model.register_forward_hook(lambda *_: calls.append(1))
        try:
            sched = RolloutScheduler(MIXTURE, "compact", generator, GamePrompter(tokenizer), sampling,
                                     16, seed=1, scheduling=mode)
            samples, episodes = sched.collect(150)
        finally:
            hook.remove()
        forwards[mode], runs[mode] = len(calls) / len(samples), (sched, samples, episodes)
    sched, samples, episodes = runs["token"]
    assert not sched._in_flight and sched._engine.running == 0  # nothing carried over but games
    assert {s.game for s in samples} == {"tictactoe", "simple_negotiation"}
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
    state = json.loads(json.dumps(sched.state_dict()))
    other = RolloutScheduler(MIXTURE, "compact", generator, GamePrompter(tokenizer), sampling,
                             16, seed=1, scheduling="token")
    other.load_state_dict(state)
    a, _ = sched.collect(60)
    b, _ = other.collect(60)
    assert [(s.episode_id, s.response_ids, s.logprobs) for s in a] == [(s.episode_id, s.response_ids, s.logprobs)
                                                                        for s in b]


def test_lockstep_waits_for_the_whole_wave(tiny):
    sched = scheduler(tiny, [GameChoice("tictactoe", {})], parallel=4)
    sched.lockstep = True
    sched.collect(1)
    # In lockstep no lane was refilled while others were still playing.
    assert sched.next_episode % 4 == 0


def _strip_timing(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]


def _train_cmd(run_dir, steps, extra=()):
    return [sys.executable, "-m", "selfplay.cli", "train", "spiral_tictactoe_tiny", f"output_dir={run_dir}",
            f"steps={steps}", "save_every=3", "eval.every=4", *TINY, *extra]


PAST = ["rollout.past_opponents.fraction=0.5", "rollout.past_opponents.every=2", "rollout.past_opponents.keep=2"]


@pytest.mark.parametrize("extra", [[], ["optim.average_decay=0.9"], [*PAST, "rollout.random_opening_moves=2"],
                                   ["model.dtype=bfloat16"]],
                         ids=["plain", "weight-averaging", "past-opponents-random-openings", "bf16-fp32-master"])
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, extra):
    env = {**os.environ, "SELFPLAY_NO_PROGRESS": "1"}
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    subprocess.run(_train_cmd(straight, 8, extra), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(_train_cmd(crashed, 8, extra), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (crashed / "checkpoints" / "step-000006").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "--resume", str(crashed)],
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr

    a, b = read_metrics(straight), read_metrics(crashed)
    assert [r["step"] for r in b] == list(range(1, 9))
    assert _strip_timing(a) == _strip_timing(b)
    assert any("eval/tictactoe/vs_random/win" in r for r in b)
    # The same final weights (with averaging: the average, and the online weights too).
    for sub in ["", "online"] if "optim.average_decay=0.9" in extra else [""]:
        wa = AutoModelForCausalLM.from_pretrained(latest_checkpoint(straight) / sub).state_dict()
        wb = AutoModelForCausalLM.from_pretrained(latest_checkpoint(crashed) / sub).state_dict()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_weight_averaging_exports_the_average_and_keeps_the_online_weights_for_resume(tmp_path):
    cfg = load_config("selfplay/configs/spiral_kuhn_tiny.yaml",
                      [*TINY, "steps=3", "eval.every=3", "optim.average_decay=0.9", "optim.lr=1e-2"])
    trainer = Trainer(cfg, tmp_path)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    ckpt = latest_checkpoint(tmp_path)
    exported = AutoModelForCausalLM.from_pretrained(ckpt).state_dict()
    online = AutoModelForCausalLM.from_pretrained(ckpt / "online").state_dict()
    average, model = trainer.average.model.state_dict(), trainer.model.state_dict()
    assert all(torch.equal(exported[k], average[k]) and torch.equal(online[k], model[k]) for k in exported)
    # The linear average of the three online policies lies between the start and the last.
    name = "model.layers.0.mlp.up_proj.weight"
    moved, total = (average[name] - initial[name]).norm(), (model[name] - initial[name]).norm()
    assert 0 < moved < total
    row = read_metrics(tmp_path)[-1]
    assert {"eval/kuhn_poker/exploitability", "eval/kuhn_poker/exploitability_online"} <= row.keys()
    resumed = Trainer(cfg, tmp_path, resume_from=ckpt)
    assert resumed.average.updates == 3
    assert all(torch.equal(resumed.model.state_dict()[k], model[k]) for k in model)
    assert all(torch.equal(resumed.average.model.state_dict()[k], average[k]) for k in average)


def test_past_opponent_snapshots_are_the_policy_and_only_used_ones_stay_on_disk(tmp_path):
    cfg = load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",
                      [*TINY, "steps=7", "eval.every=0", "save_every=3", "keep_last=1", *PAST])
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    assert trainer.scheduler.past_pool == ["step-000004", "step-000006"]
    checkpoint = json.loads((latest_checkpoint(tmp_path) / "rollout.json").read_text())  # step 7
    used = set(trainer.scheduler.past_opponents) | set(checkpoint["past_opponents"])
    assert {p.name for p in (tmp_path / "opponents").iterdir()} == used  # step-000002 was deleted
    assert any(r.get("past_opponents/tictactoe/learner_return") is not None for r in read_metrics(tmp_path))
    # A snapshot is the policy of its step, in Hugging Face format.
    trainer2 = Trainer(load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",
                                   [*TINY, "steps=6", "eval.every=0", "save_every=6", *PAST]), tmp_path / "b")
    trainer2.train()
    snapshot = AutoModelForCausalLM.from_pretrained(tmp_path / "b" / "opponents" / "step-000006").state_dict()
    final = AutoModelForCausalLM.from_pretrained(latest_checkpoint(tmp_path / "b")).state_dict()
    assert all(torch.equal(snapshot[k], final[k]) for k in final)


def test_bf16_training_keeps_fp32_master_weights_and_samples_with_a_bf16_copy(tmp_path):
    cfg = load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",
                      [*TINY, "steps=2", "eval.every=0", "save_every=2", "model.dtype=bfloat16", "optim.lr=1e-2"])
    trainer = Trainer(cfg, tmp_path)
    sampler = trainer.generator.model
    assert sampler is not trainer.model
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    assert {p.dtype for p in sampler.parameters()} == {torch.bfloat16}
    before = {k: v.clone() for k, v in sampler.state_dict().items()}
    trainer.train()
    master = trainer.model.state_dict()
    # after every update the sampler holds the new weights, rounded to bf16
    assert all(torch.equal(v, master[k].to(torch.bfloat16)) for k, v in sampler.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in sampler.state_dict().items())
    # the bf16 sampler and the learner's bf16 autocast forward agree closely, not exactly
    assert 0 < read_metrics(tmp_path)[-1]["loss/sampler_logprob_gap"] < 0.05
    # checkpoints hold the fp32 master weights (an exact resume needs them)
    saved = AutoModelForCausalLM.from_pretrained(latest_checkpoint(tmp_path)).state_dict()
    assert all(saved[k].dtype == torch.float32 and torch.equal(saved[k], v) for k, v in master.items())
    resumed = Trainer(cfg, tmp_path, resume_from=latest_checkpoint(tmp_path))
    assert all(torch.equal(v, master[k].to(torch.bfloat16)) for k, v in resumed.generator.model.state_dict().items())


@pytest.mark.parametrize("scheduling", ["round", "token"])
def test_generation_batch_size_caps_the_rows_of_every_generation_forward(tmp_path, scheduling):
    cfg = load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",  # 16 games in flight
                      [*TINY, "eval.every=0", "rollout.generation_batch_size=5", f"rollout.scheduling={scheduling}"])
    trainer = Trainer(cfg, tmp_path)
    rows = []
    trainer.generator.model.register_forward_hook(lambda module, args, kwargs, out: rows.append(
        kwargs["input_ids"].shape[0]), with_kwargs=True)
    samples, _ = trainer.scheduler.collect(64)
    assert len(samples) >= 64 and max(rows) == 5 and rows.count(5) > len(rows) / 2
    assert trainer.agent().generator.max_batch_size == 5  # evaluation too


def test_checkpoint_loads_with_plain_transformers_and_keeps_last_k(tmp_path):
    cfg = load_config("selfplay/configs/spiral_kuhn_tiny.yaml",
                      [*TINY, "steps=4", "save_every=1", "keep_last=2", "eval.every=0"])
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["step-000003", "step-000004"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoints" / "step-000004")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "checkpoints" / "step-000004")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, trainer.policy.state_dict()[name])  # the preset averages weights
    assert tokenizer.decode(tokenizer("K:b")["input_ids"]) == "K:b"
    assert (tmp_path / "config.yaml").is_file() and len(read_metrics(tmp_path)) == 4
    assert (tmp_path / "tensorboard").is_dir()


def test_config_errors_name_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr' \(did you mean optim.lr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="advantage.estimator.*'rae' or 'none'"):
        load_config(None, ["advantage.estimator=gae"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("no/such.yaml")
    with pytest.raises(ConfigError, match="past_opponents is for self-play, but rollout.opponent is 'random'"):
        load_config(None, ["rollout.opponent=random", "rollout.past_opponents.fraction=0.5"])
    with pytest.raises(ConfigError, match="float16 cannot be trained here.*use model.dtype=bfloat16"):
        load_config(None, ["model.dtype=float16"])
    with pytest.raises(ConfigError, match="optim.master_weights.*'float32' or 'model'"):
        load_config(None, ["optim.master_weights=fp64"])
    with pytest.raises(ConfigError, match="rollout.past_opponents.fraction"):
        load_config(None, ["rollout.past_opponents.fraction=1.5"])


def test_cli_reports_config_errors_without_a_traceback():
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "steps=-3"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "bad value for 'steps'" in out.stderr and "Traceback" not in out.stderr


def test_trained_run_plays_as_an_llm_agent_in_selfplay_eval(tmp_path):
    cfg = load_config(None, [*TINY, "style=compact", "steps=1", "eval.every=0", "rollout.max_new_tokens=1",
                             "games=[{name: kuhn_poker, options: {rounds: 1}}]"])
    Trainer(cfg, tmp_path).train()
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "eval", "--game", "kuhn_poker",
                          "--game-option", "rounds=1", "--agent", f"llm:{tmp_path}", "--opponent", "nash",
                          "--games", "6", "--exploitability", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["games"] == 6
    assert 0.0 < summary["exploitability"]["exploitability"] < 1.5


@pytest.mark.parametrize("opponent", ["random", "frozen"])
def test_fixed_opponent_training_runs_and_moves_the_weights(tmp_path, opponent):
    cfg = load_config(None, [*TINY, "style=compact", "steps=2", "eval.every=0", "rollout.max_new_tokens=1",
                             f"rollout.opponent={opponent}", "optim.lr=1e-2", "optim.norm_constant=1"])
    trainer = Trainer(cfg, tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    if opponent == "frozen":  # the frozen copy keeps the initial weights
        assert all(torch.equal(before[k], v) for k, v in trainer.reference.state_dict().items())
    assert len(read_metrics(tmp_path)) == 2


def test_short_selfplay_run_learns_to_make_legal_moves(tmp_path):
    """The easiest thing TicTacToe self-play teaches: a random model's one-character
    answer is a legal move ~8% of the time; 40 steps of RAE + PPO make most moves legal."""
    cfg = load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",
                      ["threads=1", "steps=40", "eval.every=0", "rollout.samples_per_step=128",
                       "rollout.parallel_games=32", "optim.micro_batch_size=128", "optim.lr=1e-3",
                       "time_limit_minutes=null", "save_every=1000",
                       "rollout.random_opening_moves=0"])  # game length: the model's own moves only
    Trainer(cfg, tmp_path).train()
    rows = read_metrics(tmp_path)
    first, last = rows[0]["invalid_move_rate"], sum(r["invalid_move_rate"] for r in rows[-5:]) / 5
    assert first > 0.8
    assert last < 0.45, f"invalid-move rate went from {first:.2f} to only {last:.2f}"
    assert rows[-1]["game_length"] > 2 * rows[0]["game_length"]  # legal moves make games last


def test_linear_learning_rate_schedule_by_hand():
    from types import SimpleNamespace

    cfg = load_config(None, ["optim.lr=1e-3", "optim.lr_schedule=linear", "optim.lr_final_fraction=0.1", "steps=11"])
    at = lambda step: Trainer.learning_rate(SimpleNamespace(cfg=cfg, step=step))  # noqa: E731
    assert at(0) == pytest.approx(1e-3) and at(10) == pytest.approx(1e-4) and at(5) == pytest.approx(5.5e-4)
    constant = load_config(None, ["optim.lr=1e-3"])
    assert Trainer.learning_rate(SimpleNamespace(cfg=constant, step=7)) == 1e-3
