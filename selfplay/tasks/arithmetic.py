"""Integer arithmetic: `37+5`, `(3+4)*2-9`, answered with the exact integer.

Difficulty is set by the options: `digits` per operand, `terms` operands per problem (or
from `min_terms` to `terms`, each count drawn equally often: a family in which LSP's Challenger
chooses how many operands to ask), the `operators` in use (any of `+ - *`; no division, so
every answer is an exact integer) and the range of the answer (`allow_negative`, `max_answer`).

A query is read with the small grammar below, never with Python's `eval`: a query may come
from a model (LSP's Challenger), and the family must recognise its own problems and
compute their answers itself.

    query   := expr ['=']                      spaces and tabs allowed between tokens
    expr    := term (('+' | '-') term)*        left to right
    term    := factor ('*' factor)*            '*' binds tighter than '+' and '-'
    factor  := number | '(' expr ')'           at most MAX_DEPTH parentheses deep
    number  := '0' | [1-9][0-9]*               ASCII digits, no leading zeros, at most
                                               MAX_LITERAL_DIGITS digits, no sign

The limits bound the work on any text: a query has at most MAX_QUERY_CHARS characters, so
its answer has at most about that many digits. Answers are graded as strings of ASCII
digits (Python's `int` would accept '٣', '1_000' and ' 7 ', and refuses over 4300 digits).
"""

from __future__ import annotations

import random
import re

from selfplay.games.extract import last_boxed
from selfplay.tasks import Check, Grade, Problem, Task

OPERATORS = "+-*"
MAX_QUERY_CHARS = 200
MAX_DEPTH = 16
MAX_LITERAL_DIGITS = 9
DIGITS = "0123456789"  # not str.isdigit(), which is True for '³' and '٣'
SPACES = " \t"

CHAT_TEMPLATE = (
    "Calculate: {expression}\n"
    "Please reason step by step, and put your final answer within \\boxed{{}}."
)


# ---- reading a query: tokens, then recursive descent ---------------------------------------

class _Invalid(Exception):
    """A query that is not a problem of the family (caught in `check_query`)."""


def _tokens(text: str) -> list[str]:
    tokens, i = [], 0
    while i < len(text):
        char = text[i]
        if char in SPACES:
            i += 1
        elif char in DIGITS:
            start = i
            while i < len(text) and text[i] in DIGITS:
                i += 1
            number = text[start:i]
            if len(number) > 1 and number[0] == "0":
                raise _Invalid(f"number {number} has a leading zero")
            if len(number) > MAX_LITERAL_DIGITS:
                raise _Invalid(f"number {_short(number)} has more than {MAX_LITERAL_DIGITS} digits")
            tokens.append(number)
        elif char in OPERATORS + "()":
            tokens.append(char)
            i += 1
        else:
            raise _Invalid(f"unexpected character {char!r} at position {i}")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str], operators: str):
        self.tokens, self.operators, self.position = tokens, operators, 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise _Invalid("the expression ends too early")
        self.position += 1
        return token

    def operator(self) -> str:
        op = self.take()
        if op not in self.operators:
            raise _Invalid(f"operator {op!r} is not in this family (allowed: {' '.join(self.operators)})")
        return op

    def expr(self, depth: int) -> int:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.operator()
            right = self.term(depth)
            value = value + right if op == "+" else value - right
        return value

    def term(self, depth: int) -> int:
        value = self.factor(depth)
        while self.peek() == "*":
            self.operator()
            value *= self.factor(depth)
        return value

    def factor(self, depth: int) -> int:
        token = self.take()
        if token[0] in DIGITS:
            return int(token)  # safe: ASCII digits only, at most MAX_LITERAL_DIGITS of them
        if token == "(":
            if depth >= MAX_DEPTH:
                raise _Invalid(f"parentheses nested more than {MAX_DEPTH} deep")
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise _Invalid("a '(' is not closed")
            return value
        raise _Invalid(f"expected a number or '(' but found {token!r}")


def evaluate(text: str, operators: str = OPERATORS) -> tuple[str, int]:
    """(canonical text, exact value) of a query; raises _Invalid when it is not one."""
    if len(text) > MAX_QUERY_CHARS:
        raise _Invalid(f"the query has {len(text)} characters; at most {MAX_QUERY_CHARS}")
    body = text.rstrip(SPACES)  # leading spaces are skipped by _tokens, keeping positions true
    if body.endswith("="):  # the compact prompt's form, `3+4=`
        body = body[:-1]
    tokens = _tokens(body)
    if not tokens:
        raise _Invalid("the query is empty")
    parser = _Parser(tokens, operators)
    value = parser.expr(depth=0)
    if parser.peek() is not None:
        raise _Invalid(f"unexpected {parser.peek()!r} after a complete expression")
    return "".join(tokens), value


# ---- grading an answer ----------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?[0-9]+")  # [0-9], not \d: \d also matches other scripts' digits


def canonical_integer(text: str) -> str | None:
    """`text` as a canonical integer string ('007' -> '7', '-0' -> '0', '+5' -> '5'), or None
    when it is anything but an optionally signed run of ASCII digits."""
    if not _INTEGER.fullmatch(text):
        return None
    digits = text.lstrip("+-").lstrip("0") or "0"
    return "-" + digits if text[0] == "-" and digits != "0" else digits


def grade_answer(response: str, answer: str, style: str) -> Grade:
    """Score `response` against the canonical integer `answer`: 1.0 iff it states exactly that
    integer. compact: the whole response, stripped of whitespace. chat: the content of the
    last closed `\\boxed{...}`, stripped of whitespace and `$`. Never raises.

    >>> grade_answer(" 42", "42", "compact")
    Grade(score=1.0, reason='correct', well_formed=True)
    >>> grade_answer("so \\\\boxed{41}", "42", "chat").reason
    'wrong answer 41 (expected 42)'
    """
    if style == "chat":
        boxed = last_boxed(response)
        if boxed is None:
            return Grade(0.0, "no \\boxed{} answer (was the response cut off?)", False)
        candidate = boxed.strip().strip("$").strip()
    else:
        candidate = response.strip()
    if not candidate:
        return Grade(0.0, "empty answer", False)
    given = canonical_integer(candidate)
    if given is None:
        return Grade(0.0, f"not an integer: {_short(candidate)!r}", False)
    if given != answer:
        return Grade(0.0, f"wrong answer {_short(given)} (expected {answer})", True)
    return Grade(1.0, "correct", True)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# ---- the family -----------------------------------------------------------------------------

class ArithmeticTask(Task):
    name = "arithmetic"

    def __init__(self, style: str = "compact", digits: int = 1, terms: int = 2, operators: str = "+",
                 allow_negative: bool = False, max_answer: int | None = None, min_terms: int | None = None):
        super().__init__(style)
        if not 1 <= digits <= MAX_LITERAL_DIGITS:
            raise ValueError(f"digits must be in 1..{MAX_LITERAL_DIGITS}, got {digits}")
        if terms < 2:
            raise ValueError(f"terms must be >= 2, got {terms}")
        if not operators or any(op not in OPERATORS for op in operators):
            raise ValueError(f"operators must be some of {OPERATORS!r}, got {operators!r}")
        if len(f"{10 ** digits - 1}" * terms) + terms > MAX_QUERY_CHARS:
            raise ValueError(f"{terms} terms of {digits} digits exceed a query's {MAX_QUERY_CHARS} characters")
        if min_terms is not None and not 2 <= min_terms <= terms:
            raise ValueError(f"min_terms must be in 2..terms ({terms}), got {min_terms}")
        self.digits, self.terms = digits, terms
        self.min_terms = terms if min_terms is None else min_terms
        self.operators = "".join(op for op in OPERATORS if op in operators)  # canonical order, no repeats
        if max_answer is not None and max_answer < 0 and not allow_negative:
            raise ValueError(f"max_answer {max_answer} < 0 leaves no problems without allow_negative")
        self.allow_negative = allow_negative  # False: answers are >= 0
        self.max_answer = max_answer  # the largest answer (None: no limit), e.g. 9 for one-digit answers

    def draw(self, rng: random.Random, max_tries: int = 100_000) -> Problem:
        for _ in range(max_tries):  # redraw a problem whose answer is out of range
            # one count draws nothing for it: min_terms = terms draws what terms alone does
            count = rng.randint(self.min_terms, self.terms) if self.min_terms < self.terms else self.terms
            numbers = [str(rng.randrange(10 ** self.digits)) for _ in range(count)]
            text = numbers[0] + "".join(rng.choice(self.operators) + n for n in numbers[1:])
            check = self.check_query(text)
            if check.problem is not None:
                return check.problem
        raise RuntimeError(f"no problem in range in {max_tries} draws: are max_answer and allow_negative "
                           f"too tight for {self.terms} terms of {self.digits} digits?")

    def check_query(self, text: str) -> Check:
        if not isinstance(text, str):
            return Check(None, f"a query is text, not {type(text).__name__}")
        try:
            canonical, value = evaluate(text, self.operators)
        except _Invalid as invalid:
            return Check(None, str(invalid))
        if value < 0 and not self.allow_negative:
            return Check(None, "the answer is negative; this family's answers are >= 0")
        if self.max_answer is not None and value > self.max_answer:
            return Check(None, f"the answer is above this family's largest, {self.max_answer}")
        return Check(Problem(canonical, str(value)), "ok")

    def prompt(self, problem: Problem) -> str:
        if self.style == "compact":
            return problem.text + "="
        return CHAT_TEMPLATE.format(expression=problem.text)

    def grade(self, problem: Problem, response: str) -> Grade:
        if not isinstance(response, str):
            return Grade(0.0, f"a response is text, not {type(response).__name__}", False)
        return grade_answer(response, problem.answer, self.style)
