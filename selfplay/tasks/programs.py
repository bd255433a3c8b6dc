"""AZR's program tasks (ALGORITHMS.md section 3): prompts, parsing, checking and grading.

A task is a program `f`, inputs x and their outputs y = f(x). Three types ask three questions:

    deduction  given f and x, predict y
    abduction  given f and y, write an x with f(x) == y
    induction  given half of the (x, y) pairs and a message, write f; scored on the other half

Two styles, like the games:
- `chat`: the paper's format for real models. The answer is `<think>...</think> <answer>...
  </answer>`, with code in a python fence, inputs in `input` fences, outputs in an `output`
  fence and the induction message in a `message` fence.
- `compact`: for tiny character-level models. A program is one Python expression over `a`
  (`a*3+1`), an input one integer; a proposal is `a*3+1|5`. Responses are sampled from a
  small alphabet per question (CompactStyle.alphabet). Compact programs are real Python (`def f(a): return a*3+1`) and
  go through the same sandbox and the same checks.

Safety: nothing the model writes runs in this process. Programs and inputs go to the sandbox
as text and values come back as canonical literal text (selfplay.sandbox.values). A model's
predicted value is read with `ast.literal_eval` only and compared with the gold value as
canonical text: by type and value, so `True` is not `1` and `1.0` is not `1`, and an object
whose `__eq__` always says True never comes back from the sandbox at all. An abduction answer
is an argument list parsed as literals, never spliced into source text.

Sections: tasks, styles (chat, compact), checking proposals, grading answers.
"""

from __future__ import annotations

import ast
import difflib
import re
import time
from dataclasses import dataclass, field

from selfplay.sandbox import Sandbox, static_check
from selfplay.sandbox.sandbox import Call
from selfplay.sandbox.static import AZR_BANNED_MODULES
from selfplay.sandbox.validity import TaskCheck, check_tasks
from selfplay.sandbox.values import canonical, parse_value

TASK_TYPES = ("deduction", "abduction", "induction")
PROPOSE, SOLVE = "propose", "solve"


# ---- tasks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProgramTask:
    program: str  # what the proposer wrote: chat, the source defining f; compact, the expression
    inputs: tuple[str, ...]  # canonical argument lists, e.g. "'abc', 3"
    outputs: tuple[str, ...]  # canonical text of f(*input), one per input
    message: str = ""  # induction: the proposer's description for the solver

    @property
    def key(self) -> tuple:
        """What makes two tasks the same (buffers deduplicate on it)."""
        return self.program.strip(), self.inputs

    def to_dict(self) -> dict:
        return {"program": self.program, "inputs": list(self.inputs), "outputs": list(self.outputs),
                "message": self.message}

    @classmethod
    def from_dict(cls, d: dict) -> "ProgramTask":
        return cls(d["program"], tuple(d["inputs"]), tuple(d["outputs"]), d.get("message", ""))


@dataclass(frozen=True)
class Proposal:
    """A proposer's response, parsed: a program (or, for induction, the given one) and inputs."""

    program: str
    inputs: tuple[str, ...]  # argument lists as the model wrote them (not yet checked)
    message: str = ""


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str  # why not ("" when valid)
    task: ProgramTask | None = None
    well_formatted: bool = True  # False: the response did not have the style's form at all
    ast_nodes: int = 0  # program size


@dataclass(frozen=True)
class Answer:
    correct: bool
    well_formatted: bool
    reason: str


def canonical_args(text: str) -> str:
    """Canonical text of an argument list (`"[1, 2], 'x'"`); ValueError unless every argument is
    a literal. Parsed with `ast` only: `0) or True or (0` is not an argument list."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("no input")
    if len(text) > 10_000:
        raise ValueError("input is longer than 10000 characters")
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise ValueError(f"input is not an argument list: {type(e).__name__}") from None
    if not isinstance(call, ast.Call) or call.keywords or any(isinstance(a, ast.Starred) for a in call.args) \
            or not isinstance(call.func, ast.Name) or call.func.id != "f":
        raise ValueError("input is not a list of positional literal arguments")
    try:
        return ", ".join(canonical(ast.literal_eval(a)) for a in call.args)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"input is not a literal: {type(e).__name__}") from None


def canonical_value(text: str) -> str:
    """Canonical text of one literal value (a predicted output); ValueError if it is not one."""
    try:
        return canonical(parse_value(text))
    except (TypeError, RecursionError) as e:
        raise ValueError(str(e)) from None


def defines_f(source: str) -> str | None:
    """None if `source` parses and defines a top-level function `f`, else why not. Helpers and
    classes are allowed (the original rejects a second `def` anywhere)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        return f"does not parse: {type(e).__name__}"
    if not any(isinstance(node, ast.FunctionDef) and node.name == "f" for node in tree.body):
        return "no top-level function f"
    return None


def ignores_input(source: str) -> str | None:
    """Why a proposed f is not a task about its input: it takes no argument, or never reads
    one (`def f(a): return 7`; the paper asks for at least one argument). Such a program
    makes abduction trivial and deduction a copy of the program."""
    f = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "f")
    params = {a.arg for a in f.args.posonlyargs + f.args.args + f.args.kwonlyargs}
    params |= {a.arg for a in (f.args.vararg, f.args.kwarg) if a is not None}
    if not params:
        return "f takes no argument"
    if not any(isinstance(n, ast.Name) and n.id in params for stmt in f.body for n in ast.walk(stmt)):
        return "f never uses its argument"
    return None


def prints(source: str) -> str | None:
    """Why a program that prints is refused: its result must be what it returns."""
    tree = ast.parse(source)
    if any(isinstance(node, ast.Name) and node.id == "print" for node in ast.walk(tree)):
        return "prints instead of returning"
    return None


def program_distance(program: str, other: str) -> float:
    """How far apart two programs' texts are, from 0 (the same, up to surrounding space) to 1
    (no common characters): 1 - difflib's similarity ratio."""
    return 1.0 - difflib.SequenceMatcher(None, program.strip(), other.strip(), autojunk=False).ratio()


def ast_size(source: str) -> int:
    try:
        return sum(1 for _ in ast.walk(ast.parse(source)))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return 0


# ---- styles ---------------------------------------------------------------------------------
class Style:
    name: str

    def __init__(self, worked_example: bool = False, templated: bool = False):
        self.worked_example = worked_example  # `prompt: example`: a worked exchange before each question
        self.templated = templated  # compact: deduction and abduction proposals fill a template's slots

    def alphabet(self, kind: str, role: str) -> str | None:
        """The characters a response to (kind, role) is sampled from; None: any token."""
        return None

    def source(self, program: str) -> str:
        """The Python source that defines f."""
        return program

    def propose_prompt(self, kind: str, references: list[ProgramTask], given: ProgramTask | None,
                       template: str = "") -> str:
        """`template`: the program with `{}` slots for the proposer to fill (compact style)."""
        raise NotImplementedError

    def parse_proposal(self, kind: str, text: str, given: ProgramTask | None, template: str = "") -> Proposal | str:
        """The proposal, or why the response is badly formatted."""
        raise NotImplementedError

    def solve_prompt(self, kind: str, task: ProgramTask, shown: int) -> str:
        raise NotImplementedError

    def parse_answer(self, kind: str, text: str) -> str | None:
        """The answer's content (a value, an argument list or a program), None if badly formatted."""
        raise NotImplementedError

    def right_answer(self, kind: str, task: ProgramTask) -> str | None:
        """The task's own answer as a solver writes it (its output, its input, its program), or
        None where the style's answers hold more than that (chat's reasoning)."""
        return None

    def seed_task(self) -> tuple[str, tuple[str, ...]]:
        """The identity program and its input: what every buffer starts from."""
        raise NotImplementedError

    def seed_inputs(self, n: int) -> tuple[str, ...]:
        """n distinct inputs for the identity program (the induction buffer's seed)."""
        raise NotImplementedError

    def example(self, kind: str, role: str, shown: int) -> tuple[str, str] | None:
        """A worked exchange for (kind, role), a question and its ideal response, to show before
        the real question (`prompt: example`); None: none asked for, or the style has none."""
        return None


ANSWER = re.compile(r"^\s*(?:<think>)?(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.DOTALL)
FENCE = re.compile(r"```(python|input|output|message)[ \t]*\n(.*?)```", re.DOTALL)

CHAT_FORMAT = (
    "Think step by step inside <think> </think>, then give your answer inside <answer> </answer>:\n"
    "<think> your reasoning </think> <answer> your answer </answer>"
)
# `prompt: example` states the format once and lets the worked exchange show it: small models
# copy the placeholder line above (` your reasoning </think> <answer> your answer </answer>`).
EXAMPLE_FORMAT = "Think briefly inside <think> </think>, then answer inside <answer> </answer>, as in the example."
CHAT_PROGRAM_RULES = (
    "The program must define a function named `f` that takes at least one argument (helper "
    "functions and classes are allowed). It must be deterministic and self-contained: no "
    "randomness, clocks, files, network, printing or imports of such modules; it must return "
    "a value made of built-in types and finish within a few seconds. Make it need several "
    "steps of reasoning to trace."
)


class ChatStyle(Style):
    """The paper's plain-text format for real models, in the project's own words."""

    name = "chat"

    @property
    def answer_format(self) -> str:
        return EXAMPLE_FORMAT if self.worked_example else CHAT_FORMAT

    def _fence(self, kind: str, body: str) -> str:
        return f"```{kind}\n{body}\n```"

    def _reference(self, task: ProgramTask) -> str:
        return "\n".join([self._fence("python", task.program.strip()), self._fence("input", task.inputs[0]),
                          self._fence("output", task.outputs[0])])

    def propose_prompt(self, kind, references, given, template=""):
        if kind == "induction":
            return (f"Here is a Python program:\n{self._fence('python', given.program.strip())}\n"
                    "Write 10 different inputs for it, each in its own ```input``` fence as the arguments "
                    "of a call to f (e.g. 'abc', 3), and a message in a ```message``` fence that would "
                    "help someone who sees half of the inputs and outputs to write the program.\n"
                    + self.answer_format)
        question = ("predict its output from the program and the input" if kind == "deduction"
                    else "find an input that gives the output, from the program and the output")
        shown = "\n\n".join(self._reference(t) for t in references)
        return (f"Write a new Python program and one input for it, to test whether someone can "
                f"{question}. Make it different from these examples:\n\n{shown}\n\n{CHAT_PROGRAM_RULES}\n"
                "Give the program in a ```python``` fence and the input, the arguments of a call to f, "
                "in an ```input``` fence.\n" + self.answer_format)

    def parse_proposal(self, kind, text, given, template=""):
        content = self._answer(text)
        if content is None:
            return "badly formatted: expected <think>...</think> <answer>...</answer>"
        fences = FENCE.findall(content)
        inputs = tuple(body.strip() for name, body in fences if name == "input")
        if kind == "induction":
            message = next((body.strip() for name, body in fences if name == "message"), "")
            if not inputs:
                return "badly formatted: no ```input``` fence"
            return Proposal(given.program, inputs, message)
        programs = [body for name, body in fences if name == "python"]
        if not programs or not inputs:
            return "badly formatted: expected a ```python``` and an ```input``` fence"
        return Proposal(programs[0], inputs[:1])

    def solve_prompt(self, kind, task, shown):
        program = self._fence("python", task.program.strip())
        if kind == "deduction":
            return (f"Given this program and input, predict the output.\n{program}\n"
                    f"{self._fence('input', task.inputs[0])}\nGive the output as a Python literal in an "
                    "```output``` fence.\n" + self.answer_format)
        if kind == "abduction":
            return (f"Given this program and output, find an input that produces the output.\n{program}\n"
                    f"{self._fence('output', task.outputs[0])}\nGive the input, the arguments of a call "
                    "to f as Python literals, in an ```input``` fence.\n" + self.answer_format)
        pairs = "\n".join(f"{self._fence('input', x)}\n{self._fence('output', y)}"
                          for x, y in zip(task.inputs[:shown], task.outputs[:shown]))
        return (f"Write a Python function f that maps each input to its output.\nMessage: {task.message}\n"
                f"{pairs}\nGive the program in a ```python``` fence.\n" + self.answer_format)

    def parse_answer(self, kind, text):
        content = self._answer(text)
        if content is None:
            return None
        want = {"deduction": "output", "abduction": "input", "induction": "python"}[kind]
        bodies = [body for name, body in FENCE.findall(content) if name == want]
        return bodies[0].strip() if bodies else None

    def seed_task(self):
        return "def f(a):\n    return a", ("'Hello world'",)

    def seed_inputs(self, n):
        words = ["Hello world", "abc", "", "a b c", "racecar", "Python", "12345", "x", "hello", "WORLD"]
        return tuple(repr(w) for w in words + [f"word{i}" for i in range(n)])[:n]

    # The worked example: its outputs written out here (nothing is run), one per input.
    EXAMPLE = ProgramTask(
        "def f(s):\n    return s[::-1] + str(len(s))",
        ("'abc'", "'hi'", "'code'", "''", "'level'", "'x'", "'loop'", "'data'", "'sun'", "'ab'"),
        ("'cba3'", "'ih2'", "'edoc4'", "'0'", "'level5'", "'x1'", "'pool4'", "'atad4'", "'nus3'", "'ba2'"),
        "The input reversed, followed by its length.")

    def example(self, kind, role, shown):
        if not self.worked_example:
            return None
        task = self.EXAMPLE
        program = self._fence("python", task.program)
        if role == PROPOSE and kind == "induction":
            fences = "\n".join(self._fence("input", x) for x in task.inputs)
            return (self.propose_prompt(kind, [], task),
                    "<think> Strings of different lengths, one empty, show both parts of the output. </think> "
                    f"<answer>\n{fences}\n{self._fence('message', task.message)}\n</answer>")
        if role == PROPOSE:
            seed_program, seed_inputs = self.seed_task()
            identity = ProgramTask(seed_program, seed_inputs, seed_inputs)  # f(x) = x
            return (self.propose_prompt(kind, [identity], None),
                    "<think> Reversing a string and appending its length takes two steps to trace. </think> "
                    f"<answer>\n{program}\n{self._fence('input', task.inputs[0])}\n</answer>")
        if kind == "deduction":
            answer = self._fence("output", task.outputs[0])
            reasoning = "'abc' reversed is 'cba' and its length is 3."
        elif kind == "abduction":
            answer = self._fence("input", task.inputs[0])
            reasoning = "'cba3' is 'cba' and the length 3; 'cba' reversed is 'abc'."
        else:
            answer, reasoning = program, "Each output is the input reversed, then its length."
        return self.solve_prompt(kind, task, shown), f"<think> {reasoning} </think> <answer>\n{answer}\n</answer>"

    @staticmethod
    def _answer(text: str) -> str | None:
        """The answer's content, if the response is `<think>...</think> <answer>...</answer>`
        with each tag once (the opening `<think>` may be the prompt's last words)."""
        text = text or ""
        if text.count("<think>") > 1 or any(text.count(tag) != 1 for tag in ("</think>", "<answer>", "</answer>")):
            return None
        match = ANSWER.match(text)
        return match.group(2) if match else None


class CompactStyle(Style):
    """Tiny models on a CPU: programs are one expression over `a` (written after the prompt's
    `a`), inputs one digit (0-9), as in the held-out bank. `templated`: the recipe draws a
    template for each deduction and abduction proposal (`a*{}+{}`, `{}-a`) and the proposer
    writes only digits, one per slot and then the input.

    Prompts (the first letter says the role, the second the task type):
        propose deduction/abduction  `PD:a|1;a+3|2>a` ->  `*3+1|5`      (K references; the program is `a*3+1`)
                          templated  `PD:a|1;a+3|2>a*_+_` -> `315` (the same program and input)
        propose induction            `PI:a*3+1>`      ->  `1527`        (inputs 1, 5, 2 and 7)
        solve deduction              `SD:a*3+1|5=`    ->  `16`
        solve abduction              `SA:a*3+1=16|`   ->  `5`
        solve induction              `SI:1>4;2>7=`    ->  `a*3+1`
    """

    name = "compact"
    EXPRESSION = "a0123456789+-*%"

    def alphabet(self, kind, role):
        """What each answer is written in: an expression and an input (`a*3+1|5`), digits
        (inputs, or a template's constants and input), an output (`-16`), an input (`5`) or an
        expression: the grammar a random model starts from."""
        if role == PROPOSE:
            return "0123456789" if kind == "induction" or self.templated else self.EXPRESSION + "|"
        return {"deduction": "0123456789-", "abduction": "0123456789", "induction": self.EXPRESSION}[kind]

    def source(self, program):
        return f"def f(a):\n    return {program.strip()}"

    def propose_prompt(self, kind, references, given, template=""):
        if kind == "induction":
            return f"PI:{given.program}>"
        shown = ";".join(f"{t.program}|{t.inputs[0]}" for t in references)
        # the program's first character, `a`, or the template with `_` for each slot
        return f"P{kind[0].upper()}:{shown}>{template.replace('{}', '_') if template else 'a'}"

    def parse_proposal(self, kind, text, given, template=""):
        text = (text or "").strip()
        if kind == "induction":  # one digit an input: `1527` is 1, 5, 2, 7
            if not text.isdigit():
                return "badly formatted: expected digits, one input each"
            return Proposal(given.program, tuple(text))
        # The input is one digit (as in the held-out bank, so outputs stay a few characters).
        if template:
            slots = template.count("{}")
            if len(text) != slots + 1 or not text.isdigit():
                return f"badly formatted: expected {slots + 1} digits (the template's slots, then the input)"
            return Proposal(template.format(*text[:-1]), (text[-1],))
        program, bar, x = text.partition("|")
        if not bar or len(x) != 1 or not x.isdigit():
            return "badly formatted: expected program|digit"
        return Proposal("a" + program, (x,))

    def solve_prompt(self, kind, task, shown):
        if kind == "deduction":
            return f"SD:{task.program}|{task.inputs[0]}="
        if kind == "abduction":
            return f"SA:{task.program}={task.outputs[0]}|"
        pairs = ";".join(f"{x}>{y}" for x, y in zip(task.inputs[:shown], task.outputs[:shown]))
        return f"SI:{pairs}="

    def parse_answer(self, kind, text):
        text = (text or "").strip()
        return text or None

    def right_answer(self, kind, task):
        return {"deduction": task.outputs[0], "abduction": task.inputs[0], "induction": task.program.strip()}[kind]

    def seed_task(self):
        return "a", ("1",)

    def seed_inputs(self, n):
        return tuple(str(i) for i in range(n))


STYLES: dict[str, type[Style]] = {"chat": ChatStyle, "compact": CompactStyle}


def make_style(name: str, worked_example: bool = False, templated: bool = False) -> Style:
    if name not in STYLES:
        raise ValueError(f"unknown style {name!r}; available: {', '.join(STYLES)}")
    return STYLES[name](worked_example, templated)


# ---- checking proposals ---------------------------------------------------------------------
@dataclass
class Checker:
    """Validates proposals and grades answers, running every program in `sandbox` only."""

    sandbox: Sandbox
    style: Style
    timeout_s: float = 5.0
    banned_modules: tuple[str, ...] = AZR_BANNED_MODULES
    induction_inputs: int = 10  # inputs an induction proposal must give (distinct, all valid)
    held_out: frozenset = frozenset()  # programs no proposal may use (the evaluation's)
    sandbox_seconds: float = field(default=0.0)  # wall time spent waiting on the sandbox
    programs_run: int = field(default=0)  # program runs sent to the sandbox (each a fresh process)

    def check_proposals(self, kind: str, texts: list[str], given: list[ProgramTask | None],
                        templates: list[str] | None = None) -> list[Verdict]:
        """One Verdict per response: valid with its task, or invalid with the reason. `templates`:
        each proposal's program template, if the prompt gave one (compact style)."""
        verdicts: list[Verdict | None] = [None] * len(texts)
        runs: list[tuple[int, Proposal, tuple[str, ...]]] = []  # (response, proposal, canonical inputs)
        for i, (text, program, template) in enumerate(zip(texts, given, templates or [""] * len(texts))):
            parsed = self.style.parse_proposal(kind, text, program, template)
            if isinstance(parsed, str):
                verdicts[i] = Verdict(False, parsed, well_formatted=False)
                continue
            reason, inputs = self._static(kind, parsed)
            if reason:
                verdicts[i] = Verdict(False, reason)
            else:
                runs.append((i, parsed, inputs))
        checks = self._run([(self.style.source(p.program), inputs) for _, p, inputs in runs])
        for (i, parsed, inputs), mine in zip(runs, checks):
            failed = next((c for c in mine if not c.valid), None)
            if failed is not None:
                verdicts[i] = Verdict(False, failed.reason)
            else:
                task = ProgramTask(parsed.program, inputs, tuple(c.value for c in mine), parsed.message)
                verdicts[i] = Verdict(True, "", task, ast_nodes=ast_size(self.style.source(parsed.program)))
        return verdicts

    def _run(self, programs: list[tuple[str, tuple[str, ...]]]) -> list[list[TaskCheck]]:
        """Run every (source, inputs) pair twice, in two fresh processes with different hash
        seeds: one TaskCheck per input, grouped by program. A (source, input) that repeats runs
        once."""
        calls = [(source, x) for source, inputs in programs for x in inputs]
        unique = list(dict.fromkeys(calls))
        start = time.monotonic()
        done = dict(zip(unique, check_tasks(self.sandbox, unique, banned_modules=(), timeout_s=self.timeout_s)))
        self.sandbox_seconds += time.monotonic() - start
        self.programs_run += 2 * len(unique)
        return [[done[source, x] for x in inputs] for source, inputs in programs]

    def _static(self, kind: str, proposal: Proposal) -> tuple[str, tuple[str, ...]]:
        """Checks that need no run: (reason or "", canonical inputs)."""
        source = self.style.source(proposal.program)
        if len(proposal.program) > 20_000:
            return "program is longer than 20000 characters", ()
        reason = defines_f(source) or static_check(source, self.banned_modules) or prints(source)
        if not reason and kind != "induction":  # an induction proposer is given its program
            reason = ignores_input(source)
        if reason:
            return reason, ()
        if kind != "induction" and proposal.program.strip() in self.held_out:
            return "a held-out evaluation program", ()
        try:
            inputs = tuple(canonical_args(x) for x in proposal.inputs)
        except ValueError as e:
            return str(e), ()
        if kind == "induction" and (len(inputs) != self.induction_inputs or len(set(inputs)) != len(inputs)):
            return f"expected {self.induction_inputs} distinct inputs, got {len(set(inputs))} of {len(inputs)}", ()
        return "", inputs

    def run_tasks(self, programs: list[tuple[str, tuple[str, ...]]]) -> list[ProgramTask]:
        """Tasks from trusted (program, inputs) pairs (the seed, the held-out bank), run in the
        sandbox and checked like proposals, in one batch."""
        tasks = []
        checks = self._run([(self.style.source(program), inputs) for program, inputs in programs])
        for (program, inputs), mine in zip(programs, checks):
            failed = next((c for c in mine if not c.valid), None)
            if failed is not None:
                raise ValueError(f"program {program!r} is not a valid task: {failed.reason}")
            tasks.append(ProgramTask(program, tuple(canonical_args(x) for x in inputs), tuple(c.value for c in mine)))
        return tasks

    # ---- grading answers ------------------------------------------------------------------------
    def grade(self, kind: str, tasks: list[ProgramTask], texts: list[str], shown: int = 5) -> list[Answer]:
        """Grade solver responses (text i answers tasks[i]). Deduction compares literals and
        runs nothing; abduction runs f on the answer's input; induction runs the answer's f on
        the held-out inputs (from `shown` on) and needs every output right."""
        answers: list[Answer | None] = [None] * len(texts)
        calls: list[Call] = []
        owners: list[tuple[int, str]] = []  # (response, gold output) per call
        for i, (task, text) in enumerate(zip(tasks, texts)):
            content = self.style.parse_answer(kind, text)
            if content is None:
                answers[i] = Answer(False, False, "badly formatted")
                continue
            if kind == "deduction":
                try:
                    predicted = canonical_value(content)
                except ValueError as e:
                    answers[i] = Answer(False, False, f"not a literal: {e}")
                    continue
                right = predicted == task.outputs[0]
                answers[i] = Answer(right, True, "" if right else f"predicted {predicted[:60]}")
            elif kind == "abduction":
                try:
                    args = canonical_args(content)
                except ValueError as e:
                    answers[i] = Answer(False, False, str(e))
                    continue
                calls.append(Call(self.style.source(task.program), args, timeout_s=self.timeout_s, banned_modules=()))
                owners.append((i, task.outputs[0]))
            else:
                source = self.style.source(content)
                reason = defines_f(source) or static_check(source, self.banned_modules)
                if reason:
                    answers[i] = Answer(False, not reason.startswith("does not parse"), reason)
                    continue
                if len(task.inputs) <= shown:
                    answers[i] = Answer(False, True, "the task has no held-out pairs")
                    continue
                for x, y in zip(task.inputs[shown:], task.outputs[shown:]):
                    calls.append(Call(source, x, timeout_s=self.timeout_s, banned_modules=()))
                    owners.append((i, y))
        start = time.monotonic()
        unique = list(dict.fromkeys(calls))  # the same answer to the same task runs once
        done = dict(zip(unique, self.sandbox.call_many(unique))) if unique else {}
        self.sandbox_seconds += time.monotonic() - start
        self.programs_run += len(unique)
        results = [done[c] for c in calls]
        wrong: dict[int, str] = {}
        for (i, gold), result in zip(owners, results):
            if i in wrong:
                continue
            if not result.ok:
                wrong[i] = f"{result.status}: {result.error}"
            elif result.value != gold:
                wrong[i] = f"gives {result.value[:60]}"
        for i, _ in owners:
            if answers[i] is None:
                answers[i] = Answer(i not in wrong, True, wrong.get(i, ""))
        return answers


def held_out_tasks(checker: Checker, size: int, inputs: int = 10) -> dict[str, list[ProgramTask]]:
    """The fixed evaluation: `size` tasks per type over programs of the bank
    (selfplay.evals.program_bank), a different third of it for each type, outputs computed
    in the sandbox. Deduction and abduction use a program's first input, induction its
    first `inputs` (at most 10)."""
    from selfplay.evals.program_bank import chat_programs, compact_programs

    bank = (compact_programs if checker.style.name == "compact" else chat_programs)(3 * size)
    return {kind: checker.run_tasks([(program, tuple(xs[: inputs if kind == "induction" else 1]))
                                     for program, xs in bank[k::3]])
            for k, kind in enumerate(TASK_TYPES)}
