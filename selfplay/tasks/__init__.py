"""Verifiable task families: problems with an exact answer that a pure function checks.

A family is to RLVR and to LSP's Solver what a game is to SPIRAL: rules only, nothing
about models.

    task = make("arithmetic", style="compact", digits=1, operators="+")
    problem = task.sample(rng)        # a training problem, reproducible from a random.Random
    held_out = task.held_out(256)     # a fixed evaluation set, disjoint from every training problem
    check = task.check_query(text)    # is this text a problem of the family? (Check.problem has
                                      # the exact answer, computed by the family's own parser)
    task.prompt(problem)              # the text the model sees, in the family's style
    grade = task.grade(problem, response_text)   # Grade(score, reason, well_formed); never raises

Styles, as for games: `compact` (few characters, for the tiny char-level models: `3+4=`
answered `7`) and `chat` (a natural-language request for a `\\boxed{}` answer, for real
models). Same problems, same answers.

Which problems are held out is decided by a hash of the problem's canonical text, not by
a seed: the split is the same in every run and for every recipe (RLVR and LSP are measured
on the same set), and a problem LSP's Challenger writes can be recognised as held out.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

STYLES = ("compact", "chat")


@dataclass(frozen=True)
class Problem:
    text: str  # the canonical problem, e.g. "37+5": its identity (held-out split, deduplication)
    answer: str  # the exact answer in canonical form, e.g. "42"


@dataclass(frozen=True)
class Grade:
    score: float  # 1.0 exactly right, else 0.0
    reason: str  # why, for transcripts: "correct", "wrong answer 41 (expected 42)", ...
    well_formed: bool  # the response has an answer in the expected form, right or wrong


@dataclass(frozen=True)
class Check:
    problem: Problem | None  # the query as a problem of the family, or None when it is not one
    reason: str  # "ok" or what is wrong with the query


class Task(ABC):
    """A family of verifiable problems. Subclasses set `name` and implement the abstract methods."""

    name: ClassVar[str]
    # The share of all problems set aside for evaluation, chosen by the hash of their text.
    held_out_share: ClassVar[float] = 0.2
    # A fixed seed: the held-out set is the same in every run, whatever the run's seed.
    held_out_seed: ClassVar[int] = 20_250_907

    def __init__(self, style: str = "compact"):
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; available: {', '.join(STYLES)}")
        self.style = style

    @abstractmethod
    def draw(self, rng: random.Random) -> Problem:
        """Any problem of the family at its difficulty (held out or not)."""

    @abstractmethod
    def check_query(self, text: str) -> Check:
        """Whether `text` is a problem of this family, and its exact answer. Never raises."""

    @abstractmethod
    def prompt(self, problem: Problem) -> str:
        """What the model is asked, in this task's style."""

    @abstractmethod
    def grade(self, problem: Problem, response: str) -> Grade:
        """Score a model's response against the exact answer. Never raises."""

    def is_held_out(self, problem: Problem) -> bool:
        """Whether `problem` belongs to the evaluation split (a stable hash of its text)."""
        digest = hashlib.sha256(f"{self.name}:{problem.text}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.held_out_share

    def sample(self, rng: random.Random, max_tries: int = 10_000) -> Problem:
        """A training problem: drawn until one is not held out."""
        for _ in range(max_tries):
            problem = self.draw(rng)
            if not self.is_held_out(problem):
                return problem
        raise RuntimeError(f"{self.name}: no training problem in {max_tries} draws (is every problem held out?)")

    def held_out(self, size: int) -> list[Problem]:
        """The first `size` distinct held-out problems of a fixed draw (fewer if the family has
        fewer); a smaller set is a prefix of a larger one."""
        rng = random.Random(self.held_out_seed)
        problems: dict[str, Problem] = {}
        for _ in range(100 * size):  # bounded: a small family may have fewer than `size`
            if len(problems) >= size:
                break
            problem = self.draw(rng)
            if self.is_held_out(problem):
                problems.setdefault(problem.text, problem)
        return list(problems.values())


def make(name: str, **options) -> Task:
    """A task family by name; unknown names and options raise ValueError listing the choices."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    allowed = [p for p in inspect.signature(TASKS[name]).parameters]
    for key in options:
        if key not in allowed:
            raise ValueError(f"unknown option {key!r} for task {name!r}; allowed options: {', '.join(allowed)}")
    return TASKS[name](**options)


# At the end: the families import the interface above.
from selfplay.tasks.arithmetic import ArithmeticTask  # noqa: E402

TASKS: dict[str, type[Task]] = {"arithmetic": ArithmeticTask}

__all__ = ["Check", "Grade", "Problem", "STYLES", "TASKS", "Task", "make"]
