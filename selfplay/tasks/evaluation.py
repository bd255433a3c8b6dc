"""Held-out accuracy of a policy on a task family: what RLVR and LSP's Solver are measured by."""

from __future__ import annotations

from typing import Callable

from selfplay.tasks import Problem, Task


def held_out_accuracy(task: Task, problems: list[Problem], prompt_ids: Callable[[Problem], list[int]], generator,
                      sampling, seed: int | None, step: int, transcripts: int = 4) -> tuple[dict, list[dict]]:
    """Answer every problem once with `sampling` (greedy at temperature 0 in evaluations) and
    grade it exactly.

    Returns metrics `eval/<task>/accuracy | well_formed | response_length` and the first
    `transcripts` answers as transcript rows."""
    generations = generator.generate([prompt_ids(p) for p in problems], sampling, seed=seed)
    grades = [task.grade(problem, g.text) for problem, g in zip(problems, generations)]
    prefix = f"eval/{task.name}"
    metrics = {
        f"{prefix}/accuracy": sum(grade.score == 1.0 for grade in grades) / len(grades),
        f"{prefix}/well_formed": sum(grade.well_formed for grade in grades) / len(grades),
        f"{prefix}/response_length": sum(len(g.response_ids) for g in generations) / len(generations),
    }
    rows = [{"step": step, "task": task.name, "prompt": task.prompt(problem), "response": g.text,
             "answer": problem.answer, "score": grade.score, "reason": grade.reason}
            for problem, g, grade in list(zip(problems, generations, grades))[:transcripts]]
    return metrics, rows
