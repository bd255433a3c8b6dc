"""RLVR: plain GRPO on a fixed prompt set with a verifiable reward (the data-driven baseline).

LSP (ALGORITHMS.md section 2) is measured against "GRPO on a fixed set of prompts with the
same reward": this recipe. Every step draws N problems from a task family's training
split (selfplay.tasks), samples G answers to each, grades each answer exactly, and takes
the group-relative advantage:

    r_i^j  = grade(q_i, a_i^j)                      1 if answer j to problem i is exactly right, else 0
                                                    (format_reward if it is well formed but wrong)
    A_i^j  = r_i^j - mean_j r_i^j                   scale_by_std = False (Dr. GRPO)
    A_i^j  = (r_i^j - mean_j r_i^j) / (std_j r_i^j + eps)   scale_by_std = True (the original GRPO)

A group whose G answers all score the same has A = 0 everywhere: no signal. The loss,
its normalisation and the KL term are the trainer's (`optim`), as for every recipe.

Choices, each an option:
- No division by the group std by default (Dr. GRPO, Liu et al. 2025): the std
  up-weights problems that are almost always or almost never solved. LSP's Solver
  advantage has no std either, so the comparison changes one thing only: where the
  problems come from.
- `format_reward` (0 by default): a small reward for a well-formed wrong answer, for a
  randomly initialised model that must first learn to answer with a number at all.
- The prompt set is a task family's training split, drawn afresh each step (with
  repeats), not a fixed list walked in epochs: the same thing for a family of thousands
  of problems, and it needs no position to save.
- `style: compact` (`3+4=` answered `7`) for tiny models on a CPU; `chat` asks for the
  answer in `\\boxed{}`, for real models.

Sections: config, collect, rewards, advantages, evaluate, state.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from selfplay.algorithms.advantages import grpo_advantages
from selfplay.models.loading import style_prompt_ids
from selfplay.recipes import Batch, Evaluation, Recipe, RecipeSection
from selfplay.rollout.sample import Sample
from selfplay.seeding import derive_seed
from selfplay.tasks import Grade, Problem
from selfplay.tasks import make as make_task
from selfplay.tasks.evaluation import held_out_accuracy

ROLE = "solver"  # the one role: the model answering (LSP's Solver)


# ---- config ---------------------------------------------------------------------------------
class Config(RecipeSection):
    name: Literal["rlvr"] = "rlvr"
    task: str = "arithmetic"  # the task family (selfplay.tasks.TASKS)
    task_options: dict[str, Any] = {}  # the family's difficulty, e.g. {digits: 2, terms: 3, operators: "+-"}
    style: Literal["compact", "chat"] = "compact"  # compact: `3+4=` for tiny models; chat: a \boxed{} answer
    prompts_per_step: int = Field(64, gt=0)  # N problems per step
    answers_per_prompt: int = Field(8, ge=2)  # G answers per problem: the group of the baseline
    scale_by_std: bool = False  # False: Dr. GRPO (A = r - mean); True: the original GRPO (/ std)
    # r of a well-formed but wrong answer (an integer, for arithmetic): shaping for a model that
    # must first learn the answer's form; 0: accuracy only, the baseline's reward
    format_reward: float = Field(0.0, ge=0, lt=1)
    eval_size: int = Field(256, gt=0)  # held-out problems per evaluation (fewer if the family has fewer)
    eval_transcripts: int = Field(4, ge=0)  # evaluation answers written to transcripts.jsonl

    @model_validator(mode="after")
    def _known_task(self):
        make_task(self.task, style=self.style, **self.task_options)  # unknown names and options list the choices
        return self


class RLVRRecipe(Recipe):
    name = "rlvr"
    Config = Config

    def __init__(self, cfg: Config, policy, context):
        super().__init__(cfg, policy, context)
        self.task = make_task(cfg.task, style=cfg.style, **cfg.task_options)
        self.held_out = self.task.held_out(cfg.eval_size)  # fixed: the same in every run
        if not self.held_out:
            raise ValueError(f"task {cfg.task!r} with options {cfg.task_options} has no held-out problems")

    def prompt_ids(self, problem: Problem) -> list[int]:
        return style_prompt_ids(self.policy.tokenizer, self.task.prompt(problem), self.cfg.style,
                                self.policy.use_chat_template)

    # ---- collect: N problems, G answers each --------------------------------------------------
    def problems(self, step: int) -> list[Problem]:
        """Step `step`'s problems: a pure function of (seed, step), so a resumed run draws
        exactly what an uninterrupted one would."""
        rng = random.Random(derive_seed(self.context.seed, step, "prompts"))
        return [self.task.sample(rng) for _ in range(self.cfg.prompts_per_step)]

    def collect(self, step: int) -> Batch:
        problems, G = self.problems(step), self.cfg.answers_per_prompt
        prompts = [self.prompt_ids(problem) for problem in problems for _ in range(G)]
        generations = self.policy.generator.generate(prompts, self.context.sampling,
                                                     seed=derive_seed(self.context.seed, step, "generation"))
        samples = []
        for k, generation in enumerate(generations):
            i = k // G  # the problem this answer belongs to
            problem = problems[i]
            grade = self.task.grade(problem, generation.text)
            samples.append(Sample(
                prompt_ids=generation.prompt_ids, response_ids=generation.response_ids,
                logprobs=generation.logprobs, task=self.cfg.task, role=ROLE,
                episode_id=step * self.cfg.prompts_per_step + i,  # unique per problem over the run
                reward=self.reward(grade), group=f"{step}:{i}", truncated=generation.truncated,
                info={"problem": problem.text, "answer": problem.answer, "text": generation.text,
                      "reason": grade.reason, "correct": grade.score == 1.0},
            ))
        return Batch(samples, self.step_metrics(samples))

    def step_metrics(self, samples: list[Sample]) -> dict[str, float]:
        groups: dict[str, set[float]] = {}
        for s in samples:
            groups.setdefault(s.group, set()).add(s.reward)
        n = len(samples)
        return {
            "rlvr/reward": sum(s.reward for s in samples) / n,
            "rlvr/accuracy": sum(s.info["correct"] for s in samples) / n,  # train accuracy
            "rlvr/zero_signal_groups": sum(len(rewards) == 1 for rewards in groups.values()) / len(groups),
            "rlvr/response_length": sum(len(s.response_ids) for s in samples) / n,
            "rlvr/truncated": sum(s.truncated for s in samples) / n,
        }

    # ---- rewards: the task's exact grade -----------------------------------------------------
    def reward(self, grade: Grade) -> float:
        """r = 1 for the exact answer, `format_reward` for a well-formed wrong one, else 0.
        Once every answer is well formed the format reward is the same for all G answers of
        a problem, and drops out of A: it only helps the first steps."""
        if grade.score > 0:
            return grade.score
        return self.cfg.format_reward if grade.well_formed else 0.0

    # ---- advantages: group-relative, over the G answers to one problem ----------------------
    def advantages(self, batch: Batch) -> list[Sample]:
        """A = r - mean(r of the problem's G answers), divided by their std if scale_by_std
        (the group is `Sample.group`). Every sample is trained on: a zero-signal group has
        A = 0 and adds no policy gradient."""
        return grpo_advantages(batch.samples, scale_by_std=self.cfg.scale_by_std)

    # ---- evaluate: held-out accuracy ---------------------------------------------------------
    def evaluate(self, step: int) -> Evaluation:
        """Accuracy on the fixed held-out problems at `eval_sampling` (greedy at temperature 0),
        with the evaluator's weights: `eval/<task>/accuracy`, and a few transcripts."""
        metrics, transcripts = held_out_accuracy(
            self.task, self.held_out, self.prompt_ids, self.policy.eval_generator, self.context.eval_sampling,
            seed=derive_seed(self.context.seed, step, "evaluation"), step=step,
            transcripts=self.cfg.eval_transcripts)
        return Evaluation(metrics, transcripts)

    # ---- state: none -------------------------------------------------------------------------
    # Nothing to save: a step's problems and its sampling seed are pure functions of (seed,
    # step), and the held-out set is fixed, so a resumed run continues exactly without them.
    def save(self, folder: Path) -> None:
        pass

    def load(self, folder: Path) -> None:
        pass
