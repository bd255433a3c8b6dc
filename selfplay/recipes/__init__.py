"""Recipes: one self-play method each, in one file, behind one small interface.

The trainer runs every recipe the same way, one step at a time:

    batch   = recipe.collect(step)            # sample with policy.generator; rewards set
                                              # (in asynchronous mode, on a background thread:
                                              # collect and advantages, in step order)
    trained = recipe.advantages(batch)        # Sample.advantage set; the samples to train on
    ... the trainer updates the weights and calls policy.sync() ...
    result  = recipe.evaluate(step)           # every eval.every steps
    recipe.save(folder) / recipe.load(folder) # its own state, inside each checkpoint folder
    recipe.close()

A recipe gets its own config section whole (`recipe:` in the YAML, whose schema is the
recipe's `Config`), the `Policy` (it samples; only the trainer changes weights) and a
`RecipeContext` (seed, run folder, sampling settings). It never touches the optimizer.

A new method is a new file with a `Config` (a `RecipeSection` with a `name` literal) and a
`Recipe` subclass, and one line in RECIPES below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from selfplay.models.generation import SamplingParams
from selfplay.rollout.sample import Sample


class RecipeSection(BaseModel):
    """The base of every recipe's config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass
class RecipeContext:
    seed: int  # the run's seed; derive every other seed from it with selfplay.seeding.derive_seed
    run_dir: Path  # the run folder (a recipe may keep files of its own there)
    sampling: SamplingParams  # how the policy samples for training (config `sampling`)
    eval_sampling: SamplingParams  # and for evaluation (`eval.temperature`)
    # the learner's `entropy_over: legal_moves` needs Sample.legal_token_ids (one-token moves)
    legal_token_ids: bool = False


@dataclass
class Batch:
    samples: list[Sample]  # rewards set, advantages not yet
    metrics: dict = field(default_factory=dict)  # the recipe's own figures for this step


@dataclass
class Evaluation:
    metrics: dict  # logged under their own names (by convention `eval/...`)
    transcripts: list[dict] = field(default_factory=list)  # appended to transcripts.jsonl


class Recipe(ABC):
    name: ClassVar[str]
    Config: ClassVar[type[RecipeSection]]

    def __init__(self, cfg, policy, context: RecipeContext):
        self.cfg, self.policy, self.context = cfg, policy, context

    @abstractmethod
    def collect(self, step: int) -> Batch:
        """Generate this step's samples with `policy.generator` and score them."""

    @abstractmethod
    def advantages(self, batch: Batch) -> list[Sample]:
        """Set `Sample.advantage` on every sample of the batch; return the ones to train on
        (figures about the estimator, e.g. its baselines, go into `batch.metrics`)."""

    def evaluate(self, step: int) -> Evaluation:
        """Measure the policy (`policy.evaluator`, `policy.eval_generator`)."""
        return Evaluation({})

    def reads_weights(self, step: int) -> bool:
        """Whether `collect(step)` reads the trained weights in the trainer's process (not only
        through `policy.generator`), e.g. to snapshot them: in asynchronous mode
        (`distributed.max_staleness`) that step is then sampled while the learner waits."""
        return False

    def evaluate_suites(self, step: int, suites: dict[str, int], max_new_tokens: int) -> Evaluation:
        """The policy on reasoning suites (`selfplay.evals.suites`: humaneval, math), each on
        its fixed subset of `suites[name]` problems (0: all), whatever the method: does
        self-play raise math and code scores? Code runs in the sandbox only."""
        from selfplay.evals.suites import run_suite
        from selfplay.seeding import derive_seed

        metrics, transcripts = {}, []
        for name, size in suites.items():
            result = run_suite(name, self.policy.eval_generator, self.policy.tokenizer, limit=size or None,
                               seed=derive_seed(self.context.seed, step, "evaluation"),
                               temperature=self.context.eval_sampling.temperature, max_new_tokens=max_new_tokens,
                               use_chat_template=self.policy.use_chat_template)
            metrics[f"eval/{name}/{result.metric}"] = result.score
            transcripts += [{"step": step, "suite": name, "problem": r.id, "prompt": r.prompt,
                             "response": r.response, "passed": r.passed, "reason": r.reason}
                            for r in result.records[:2]]
        return Evaluation(metrics, transcripts)

    def save(self, folder: Path) -> None:
        """Write this recipe's state into the checkpoint folder being written."""

    def load(self, folder: Path) -> None:
        """Restore the state `save` wrote, so that the run continues exactly."""

    def close(self) -> None:
        """Release what the recipe holds (files, workers)."""


def recipe_class(name: str) -> type[Recipe]:
    """The recipe registered as `name`; an unknown name lists the choices."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


# At the end: the recipe modules import the interface above.
from selfplay.recipes.azr import AZRRecipe  # noqa: E402
from selfplay.recipes.lsp import LSPRecipe  # noqa: E402
from selfplay.recipes.rlvr import RLVRRecipe  # noqa: E402
from selfplay.recipes.spiral import SpiralRecipe  # noqa: E402

RECIPES: dict[str, type[Recipe]] = {"azr": AZRRecipe, "lsp": LSPRecipe, "rlvr": RLVRRecipe, "spiral": SpiralRecipe}
