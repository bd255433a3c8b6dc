"""The RLVR recipe: G graded answers per problem, group-relative advantages, held-out
evaluation, and a tiny model that learns its sums through the trainer."""

import json
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from selfplay.config import ModelConfig, OptimConfig, SamplingConfig, load_config
from selfplay.models.generation import Generation, SamplingParams
from selfplay.models.policy import Policy
from selfplay.models.tokenizer import build_char_tokenizer
from selfplay.recipes import Batch, RecipeContext, recipe_class
from selfplay.recipes.rlvr import Config, RLVRRecipe
from selfplay.rollout.sample import Sample
from selfplay.tasks import Grade

PRESET = Path(__file__).resolve().parents[1] / "selfplay" / "configs" / "rlvr_tiny.yaml"


def context(tmp_path, seed=0, max_new_tokens=2, eval_temperature=0.0):
    return RecipeContext(seed=seed, run_dir=tmp_path,
                         sampling=SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens),
                         eval_sampling=SamplingParams(temperature=eval_temperature, max_new_tokens=max_new_tokens))


def tiny_policy(seed=0):
    return Policy(ModelConfig(name="tiny"), OptimConfig(), SamplingConfig(), seed=seed)


def recipe(tmp_path, policy=None, seed=0, **options):
    cfg = Config(**{"prompts_per_step": 4, "answers_per_prompt": 3, **options})
    return RLVRRecipe(cfg, policy or tiny_policy(), context(tmp_path, seed))


# ---------------------------------------------------------------- config

def test_rlvr_is_registered_and_its_config_checks_the_task():
    assert recipe_class("rlvr") is RLVRRecipe
    assert Config().name == "rlvr" and Config().scale_by_std is False
    with pytest.raises(ValidationError, match="unknown task 'sums'; available: arithmetic"):
        Config(task="sums")
    with pytest.raises(ValidationError, match="unknown option 'depth'"):
        Config(task_options={"depth": 3})
    with pytest.raises(ValidationError):
        Config(answers_per_prompt=1)  # a group of one has no baseline


def test_the_preset_loads():
    cfg = load_config(PRESET)
    assert isinstance(cfg.recipe, Config)
    assert cfg.recipe.task == "arithmetic" and cfg.model.name == "tiny"


# ---------------------------------------------------------------- collect and rewards

def test_collect_gives_G_graded_answers_per_problem(tmp_path):
    rlvr = recipe(tmp_path)
    batch = rlvr.collect(step=3)
    problems = rlvr.problems(3)
    assert len(batch.samples) == 4 * 3
    tokenizer = rlvr.policy.tokenizer
    for k, s in enumerate(batch.samples):
        i, problem = k // 3, problems[k // 3]
        assert (s.task, s.role, s.group, s.episode_id) == ("arithmetic", "solver", f"3:{i}", 3 * 4 + i)
        assert tokenizer.decode(s.prompt_ids) == problem.text + "="
        assert s.info["problem"] == problem.text and s.info["answer"] == problem.answer
        grade = rlvr.task.grade(problem, s.info["text"])
        assert s.reward == grade.score and s.info["reason"] == grade.reason
        assert len(s.logprobs) == len(s.response_ids) <= 2
    assert len({s.episode_id for s in batch.samples}) == 4  # one episode per problem
    metrics = batch.metrics
    assert set(metrics) == {"rlvr/reward", "rlvr/accuracy", "rlvr/zero_signal_groups", "rlvr/response_length",
                            "rlvr/truncated"}
    assert all(0 <= metrics[k] <= 1 for k in metrics if k != "rlvr/response_length")


def test_a_step_is_a_pure_function_of_seed_and_step(tmp_path):
    # A fresh recipe (as after a resume) draws the same problems and the same answers.
    first, again = recipe(tmp_path).collect(5), recipe(tmp_path).collect(5)
    assert [(s.info["problem"], s.response_ids) for s in first.samples] == \
           [(s.info["problem"], s.response_ids) for s in again.samples]
    rlvr = recipe(tmp_path, prompts_per_step=16)
    assert rlvr.problems(5) != rlvr.problems(6)
    assert rlvr.problems(5) != recipe(tmp_path, seed=1, prompts_per_step=16).problems(5)
    held_out = {p.text for p in rlvr.held_out}
    assert not held_out & {p.text for step in range(50) for p in rlvr.problems(step)}


def test_reward_is_the_grade_plus_an_optional_format_reward(tmp_path):
    plain, shaped = recipe(tmp_path), recipe(tmp_path, format_reward=0.2)
    right, wrong, garbage = Grade(1.0, "correct", True), Grade(0.0, "wrong", True), Grade(0.0, "junk", False)
    assert [plain.reward(g) for g in (right, wrong, garbage)] == [1.0, 0.0, 0.0]
    assert [shaped.reward(g) for g in (right, wrong, garbage)] == [1.0, 0.2, 0.0]


def test_chat_style_prompts_go_through_the_chat_template(tmp_path):
    rlvr = recipe(tmp_path, style="chat")
    text = rlvr.policy.tokenizer.decode(rlvr.prompt_ids(rlvr.held_out[0]))
    assert text.startswith("<|im_start|>user\nCalculate: ") and "\\boxed{}" in text


# ---------------------------------------------------------------- advantages

def answer(group, reward):
    return Sample(prompt_ids=[1], response_ids=[2], logprobs=[-1.0], task="arithmetic", role="solver",
                  episode_id=0, reward=reward, group=group)


def test_advantages_are_relative_to_the_problems_own_answers(tmp_path):
    rewards = {"0:0": [1.0, 0.0, 0.0, 1.0], "0:1": [0.2, 0.2, 1.0, 0.2], "0:2": [0.0] * 4}
    batch = Batch([answer(g, r) for g, rs in rewards.items() for r in rs])
    trained = recipe(tmp_path).advantages(batch)
    assert trained == batch.samples  # every sample is trained on
    # A = r - mean(r of the group): 0.5 / 0.4, and a group with one reward gives no signal
    expected = [0.5, -0.5, -0.5, 0.5] + [-0.2, -0.2, 0.6, -0.2] + [0.0] * 4
    assert [s.advantage for s in trained] == pytest.approx(expected)

    batch = Batch([answer(g, r) for g, rs in rewards.items() for r in rs])
    trained = recipe(tmp_path, scale_by_std=True).advantages(batch)
    # / (population std + 1e-6): 0.5 and sqrt(3 * 0.2^2 + 0.6^2) / 2 = 0.34641
    std = math.sqrt((3 * 0.2 ** 2 + 0.6 ** 2) / 4)
    expected = [a / (0.5 + 1e-6) for a in (0.5, -0.5, -0.5, 0.5)] + \
               [a / (std + 1e-6) for a in (-0.2, -0.2, 0.6, -0.2)] + [0.0] * 4
    assert [s.advantage for s in trained] == pytest.approx(expected)


# ---------------------------------------------------------------- evaluate and state

class Oracle:
    """A generator that answers every held-out problem from a table."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers = tokenizer, answers
        self.params = []

    def generate(self, prompts, params, seed=None):
        self.params.append(params)
        texts = [self.answers.get(self.tokenizer.decode(p).rstrip("="), "x") for p in prompts]
        return [Generation(list(p), [1] * len(t), [0.0] * len(t), t, False) for p, t in zip(prompts, texts)]


class OraclePolicy:
    use_chat_template = None

    def __init__(self, answers):
        self.tokenizer = build_char_tokenizer()
        self.generator = self.eval_generator = Oracle(self.tokenizer, answers)


def test_evaluate_reports_held_out_accuracy_and_transcripts(tmp_path):
    rlvr = recipe(tmp_path, policy=OraclePolicy({}), eval_size=256, eval_transcripts=2)
    held_out = rlvr.held_out
    # right on the first half, a wrong number on the next quarter, no number on the rest
    answers = {p.text: p.answer for p in held_out[:len(held_out) // 2]}
    answers |= {p.text: str(int(p.answer) + 1) for p in held_out[len(held_out) // 2:3 * len(held_out) // 4]}
    rlvr.policy = OraclePolicy(answers)
    result = rlvr.evaluate(step=7)
    n = len(held_out)
    assert result.metrics["eval/arithmetic/accuracy"] == pytest.approx((n // 2) / n)
    assert result.metrics["eval/arithmetic/well_formed"] == pytest.approx((3 * n // 4) / n)
    assert rlvr.policy.eval_generator.params == [rlvr.context.eval_sampling]  # greedy here
    assert [t["prompt"] for t in result.transcripts] == [p.text + "=" for p in held_out[:2]]
    assert result.transcripts[0] == {"step": 7, "task": "arithmetic", "prompt": held_out[0].text + "=",
                                   "response": held_out[0].answer, "answer": held_out[0].answer,
                                   "score": 1.0, "reason": "correct"}


def test_the_recipe_saves_nothing(tmp_path):
    rlvr = recipe(tmp_path, policy=OraclePolicy({}))
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    rlvr.save(folder)
    rlvr.load(folder)
    assert list(folder.iterdir()) == []


# ---------------------------------------------------------------- learning, through the trainer

@pytest.mark.slow
def test_a_tiny_model_learns_held_out_sums(tmp_path, monkeypatch):
    """The preset's recipe and settings on one-digit answers (`3+4=` -> `7`, one token), so
    that a hundred steps are enough: held-out accuracy rises from the initial model's."""
    from selfplay.trainer import Trainer

    monkeypatch.setenv("SELFPLAY_NO_PROGRESS", "1")
    cfg = load_config(PRESET, ["recipe.task_options.max_answer=9", "sampling.max_new_tokens=1",
                               "optim.norm_constant=1", "steps=100", "eval.every=100", "save_every=100",
                               "time_limit_minutes=null"])
    threads = torch.get_num_threads()  # the trainer sets the process's threads (cfg.threads)
    try:
        trainer = Trainer(cfg, tmp_path)
        before = trainer.evaluate()["eval/arithmetic/accuracy"]
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 100
    after = rows[-1]["eval/arithmetic/accuracy"]
    assert after >= before + 0.2, (before, after)
    first_train = sum(r["rlvr/accuracy"] for r in rows[:10]) / 10
    last_train = sum(r["rlvr/accuracy"] for r in rows[-10:]) / 10
    assert last_train >= first_train + 0.3, (first_train, last_train)
