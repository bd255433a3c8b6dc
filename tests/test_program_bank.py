"""The held-out program bank: reproducible, well-formed, and every program valid in the sandbox.

The programs are run only in `selfplay.sandbox` (real worker processes, two runs each under
different hash seeds), never in this process.
"""

import ast
import os
import subprocess
import sys

import pytest

from selfplay.evals.program_bank import (
    N_INPUTS,
    TEMPLATES,
    chat_bank,
    chat_programs,
    compact_expressions,
    compact_programs,
    compact_source,
    compact_value,
)
from selfplay.sandbox import Sandbox, parse_value, static_check
from selfplay.sandbox.validity import check_tasks

N_CHECKED = 60
LITERAL_TYPES = (str, int, bool, type(None), list, tuple, dict)
FORBIDDEN_NAMES = {"eval", "exec", "open", "getattr", "__import__", "print", "input", "compile",
                   "globals", "locals", "vars", "setattr", "hash", "id"}

# sha256 of the first 100 chat and compact items for seed 0. A change here changes every
# score measured on the bank: update it only on purpose (and say so where results are kept).
PINNED_DIGEST = "a3a246056a02edcb9044c664ca2a767af84b061c97d4e16b4564c9c45f288a74"


DIGEST_CODE = """
import hashlib
from selfplay.evals.program_bank import chat_programs, compact_programs
print(hashlib.sha256(repr((chat_programs(100), compact_programs(100))).encode()).hexdigest())
"""


def _digest(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", DIGEST_CODE], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return out.stdout.strip()


# ---------------------------------------------------------------- reproducibility


def test_banks_are_pure_functions_of_size_and_seed_with_nested_prefixes():
    assert chat_programs(40) == chat_programs(40)
    assert chat_programs(40)[:10] == chat_programs(10)
    assert chat_programs(40, seed=3)[:7] == chat_programs(7, seed=3)
    assert chat_programs(10, seed=1) != chat_programs(10)
    assert compact_programs(40)[:10] == compact_programs(10)
    assert compact_programs(10, seed=1) != compact_programs(10)
    assert chat_programs(0) == [] and compact_programs(0) == []


def test_bank_is_the_same_under_every_hash_seed_and_pinned():
    # Fresh interpreters with different hash seeds (so set/str-hash order differs) must
    # write the same bank, and it must be the bank scores were measured on.
    assert {_digest("1"), _digest("12345")} == {PINNED_DIGEST}


# ---------------------------------------------------------------- shape of the chat bank


def _walk_literal(value):
    yield value
    if isinstance(value, (list, tuple)):
        for x in value:
            yield from _walk_literal(x)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_literal(k)
            yield from _walk_literal(v)


def test_chat_programs_are_well_formed():
    bank = chat_bank(200)
    sources = [p.source for p in bank]
    assert len(set(sources)) == len(sources) == 200
    for p in bank:
        assert static_check(p.source) is None, p.source
        assert 3 <= len(p.source.splitlines()) <= 12, p.source
        tree = ast.parse(p.source)
        assert "f" in [n.name for n in tree.body if isinstance(n, ast.FunctionDef)], p.source
        for node in ast.walk(tree):
            assert not isinstance(node, (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal)), p.source
            if isinstance(node, ast.Name):
                assert node.id not in FORBIDDEN_NAMES, p.source
            if isinstance(node, ast.Attribute):
                assert not node.attr.startswith("__"), p.source
        assert len(p.inputs) == len(set(p.inputs)) == N_INPUTS, p.inputs
        for args in p.inputs:
            assert args.isascii()
            values = ast.literal_eval(f"({args},)")  # argument text is a plain literal list
            assert all(isinstance(v, LITERAL_TYPES) for value in values for v in _walk_literal(value)), args


def test_at_least_25_templates_and_a_small_bank_spans_them_all():
    assert len(TEMPLATES) >= 25
    assert {p.template for p in chat_bank(200)} == set(TEMPLATES)
    assert {p.template for p in chat_bank(len(TEMPLATES))} == set(TEMPLATES)  # they take turns


# ---------------------------------------------------------------- shape of the compact bank


def _compact_value(node, a):  # the test's own reading of the grammar, independent of the module's
    if isinstance(node, ast.Name):
        return a
    if isinstance(node, ast.Constant):
        return node.value
    left, right = _compact_value(node.left, a), _compact_value(node.right, a)
    return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right,
            ast.Mod: left % right if right else None}[type(node.op)]


def test_compact_programs_are_well_formed():
    bank = compact_programs(300)
    assert len({expr for expr, _ in bank}) == 300
    for expr, inputs in bank:
        assert set(expr) <= set("a0123456789+-*%") and "a" in expr, expr
        tree = ast.parse(expr, mode="eval").body
        ops = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp)]
        assert 1 <= len(ops) <= 2, expr
        for n in ast.walk(tree):
            assert isinstance(n, (ast.BinOp, ast.Name, ast.Constant, ast.operator, ast.Load)), expr
            if isinstance(n, ast.Constant):
                assert 1 <= n.value <= 9, expr
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod):
                assert isinstance(n.right, ast.Constant), expr
        assert sorted(inputs, key=int) == [str(a) for a in range(10)]
        assert len({_compact_value(tree, a) for a in range(10)}) >= 3, expr
        assert static_check(compact_source(expr)) is None


def test_compact_value_reads_the_grammar_and_nothing_else():
    assert compact_value("a*3+1", 5) == 16 and compact_value("a%4-a", 7) == -4
    for expr, inputs in compact_programs(50):
        tree = ast.parse(expr, mode="eval").body
        assert [compact_value(expr, int(a)) for a in inputs] == [_compact_value(tree, int(a)) for a in inputs]
    for outside in ("a**2", "a//2", "__import__('os')", "a.real", "'7'"):
        with pytest.raises(ValueError, match="not a compact expression"):
            compact_value(outside, 3)
    every = compact_expressions()
    assert list(every) == sorted(set(every)) and {e for e, _ in compact_programs(300)} <= set(every)


def test_compact_bank_has_a_limit():
    with pytest.raises(ValueError, match="compact expressions exist"):
        compact_programs(100_000)


# ---------------------------------------------------------------- in the real sandbox


@pytest.fixture(scope="module")
def box():
    with Sandbox(workers=2) as box:
        yield box


def _run_all(box, programs):
    """Each program's outputs on its inputs, after AZR's checks (valid, two runs agree)."""
    tasks = [(source, args) for source, inputs in programs for args in inputs]
    checks = check_tasks(box, tasks)
    bad = [(t, c.reason) for t, c in zip(tasks, checks) if not c.valid]
    assert not bad, bad[:3]
    values = [c.value for c in checks]
    return [values[i * N_INPUTS:(i + 1) * N_INPUTS] for i in range(len(programs))]


def test_chat_programs_run_valid_and_deterministic_with_varied_small_outputs(box):
    programs = chat_programs(N_CHECKED)
    for (source, inputs), values in zip(programs, _run_all(box, programs)):
        assert len(set(values)) >= 3, (source, inputs, values)
        assert all(len(v) < 200 for v in values), (source, values)
        for v in values:  # no floats: an exact answer never hinges on rounding
            assert not any(isinstance(x, float) for x in _walk_literal(parse_value(v))), (source, v)


def test_compact_programs_run_valid_and_agree_with_the_grammar(box):
    programs = compact_programs(N_CHECKED)
    wrapped = [(compact_source(expr), inputs) for expr, inputs in programs]
    for (expr, inputs), values in zip(programs, _run_all(box, wrapped)):
        tree = ast.parse(expr, mode="eval").body
        assert values == [str(_compact_value(tree, int(a))) for a in inputs], expr
        assert len(set(values)) >= 3 and all(len(v) < 200 for v in values)
