"""Reward sources: a score for each (query, answer) pair, from a check, a reward model or a judge.

LSP (ALGORITHMS.md section 2) needs two of them: the task reward R(q, a) that the game is
played on, and the quality self-reward R_Q(q, a) of the frozen reference model. Either role
can be filled by any source here, through one call:

    source = make_reward("verifiable", task=make("arithmetic"))      # exact answers (selfplay.tasks)
    source = make_reward("reward_model:Skywork/Skywork-Reward-V2-Llama-3.2-3B", device="cuda")
    source = make_reward("judge", model=ref, tokenizer=tok, generator=gen, sampling=params)
    source = make_reward("judge:openai:gpt-4o-mini", base_url=..., api_key_env="OPENAI_API_KEY")
    scores = source.score([(query, answer), ...])                    # one batched call -> list[Score]

Where things live:
    selfplay.rewards               Score, RewardSource, VerifiableReward, make_reward
    selfplay.rewards.reward_model  RewardModel (any AutoModelForSequenceClassification)
    selfplay.rewards.judge         the 7-point quality rubric, quality_score, ModelJudge, EndpointJudge
    selfplay.rewards.pairwise      pairwise_prompt, parse_preference, PairwiseJudge (evaluation win rate)
    selfplay.rewards.chat          the text backends a judge runs on: ModelChat, EndpointChat

No source raises on the text of a query or an answer: a query that is not a problem, an
answer the judge cannot read, an endpoint that fails, all become a Score with a reason.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    value: float  # the reward, on the source's own scale (a judge's points times its `scale`)
    reason: str  # one line for transcripts: "correct", "5 of 7 points", "no score in the judge's answer"
    parsed: bool = True  # False when the judge's answer could not be read (value is then 0)


class RewardSource(ABC):
    """Scores (query, answer) pairs. Implementations batch the whole list in one call."""

    @abstractmethod
    def score(self, pairs: list[tuple[str, str]]) -> list[Score]:
        """One Score per pair, in the order of `pairs`. Never raises on their text."""

    def state_dict(self) -> dict:
        """What a checkpoint must keep to resume this source (e.g. a sampling judge's call count)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`."""


class VerifiableReward(RewardSource):
    """R(q, a) for a verifiable task family:

        R(q, a) = grade(problem(q), a).score   when task.check_query(q) finds a problem
                  (or `format_reward` for a wrong answer of the right form, e.g. an integer)
        R(q, a) = 0                            otherwise (the reason says what is wrong with q)

    The family reads the query with its own parser and computes the exact answer itself,
    so a Challenger cannot write a wrong answer key into its query.
    """

    def __init__(self, task, format_reward: float = 0.0):
        self.task = task
        # shaping for a model that must first learn the answer's form; once every answer is
        # well formed it is the same for all answers to a query and drops out of A_sol
        self.format_reward = format_reward

    def score(self, pairs: list[tuple[str, str]]) -> list[Score]:
        scores, checks = [], {}  # the G answers to a query share its check: one parse
        for query, answer in pairs:
            if not isinstance(query, str):  # bad input: the family's check says why
                check = self.task.check_query(query)
            else:
                check = checks.get(query) or checks.setdefault(query, self.task.check_query(query))
            if check.problem is None:
                scores.append(Score(0.0, f"invalid query: {check.reason}"))
                continue
            grade = self.task.grade(check.problem, answer)
            value = float(grade.score) if grade.score > 0 or not grade.well_formed else self.format_reward
            scores.append(Score(value, grade.reason))
        return scores


# ---- the registry -------------------------------------------------------------------------

# spec name -> (module, class, what the `:argument` is or None, help)
REWARDS: dict[str, tuple[str, str, str | None, str]] = {
    "verifiable": ("selfplay.rewards", "VerifiableReward", None,
                   "the exact grade of a task family (needs task=)"),
    "reward_model": ("selfplay.rewards.reward_model", "RewardModel", "path_or_id",
                     "any Hugging Face sequence-classification reward model: reward_model:PATH_OR_ID"),
    "judge": ("selfplay.rewards.judge", "ModelJudge", None,
              "the 7-point quality rubric on a local model (needs model=, tokenizer=, generator=, sampling=)"),
    "judge:openai": ("selfplay.rewards.judge", "EndpointJudge", "model",
                     "the 7-point quality rubric on an OpenAI-compatible endpoint: judge:openai:MODEL"),
}
SPECS = ("verifiable", "reward_model:PATH_OR_ID", "judge", "judge:openai:MODEL")


def make_reward(spec: str, **deps) -> RewardSource:
    """The reward source named by `spec`, built with the keyword arguments `deps`.

    Specs: `verifiable`, `reward_model:PATH_OR_ID`, `judge`, `judge:openai:MODEL` (MODEL may
    itself contain ':'). Unknown specs and options raise ValueError listing the choices.
    """
    name, argument = _parse(spec)
    if name not in REWARDS:
        raise ValueError(f"unknown reward {spec!r}; available: {', '.join(SPECS)}")
    module, cls, argument_name, _ = REWARDS[name]
    if argument_name is not None and not argument:
        raise ValueError(f"reward {name!r} needs an argument: {name}:{argument_name.upper()}")
    if argument_name is None and argument is not None:
        raise ValueError(f"reward {name!r} takes no ':argument' (got {spec!r}); available: {', '.join(SPECS)}")
    klass = getattr(importlib.import_module(module), cls)
    params = inspect.signature(klass.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(set(deps) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for reward {name!r}; accepted: {accepted}")
    if argument_name is not None:
        deps[argument_name] = argument
    missing = [p for p, v in params.items()
               if p != "self" and v.default is inspect.Parameter.empty and p not in deps]
    if missing:
        raise ValueError(f"reward {name!r} needs {', '.join(f'{m}=' for m in missing)} (accepted: {accepted})")
    return klass(**deps)


def _parse(spec: str) -> tuple[str, str | None]:
    """`judge:openai:a:b` -> ("judge:openai", "a:b"); `reward_model:x` -> ("reward_model", "x")."""
    if spec == "judge:openai" or spec.startswith("judge:openai:"):
        return "judge:openai", spec[len("judge:openai:"):] or None
    name, sep, argument = spec.partition(":")
    return name, (argument if sep else None)


__all__ = ["REWARDS", "RewardSource", "SPECS", "Score", "VerifiableReward", "make_reward"]
