"""Verifiable task families: reading queries, grading answers, reproducible problems and a
held-out set that never meets training."""

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfplay.tasks import TASKS, Grade, Problem, make
from selfplay.tasks.arithmetic import MAX_DEPTH, canonical_integer, grade_answer


def arithmetic(**options):
    return make("arithmetic", **options)


# ---------------------------------------------------------------- registry and options

def test_unknown_task_or_option_lists_the_choices():
    assert set(TASKS) == {"arithmetic"}
    with pytest.raises(ValueError, match="unknown task 'arith'; available: arithmetic"):
        make("arith")
    with pytest.raises(ValueError, match="unknown option 'digit'.*digits"):
        make("arithmetic", digit=2)
    with pytest.raises(ValueError, match="unknown style"):
        make("arithmetic", style="verbose")


@pytest.mark.parametrize("options", [dict(digits=0), dict(digits=10), dict(terms=1), dict(operators="/"),
                                     dict(operators=""), dict(max_answer=-1), dict(terms=50, digits=9),
                                     dict(terms=3, min_terms=1), dict(terms=3, min_terms=4)])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        arithmetic(**options)


def test_min_terms_draws_every_count_from_min_terms_to_terms_equally_often():
    family, rng = arithmetic(terms=4, min_terms=2), random.Random(0)
    counts = Counter(family.draw(rng).text.count("+") + 1 for _ in range(3000))
    assert set(counts) == {2, 3, 4} and all(900 < n < 1100 for n in counts.values())  # 1,000 each expected
    # every count is held out by the same hash: the 256 hold every held-out two-operand sum (23 of 100)
    held = family.held_out(256)
    assert {p.text.count("+") + 1 for p in held} == {2, 3, 4} and all(family.is_held_out(p) for p in held)
    two = {f"{a}+{b}" for a in range(10) for b in range(10)}
    held_two = {t for t in two if family.is_held_out(Problem(t, ""))}  # the hash reads the text only
    assert {p.text for p in held if p.text in two} == held_two and len(held_two) == 23
    # min_terms = terms draws no count: the same problems as terms alone
    assert arithmetic(terms=3, min_terms=3).held_out(40) == arithmetic(terms=3).held_out(40)


def test_prompts_in_both_styles():
    problem = Problem("37+5", "42")
    assert arithmetic().prompt(problem) == "37+5="
    chat = arithmetic(style="chat").prompt(problem)
    assert "37+5" in chat and "\\boxed{}" in chat


# ---------------------------------------------------------------- reading a query

@pytest.mark.parametrize("query, text, answer", [
    ("3+4=", "3+4", "7"),
    (" 3 + 4 = ", "3+4", "7"),
    ("3+4", "3+4", "7"),
    ("0+0", "0+0", "0"),
    ("((((1+2))))", "((((1+2))))", "3"),
    ("2+3*4", "2+3*4", "14"),  # '*' binds tighter
    ("(2+3)*4", "(2+3)*4", "20"),
    ("9-3-2", "9-3-2", "4"),  # left to right
    ("9-(3-2)", "9-(3-2)", "8"),
    ("2-5", "2-5", "-3"),  # allow_negative below
    ("999999999*999999999", "999999999*999999999", str(999999999 * 999999999)),
    ("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH, "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH, "1"),
])
def test_queries_of_the_family_are_read_and_solved(query, text, answer):
    check = arithmetic(operators="+-*", allow_negative=True).check_query(query)
    assert check.reason == "ok"
    assert check.problem == Problem(text, answer)


@pytest.mark.parametrize("query, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("=", "empty"),
    ("1e999", "unexpected character 'e'"),
    ("__import__('os')", "unexpected character '_'"),
    ("__import__('os').system('rm -rf /')", "unexpected character"),
    ("07+1", "leading zero"),
    ("1+00", "leading zero"),
    ("1234567890+1", "more than 9 digits"),
    ("３+４", "unexpected character '３'"),  # fullwidth digits: str.isdigit() is True for them
    ("٣+1", "unexpected character"),  # Arabic-Indic three
    ("2³", "unexpected character"),
    ("1_0+1", "unexpected character '_'"),
    ("1.5+1", "unexpected character '.'"),
    ("-1+2", "expected a number"),  # no unary minus
    ("+1", "expected a number"),
    ("1++2", "expected a number"),
    ("1+", "ends too early"),
    ("(1+2", "ends too early"),
    ("1+2)", "unexpected ')'"),
    ("()", "expected a number"),
    ("3 4", "unexpected '4'"),
    ("3+4==", "unexpected character '='"),
    ("3=4", "unexpected character '='"),
    ("1+2\n+3", "unexpected character '\\n'"),
    ("\x00", "unexpected character"),
    ("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1), "nested more than"),
    ("(" * 100_000, "characters; at most"),
    ("1+" * 100_000 + "1", "characters; at most"),
])
def test_anything_else_is_refused_with_a_reason(query, reason):
    check = arithmetic(operators="+-*", allow_negative=True).check_query(query)
    assert check.problem is None
    assert reason in check.reason


def test_the_family_options_bound_what_is_a_problem():
    family = arithmetic(operators="+-", max_answer=9)
    assert family.check_query("3*4").reason == "operator '*' is not in this family (allowed: + -)"
    assert "negative" in family.check_query("3-4").reason
    assert "largest, 9" in family.check_query("5+5").reason
    assert family.check_query("5+4").problem == Problem("5+4", "9")


def test_a_query_that_is_not_text_is_refused():
    assert arithmetic().check_query(None).problem is None
    assert arithmetic().grade(Problem("1+1", "2"), b"2").score == 0.0


# Expressions built as trees, solved here independently of the parser (no eval).
numbers = st.integers(0, 999).map(lambda n: (str(n), n))


def combine(children):
    return st.tuples(children, st.sampled_from("+-*"), children).map(
        lambda t: (f"({t[0][0]}{t[1]}{t[2][0]})",
                   {"+": t[0][1] + t[2][1], "-": t[0][1] - t[2][1], "*": t[0][1] * t[2][1]}[t[1]]))


@settings(max_examples=200, deadline=None)
@given(st.recursive(numbers, combine, max_leaves=12))
def test_the_parser_solves_any_bracketed_expression(expression):
    text, value = expression
    check = arithmetic(operators="+-*", allow_negative=True).check_query(text)
    assert check.problem == Problem(text, str(value))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="0123456789+-*()= \t", max_size=60))
def test_reading_any_text_never_raises(text):
    check = arithmetic(operators="+-*").check_query(text)
    assert (check.problem is None) != (check.reason == "ok")


# ---------------------------------------------------------------- grading an answer

@pytest.mark.parametrize("response, score, reason", [
    ("7", 1.0, "correct"),
    (" 7\n", 1.0, "correct"),
    ("07", 1.0, "correct"),
    ("+7", 1.0, "correct"),
    ("0" * 5000 + "7", 1.0, "correct"),
    ("8", 0.0, "wrong answer 8 (expected 7)"),
    ("-7", 0.0, "wrong answer -7 (expected 7)"),
    ("9" * 100_000, 0.0, "wrong answer 9999"),  # int() would refuse over 4300 digits
    ("", 0.0, "empty answer"),
    (" \n\t", 0.0, "empty answer"),
    ("7 7", 0.0, "not an integer"),
    ("7.0", 0.0, "not an integer"),
    ("1e999", 0.0, "not an integer"),
    ("７", 0.0, "not an integer"),  # fullwidth seven: int() would accept it
    ("٧", 0.0, "not an integer"),  # Arabic-Indic seven
    ("1_0", 0.0, "not an integer"),
    ("__import__('os')", 0.0, "not an integer"),
    ("3+4", 0.0, "not an integer"),  # the answer, not the problem
    ("\\boxed{7}", 0.0, "not an integer"),  # compact answers are bare
    ("x" * 100_000, 0.0, "not an integer"),
])
def test_compact_grading(response, score, reason):
    grade = arithmetic().grade(Problem("3+4", "7"), response)
    assert grade.score == score
    assert grade.reason.startswith(reason)
    assert len(grade.reason) < 200  # huge answers are shortened in the reason


@pytest.mark.parametrize("response, score, reason", [
    ("3 + 4 = 7, so \\boxed{7}", 1.0, "correct"),
    ("\\boxed{ $7$ }", 1.0, "correct"),
    ("\\boxed{8} no wait \\boxed{7}", 1.0, "correct"),  # the last box counts
    ("\\boxed{7} no wait \\boxed{8}", 0.0, "wrong answer 8"),
    ("\\boxed{\\boxed{7}}", 1.0, "correct"),
    ("\\boxed{7} and then \\boxed{8", 1.0, "correct"),  # an unclosed box at the end is skipped
    ("the answer is 7", 0.0, "no \\boxed{} answer"),
    ("\\boxed{7", 0.0, "no \\boxed{} answer"),
    ("\\boxed{}", 0.0, "empty answer"),
    ("\\boxed{seven}", 0.0, "not an integer"),
    ("\\boxed{1e999}", 0.0, "not an integer"),
    ("\\boxed{" * 10_000 + "}" * 10_000, 0.0, "empty answer"),  # the last box is the innermost
])
def test_chat_grading(response, score, reason):
    grade = arithmetic(style="chat").grade(Problem("3+4", "7"), response)
    assert grade.score == score
    assert grade.reason.startswith(reason)


def test_well_formed_tells_a_wrong_number_from_no_number():
    assert grade_answer("8", "7", "compact") == Grade(0.0, "wrong answer 8 (expected 7)", True)
    assert not grade_answer("x", "7", "compact").well_formed
    assert grade_answer("7", "7", "compact").well_formed


@pytest.mark.parametrize("text, canonical", [("0", "0"), ("-0", "0"), ("+0", "0"), ("007", "7"), ("-007", "-7"),
                                             ("12", "12"), ("", None), ("-", None), ("--1", None), ("1-", None)])
def test_canonical_integer(text, canonical):
    assert canonical_integer(text) == canonical


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.sampled_from(["compact", "chat"]))
def test_grading_any_text_never_raises(text, style):
    grade = arithmetic(style=style).grade(Problem("3+4", "7"), text)
    assert grade.score in (0.0, 1.0) and grade.reason


# ---------------------------------------------------------------- problems and the held-out set

def test_sampling_is_reproducible_from_a_seed():
    family = arithmetic(digits=2, terms=3, operators="+-")
    rng_a, rng_b = random.Random(3), random.Random(3)
    assert [family.sample(rng_a) for _ in range(50)] == [family.sample(rng_b) for _ in range(50)]
    assert [family.sample(random.Random(4)) for _ in range(5)] != [family.sample(random.Random(5)) for _ in range(5)]


@pytest.mark.parametrize("options", [dict(), dict(digits=2, terms=3, operators="+-*", allow_negative=True),
                                     dict(operators="+-", max_answer=9)])
def test_generated_problems_follow_the_options_and_read_back(options):
    family = arithmetic(**options)
    rng = random.Random(0)
    for _ in range(300):
        problem = family.sample(rng)
        assert family.check_query(problem.text).problem == problem  # the parser agrees with the generator
        assert family.check_query(family.prompt(problem)).problem == problem  # the compact prompt is a query
        answer = int(problem.answer)
        assert options.get("allow_negative") or answer >= 0
        assert answer <= options.get("max_answer", answer)


@pytest.mark.parametrize("options", [dict(), dict(digits=2), dict(digits=2, terms=3, operators="+-*")])
def test_the_held_out_set_is_fixed_and_disjoint_from_training(options):
    family = arithmetic(**options)
    held_out = family.held_out(200)
    assert held_out == arithmetic(**options).held_out(200)  # the same in every run
    assert held_out[:50] == family.held_out(50)  # a smaller set is a prefix
    assert len({p.text for p in held_out}) == len(held_out)
    assert all(family.is_held_out(p) for p in held_out)
    rng = random.Random(0)
    training = {family.sample(rng).text for _ in range(5000)}
    assert not training & {p.text for p in held_out}


def test_a_small_family_gives_all_its_held_out_problems():
    family = arithmetic()  # 100 one-digit sums
    held_out = family.held_out(100)
    every_sum = {f"{a}+{b}" for a in range(10) for b in range(10)}
    assert {p.text for p in held_out} == {t for t in every_sum if family.is_held_out(Problem(t, ""))}
    assert 10 <= len(held_out) <= 30  # about a fifth


def test_the_split_is_decided_by_the_problem_text_alone():
    problem = Problem("8+7", "15")
    assert arithmetic().is_held_out(problem) == arithmetic(digits=3, terms=4, style="chat").is_held_out(problem)
