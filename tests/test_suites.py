"""Reasoning suites: problem sets, graders (HumanEval in the real sandbox, math with
math-verify), fixed subsets, `run_suite` with the tiny model, and `selfplay eval --suite`."""

from __future__ import annotations

import json
import os
import signal
import socket
import textwrap
import threading

import pytest

from selfplay.cli import main
from selfplay.evals import suites
from selfplay.evals.suites import (
    SUITES,
    Problem,
    extract_code,
    grade_humaneval,
    grade_humaneval_many,
    grade_math,
    humaneval_problems,
    math_problems,
    run_suite,
    select,
)
from selfplay.models import load_model
from selfplay.models.generation import Generation
from selfplay.sandbox import Sandbox


@pytest.fixture(scope="module")
def box():
    with Sandbox(workers=2, require=("all",)) as box:
        yield box


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code}```\nDone."


# ---------------------------------------------------------------- humaneval


def test_humaneval_is_the_164_problems_of_the_wheel():
    problems = humaneval_problems()
    assert len(problems) == 164 and len({p.id for p in problems}) == 164
    assert problems[0].id == "HumanEval/0" and problems[0].entry_point == "has_close_elements"
    assert all(p.text.endswith("\n") and "def check(candidate)" in p.test for p in problems)


def test_reference_solutions_pass_in_the_sandbox(box):
    problems = humaneval_problems()[:8]
    # as a raw completion of the body, and as the whole function in a fence
    bodies = grade_humaneval_many(problems, [p.solution for p in problems], box)
    whole = grade_humaneval_many(problems, [fenced(p.text + p.solution) for p in problems], box)
    assert all(g.passed and g.reason == "passed" for g in bodies + whole), bodies + whole


def test_wrong_solutions_fail(box, monkeypatch):
    p = humaneval_problems()[0]
    wrong = grade_humaneval(p, "    return True\n", box)
    assert not wrong.passed and wrong.reason.startswith("error: AssertionError")
    syntax = grade_humaneval(p, fenced("def has_close_elements(numbers, threshold)\n    return 1\n"), box)
    assert not syntax.passed and "SyntaxError" in syntax.reason
    assert not grade_humaneval(p, "", box).passed  # the prompt's stub returns None
    monkeypatch.setattr(suites, "HUMANEVAL_TIMEOUT_S", 0.5)
    loop = grade_humaneval(p, "    while True:\n        pass\n", box)
    assert not loop.passed and loop.reason.startswith("timeout")


def test_extract_code_takes_the_last_fence_else_the_raw_completion():
    assert extract_code("```python\na = 1\n```\nthen\n```python\nb = 2\n```\n") == "b = 2\n"
    assert extract_code("```py\nx\n```") == "x\n"
    assert extract_code("text\n```python\ndef f():\n    return 1\n") == "def f():\n    return 1\n"  # cut off
    # a raw body completion stops where the paper's stop sequences start something new
    assert extract_code("    return 1\n\ndef other():\n    pass\n") == "    return 1\n"
    assert extract_code("    return 1\nif __name__ == '__main__':\n") == "    return 1"


ESCAPES = {
    "write_outside": "open({marker!r}, 'w').write('escaped')",
    "os_system": "assert os.system('touch {marker}') == 0",
    "fork": "pid = os.fork()\nif pid == 0:\n    open({marker!r}, 'w').close()\n    os._exit(0)\nos.waitpid(pid, 0)",
    "read_etc_passwd": "assert 'root:' in open('/etc/passwd').read()",
    "socket": "socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'escaped')",
    "signal_caller": "os.kill({pid}, signal.SIGUSR1)",
}


@pytest.mark.parametrize("name", ESCAPES)
def test_escaping_solution_is_blocked_and_fails(box, tmp_path, name):
    """Each response runs an escape, then answers correctly: it could pass only if the escape worked."""
    p = humaneval_problems()[0]
    marker = tmp_path / "escaped"
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    signalled = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: signalled.append(True))
    try:
        attack = ESCAPES[name].format(marker=str(marker), port=listener.getsockname()[1], pid=os.getpid())
        code = "import os, signal, socket\n" + p.text + textwrap.indent(attack, "    ") + "\n" + p.solution
        grade = grade_humaneval(p, fenced(code), box)
        assert not grade.passed and grade.reason.startswith("error:"), grade
        assert not marker.exists()
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert not signalled
    finally:
        signal.signal(signal.SIGUSR1, previous)
        listener.close()
    assert grade_humaneval(p, p.solution, box).passed  # the sandbox still works


def test_escapes_would_pass_without_the_os_layers(tmp_path):
    """The escape tests can fail: with namespaces and seccomp off, the same responses pass."""
    p = humaneval_problems()[0]
    marker = tmp_path / "escaped"
    with Sandbox(workers=1, layers=()) as weak:
        for name in ("write_outside", "fork"):
            attack = ESCAPES[name].format(marker=str(marker))
            code = "import os\n" + p.text + textwrap.indent(attack, "    ") + "\n" + p.solution
            assert grade_humaneval(p, fenced(code), weak).passed and marker.exists()
            marker.unlink()


# ---------------------------------------------------------------- math


@pytest.mark.parametrize("response, answer, passed", [
    ("so the answer is \\boxed{42}", "42", True),
    ("\\boxed{41}", "42", False),
    ("the answer is 42", "42", False),  # not in a box: not credited
    ("$42$", "42", False),
    ("\\boxed{41} no, wait: \\boxed{42}", "42", True),  # the last box counts
    ("\\boxed{42} no, wait: \\boxed{41}", "42", False),
    ("\\boxed{1/2}", "0.5", True),
    ("\\boxed{\\frac{1}{2}}", "0.5", True),
    ("\\boxed{-180}", "-180", True),
    ("\\boxed{x = 42}", "42", True),
    ("\\boxed{6 \\times 7}", "42", False),  # an expression, not an answer
    ("\\boxed{__import__('os').system('touch /tmp/selfplay-pwned')}", "42", False),
    ("\\boxed{}", "42", False),
    ("\\boxed{42", "42", False),  # never closed
])
def test_grade_math(response, answer, passed):
    assert grade_math(Problem("t", "q", answer), response).passed is passed
    assert not os.path.exists("/tmp/selfplay-pwned")


def test_math_grading_refuses_other_threads():
    errors = []

    def grade():
        try:
            grade_math(Problem("t", "q", "1"), "\\boxed{1}")
        except RuntimeError as e:
            errors.append(str(e))

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0]


def test_math_problems_are_reproducible_and_right():
    problems = math_problems()
    assert len(problems) == 200 and problems == math_problems(0) and problems != math_problems(1)
    assert len({p.text for p in problems}) > 150
    by_id = {p.id: p for p in problems}
    # worked by hand
    assert by_id["math/0"].text.startswith("Lena is 11 years old and her father is 21 years older")
    assert by_id["math/0"].answer == "38"  # 11 + 21 + 6
    assert by_id["math/1"].answer == "18"  # 50 - 8 * 4
    assert by_id["math/6"].text == "Compute 18 - (13 + 20 * (8 - 11))." and by_id["math/6"].answer == "65"
    assert by_id["math/9"].text == "Compute 18 - (20 - 13 + 11 - 19)." and by_id["math/9"].answer == "19"
    assert by_id["math/13"].text == "Compute (16 * 19 + 11) * (1 + 9)." and by_id["math/13"].answer == "3150"


def test_arithmetic_answers_agree_with_the_project_parser():
    from selfplay.tasks.arithmetic import evaluate  # a recursive-descent parser, not eval

    arithmetic = [p for p in math_problems() if p.text.startswith("Compute ")]
    assert 60 < len(arithmetic) < 140
    for p in arithmetic:
        assert str(evaluate(p.text.removeprefix("Compute ").removesuffix("."))[1]) == p.answer, p


# ---------------------------------------------------------------- subsets and run_suite


def test_limit_takes_the_same_nested_subset_every_time():
    problems = math_problems()
    ten = select(problems, 10)
    assert ten == select(problems, 10) and len(ten) == 10
    assert set(ten) < set(select(problems, 20))
    assert [p.id for p in ten] == sorted((p.id for p in ten), key=lambda i: int(i.split("/")[1]))
    assert select(problems, None) == select(problems, 500) == list(problems)
    with pytest.raises(ValueError, match="at least 1"):
        select(problems, 0)


def test_unknown_suite_lists_the_choices(tiny):
    with pytest.raises(ValueError, match="unknown suite 'mbpp'; choose one of: humaneval, math"):
        run_suite("mbpp", None, tiny[1])


@pytest.mark.parametrize("name", ["math", "humaneval"])
def test_run_suite_with_the_tiny_model(tiny, box, name):
    from selfplay.models import HFGenerator

    model, tokenizer = tiny
    result = run_suite(name, HFGenerator(model, tokenizer), tokenizer, limit=3, max_new_tokens=12, sandbox=box)
    assert result.n == 3 and len(result.records) == 3 and 0.0 <= result.score <= 1.0
    assert [r.id for r in result.records] == [p.id for p in select(SUITES[name].problems(), 3)]
    low, high = result.ci95
    assert 0.0 <= low <= result.score <= high <= 1.0
    assert all(r.prompt and isinstance(r.response, str) and r.reason for r in result.records)
    json.dumps(result.to_dict())


class Oracle:
    """A generator that answers every problem correctly, to test the path to a pass. It is
    handed the problems in the order run_suite asks them, and checks that order."""

    max_batch_size = None

    def __init__(self, tokenizer, problems):
        self.tokenizer, self.queue = tokenizer, list(problems)

    def generate(self, prompts, params, seed=None):
        out = []
        for ids in prompts:
            p = self.queue.pop(0)
            assert p.text.splitlines()[-1].strip() in self.tokenizer.decode(ids)
            answer = f"\\boxed{{{p.answer}}}" if p.answer else fenced(p.text + p.solution)
            out.append(Generation(list(ids), [], [], answer, False))
        return out


@pytest.mark.parametrize("name", ["math", "humaneval"])
def test_run_suite_credits_right_answers(tiny, box, name):
    tokenizer = tiny[1]
    oracle = Oracle(tokenizer, select(SUITES[name].problems(), 5))
    result = run_suite(name, oracle, tokenizer, limit=5, sandbox=box, batch_size=2)
    assert (result.passed, result.n, result.score) == (5, 5, 1.0) and not oracle.queue


# ---------------------------------------------------------------- selfplay eval --suite


def test_cli_suite_json(capsys):
    assert main(["eval", "--suite", "math", "--agent", "llm:tiny", "--limit", "2", "--json",
                 "--agent-option", "max_new_tokens=8"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    s = json.loads(out)
    assert (s["suite"], s["metric"], s["n"], s["score"]) == ("math", "accuracy", 2, 0.0)
    assert len(s["records"]) == 2 and s["temperature"] == 0.0 and s["max_new_tokens"] == 8


def test_cli_suite_table(capsys):
    assert main(["eval", "--suite", "humaneval", "--agent", "llm:tiny", "--limit", "1",
                 "--agent-option", "max_new_tokens=4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("humaneval: llm:tiny, 1 problems") and "pass@1: 0.000 [0.000, 0.793]" in out


@pytest.mark.parametrize("args, message", [
    (["--suite", "mbpp", "--agent", "llm:tiny"], "unknown suite 'mbpp'; choose one of: humaneval, math"),
    (["--suite", "math", "--game", "tictactoe", "--agent", "llm:tiny"], "exactly one of --game"),
    (["--agent", "random"], "exactly one of --game"),
    (["--suite", "math", "--agent", "random"], "--suite needs a model agent"),
    (["--suite", "math", "--agent", "llm:tiny", "--agent-option", "top_p=0.5"], "not used by suites"),
])
def test_cli_suite_errors_are_one_line(capsys, args, message):
    assert main(["eval", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert message in captured.err and "Traceback" not in captured.err


def test_training_scores_the_suites_at_every_evaluation(tmp_path):
    from selfplay.config import ConfigError, load_config
    from selfplay.metrics import read_metrics
    from selfplay.trainer import Trainer

    cfg = load_config("selfplay/configs/rlvr_tiny.yaml", [
        "steps=2", "eval.every=2", "eval.suites={math: 3, humaneval: 2}", "eval.suite_max_new_tokens=4",
        "recipe.prompts_per_step=4", "recipe.answers_per_prompt=2", "recipe.eval_size=4",
        f"output_dir={tmp_path}", "time_limit_minutes=null"])
    Trainer(cfg, tmp_path).train()
    last = read_metrics(tmp_path)[-1]
    assert last["eval/math/accuracy"] == 0.0 and last["eval/humaneval/pass@1"] == 0.0  # a random tiny model
    rows = [json.loads(line) for line in (tmp_path / "transcripts.jsonl").read_text().splitlines()]
    assert {r.get("suite") for r in rows} >= {"math", "humaneval"}
    with pytest.raises(ConfigError, match="unknown suite 'mbpp'; choose from: humaneval, math"):
        load_config(None, ["eval.suites={mbpp: 10}"])
