"""LoRA: only the adapter trains, the KL reference is the base model with no second copy,
checkpoints hold the adapter, `selfplay export` merges it, and resume is exact."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from selfplay.algorithms import Learner
from selfplay.config import LoraSettings, OptimConfig, load_config
from selfplay.models import HFGenerator, SamplingParams, build_tiny_model, load_model, render_prompt
from selfplay.models.lora import WithoutAdapter, add_adapter, is_adapter_folder, merged, merged_state_dict
from selfplay.runs import latest_checkpoint
from tests.test_learner import BATCH, make_samples
from tests.test_recipes import assert_resume_after_sigkill_equals_an_uninterrupted_run

LORA = "model.lora={r: 4, alpha: 8}"


def logits(model, tokenizer, text="x.o..x...o"):
    with torch.no_grad():
        return model(input_ids=torch.tensor([render_prompt(tokenizer, text)])).logits


def test_only_the_adapter_trains_and_the_reference_is_the_untouched_base_model():
    base, tokenizer = build_tiny_model(seed=3)
    pristine, _ = build_tiny_model(seed=3)
    model = add_adapter(base, LoraSettings(r=4, alpha=8), seed=0, base_name="tiny")
    reference = WithoutAdapter(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learner = Learner(model, OptimConfig(lr=1e-2, epochs=2, micro_batch_size=2, kl_coef=0.1),
                      norm_constant=8, ref_model=reference)
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    for _ in range(3):
        model.train()
        stats = learner.update(make_samples(tokenizer, BATCH))
    assert stats["kl"] > 0  # the adapter moved the policy away from the reference
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k for k in changed)
    assert any("lora_B" in k for k in changed)  # B starts at zero: the adapter's output changed
    model.eval()
    assert torch.equal(logits(reference, tokenizer), logits(pristine, tokenizer))
    assert not torch.allclose(logits(model, tokenizer), logits(pristine, tokenizer))
    # the reference shares every tensor with the policy: no second copy in memory
    assert {p.data_ptr() for p in reference.parameters()} == {p.data_ptr() for p in model.parameters()}


def test_the_generator_samples_with_the_adapter_and_the_reference_without():
    base, tokenizer = build_tiny_model(seed=3)
    model = add_adapter(base, LoraSettings(r=4, alpha=8), seed=0, base_name="tiny")
    with torch.no_grad():  # a visible adapter: B is zero at init
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    pristine, _ = build_tiny_model(seed=3)
    prompt = [render_prompt(tokenizer, "x.o..x...o")]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    with_adapter = HFGenerator(model, tokenizer).generate(prompt, greedy)[0].response_ids
    without = HFGenerator(WithoutAdapter(model), tokenizer).generate(prompt, greedy)[0].response_ids
    plain = HFGenerator(pristine, tokenizer).generate(prompt, greedy)[0].response_ids
    assert without == plain
    assert with_adapter != plain


def test_merged_state_dict_is_the_merged_models_weights_and_leaves_the_model_as_it_was():
    base, tokenizer = build_tiny_model(seed=3)
    model = add_adapter(base, LoraSettings(r=4, alpha=8), seed=0, base_name="tiny")
    with torch.no_grad():  # a fresh adapter adds nothing (B = 0): give it a delta to merge
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weights = merged_state_dict(model)
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    reference = merged(copy.deepcopy(model)).state_dict()
    assert weights.keys() == reference.keys()
    assert all(torch.allclose(weights[k], reference[k], atol=1e-6) for k in reference)
    pristine, _ = build_tiny_model(seed=3)
    assert not torch.allclose(weights["model.layers.0.self_attn.q_proj.weight"],
                              pristine.state_dict()["model.layers.0.self_attn.q_proj.weight"])


def test_config_rejects_lora_with_weight_averaging():
    with pytest.raises(ValueError, match="model.lora and optim.average_decay cannot be combined"):
        load_config(None, [LORA, "optim.average_decay=0.9"])


@pytest.mark.slow
def test_a_lora_checkpoint_holds_the_adapter_and_exports_a_merged_model(tmp_path):
    env = {**os.environ, "SELFPLAY_NO_PROGRESS": "1"}
    run = tmp_path / "run"
    train = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "spiral_tictactoe_tiny", "steps=2",
                            "threads=1", "eval.every=0", "recipe.samples_per_step=16", "optim.lr=1e-2",
                            LORA, f"output_dir={run}"], env=env, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr
    ckpt = latest_checkpoint(run)
    assert is_adapter_folder(ckpt) and not (ckpt / "model.safetensors").exists()
    exported = tmp_path / "exported"
    export = subprocess.run([sys.executable, "-m", "selfplay.cli", "export", str(run), str(exported)],
                            env=env, capture_output=True, text=True)
    assert export.returncode == 0, export.stderr
    plain = AutoModelForCausalLM.from_pretrained(exported)  # no selfplay, no peft
    merged, tokenizer = load_model(str(ckpt))
    pristine, _ = build_tiny_model(seed=0)
    assert torch.allclose(logits(plain, tokenizer), logits(merged, tokenizer), atol=1e-5)
    assert not torch.allclose(logits(plain, tokenizer), logits(pristine, tokenizer))


@pytest.mark.slow
def test_a_lora_run_resumed_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    assert_resume_after_sigkill_equals_an_uninterrupted_run(
        tmp_path, "spiral_tictactoe_tiny",
        ["recipe.samples_per_step=32", "recipe.parallel_games=16", "recipe.eval_games=8", "optim.lr=1e-2",
         "optim.kl_coef=0.01", LORA])
