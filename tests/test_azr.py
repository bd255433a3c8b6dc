"""AZR: validity rules, rewards and reward hacks of the original, on hand-built programs and
answers run in the real sandbox; buffers; and that no model-written code runs in this process."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap

import pytest

from selfplay.config import load_config
from selfplay.metrics import read_metrics
from selfplay.models.generation import Generation
from selfplay.recipes.azr import AZRRecipe, Config, finished
from selfplay.sandbox import Sandbox
from selfplay.trainer_cli import resolve_preset
from selfplay.tasks.programs import (TASK_TYPES, Answer, Checker, ChatStyle, CompactStyle, ProgramTask, Verdict,
                                     canonical_args, canonical_value)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def box():
    with Sandbox(workers=2, timeout_s=2.0) as sandbox:
        yield sandbox


@pytest.fixture
def chat(box):
    return Checker(box, ChatStyle(), timeout_s=2.0, induction_inputs=4)


@pytest.fixture
def compact(box):
    return Checker(box, CompactStyle(), timeout_s=2.0, induction_inputs=4)


def respond(*fences: tuple[str, str]) -> str:
    """A well-formatted chat response with the given fences."""
    body = "\n".join(f"```{name}\n{text}\n```" for name, text in fences)
    return f"<think>easy</think> <answer>{body}</answer>"


def propose(checker: Checker, program: str, x: str) -> Verdict:
    return checker.check_proposals("deduction", [respond(("python", program), ("input", x))], [None])[0]


PRESET = resolve_preset("azr_tiny")
DOUBLE = "def f(a):\n    return a * 2"


# ---- literals cross as text ---------------------------------------------------------------------
def test_arguments_and_values_are_literals_only():
    assert canonical_args("1, [2, 3], 'x'") == "1, [2, 3], 'x'"
    assert canonical_args("{'b': 1, 'a': 2}") == "{'a': 2, 'b': 1}"
    for bad in ["0) or True or (0", "__import__('os')", "a=1", "*[1]", "", "x"]:
        with pytest.raises(ValueError):
            canonical_args(bad)
    assert canonical_value("(1,)") == "(1,)"
    for bad in ["f(1)", "1 +", "__import__('os').system('true')"]:
        with pytest.raises(ValueError):
            canonical_value(bad)


# ---- proposals: every validity rule ---------------------------------------------------------------
def test_a_valid_proposal_has_its_output_computed_in_the_sandbox(chat):
    verdict = propose(chat, DOUBLE, "[1, 2]")
    assert verdict.valid and verdict.task.outputs == ("[1, 2, 1, 2]",) and verdict.task.inputs == ("[1, 2]",)
    assert verdict.ast_nodes > 5


def test_helpers_and_classes_are_allowed(chat):
    program = "class Box:\n    pass\n\ndef g(x):\n    return x + 1\n\ndef f(a):\n    return g(a) * 3"
    assert propose(chat, program, "4").task.outputs == ("15",)


@pytest.mark.parametrize("program, reason", [
    ("import os\ndef f(a):\n    return os.getpid()", "banned module 'os'"),
    ("def f(a):\n    import os.path\n    return a", "banned module 'os.path'"),
    ("def f(a):\n    return __import__('os').getpid()", "__import__"),
    ("import importlib\ndef f(a):\n    return importlib.import_module('os').getpid()", "importlib"),
    ("from random import random\ndef f(a):\n    return random()", "random"),
    ("def g(a):\n    return a", "no top-level function f"),
    ("def f(a):\n    print(a)", "prints"),
    ("def f(a) return a", "does not parse"),
    ("def f():\n    return 7", "takes no argument"),
    ("def f(a, b):\n    x = 3\n    return x * 2", "never uses its argument"),
])
def test_invalid_programs_say_why(chat, program, reason):
    verdict = propose(chat, program, "1")
    assert not verdict.valid and reason in verdict.reason, verdict.reason
    assert verdict.well_formatted  # the response had the right form: its program is what is wrong


@pytest.mark.parametrize("program", [
    "def f(a):\n    return hash(str(a))",  # differs between hash seeds
    "def f(a):\n    return id(a) % 1000",  # differs between processes
    "def f(a):\n    return list({str(a), 'x', 'y', 'z', 'w'})",  # set order follows the hash seed
])
def test_nondeterministic_programs_are_invalid(chat, program):
    verdict = propose(chat, program, "'abc'")
    assert not verdict.valid and "nondeterministic" in verdict.reason


def test_runaway_huge_and_unprintable_outputs_are_invalid(box):
    checker = Checker(box, ChatStyle(), timeout_s=0.5)
    assert "timeout" in propose(checker, "def f(a):\n    while True:\n        a += 1", "1").reason
    assert not propose(checker, "def f(a):\n    return 1 / a", "0").valid
    assert not propose(checker, "def f(a):\n    return object()", "0").valid
    assert not propose(checker, "def f(a):\n    return 'x' * 10**6", "0").valid  # over the size limit


def test_badly_formatted_proposals(chat):
    texts = ["no tags at all", "<think>x</think> <answer>no fences</answer>",
             respond(("python", DOUBLE)), "<answer>" + respond(("python", DOUBLE), ("input", "1"))]
    for verdict in chat.check_proposals("deduction", texts, [None] * len(texts)):
        assert not verdict.valid and not verdict.well_formatted


def test_abduction_inputs_that_splice_code_are_invalid(chat):
    verdict = propose(chat, DOUBLE, "0) or True or (0")
    assert not verdict.valid and "argument" in verdict.reason


def test_held_out_programs_cannot_be_proposed(box):
    checker = Checker(box, CompactStyle(), held_out=frozenset({"a*3+1"}))
    held, fresh = checker.check_proposals("abduction", ["*3+1|5", "*3+2|5"], [None, None])
    assert not held.valid and "held-out" in held.reason
    assert fresh.valid and fresh.task.outputs == ("17",)


def test_induction_proposals_need_distinct_inputs_that_all_run(chat):
    given = ProgramTask("def f(a):\n    return 10 // a", ("1",), ("10",))
    texts = [respond(*[("input", x) for x in ["1", "2", "5", "10"]], ("message", "divides ten")),
             respond(*[("input", x) for x in ["1", "2", "2", "10"]]),
             respond(*[("input", x) for x in ["1", "2", "0", "10"]]),
             respond(*[("input", x) for x in ["1", "2", "5", "10", "-1"]])]
    good, repeated, failing, too_many = chat.check_proposals("induction", texts, [given] * 4)
    assert not too_many.valid and "expected 4 distinct inputs" in too_many.reason
    assert good.valid and good.task.outputs == ("10", "5", "2", "1") and good.task.message == "divides ten"
    assert not repeated.valid and "distinct" in repeated.reason
    assert not failing.valid and "ZeroDivisionError" in failing.reason


def test_compact_proposals_are_real_python(compact):
    # the prompt ends with the program's first character, `a`
    texts = ["*3+1|5", "%0|5", "*|5", "+1", "|a", "-7|2", "*0+7|8", "|3", "|12", "%|"]
    verdicts = compact.check_proposals("deduction", texts, [None] * len(texts))
    assert [v.valid for v in verdicts] == [True, False, False, False, False, True, True, True, False, False]
    assert verdicts[0].task.program == "a*3+1" and verdicts[0].task.outputs == ("16",)
    assert verdicts[5].task.outputs == ("-5",) and verdicts[7].task.outputs == ("3",)
    assert [v.well_formatted for v in verdicts[3:5] + verdicts[8:]] == [False, False, False, False]
    given = ProgramTask("a*2", ("1",), ("2",))
    inputs, few, bad = compact.check_proposals("induction", ["3142", "3313", "3,1"], [given] * 3)
    assert inputs.valid and inputs.task.inputs == ("3", "1", "4", "2") and inputs.task.outputs == ("6", "2", "8", "4")
    assert not few.valid and few.well_formatted and not bad.well_formatted


def test_compact_templates_take_one_digit_a_slot_and_the_input(box):
    """`templates`: the prompt shows the program with `_` for each slot, and the proposer
    writes digits only, one per slot and then the input: it cannot write the identity."""
    style = CompactStyle(templated=True)
    checker = Checker(box, style, timeout_s=2.0)
    seed = ProgramTask("a", ("1",), ("1",))
    assert style.propose_prompt("deduction", [seed], None, "a*{}+{}") == "PD:a|1>a*_+_"
    assert style.alphabet("deduction", "propose") == "0123456789"
    assert CompactStyle().alphabet("deduction", "propose") == CompactStyle.EXPRESSION + "|"
    assert style.alphabet("abduction", "solve") == "0123456789"  # an input is one digit
    texts = ["315", "31", "3a5", "05", "54"]
    verdicts = checker.check_proposals("deduction", texts, [None] * 5, ["a*{}+{}", "a*{}+{}", "a*{}+{}", "a%{}", "{}-a"])
    assert [v.valid for v in verdicts] == [True, False, False, False, True]
    assert verdicts[0].task.program == "a*3+1" and verdicts[0].task.outputs == ("16",)
    assert [v.well_formatted for v in verdicts[1:3]] == [False, False]
    assert "ZeroDivisionError" in verdicts[3].reason  # `a%0`
    assert verdicts[4].task.program == "5-a" and verdicts[4].task.outputs == ("1",)


# ---- answers: grading and the original's reward hacks ----------------------------------------------
TASK = ProgramTask("def f(a):\n    return a * 2", ("3",), ("6",))


def grade(checker, kind, task, *answers, shown=5) -> list[Answer]:
    return checker.grade(kind, [task] * len(answers), list(answers), shown=shown)


def test_a_response_cut_at_the_length_limit_is_badly_formatted(compact):
    """`13` cut at a 2-token limit never ended (it may have been on its way to `137`): it is
    not the answer 13; `13` and then the stop token is."""
    task = ProgramTask("a*3+4", ("3",), ("13",))
    cut, ended = (Generation([1], [5, 6], [0.0, 0.0], "13", truncated) for truncated in (True, False))
    assert [g.correct for g in grade(compact, "deduction", task, finished(ended))] == [True]
    assert [(g.correct, g.well_formatted) for g in grade(compact, "deduction", task, finished(cut))] == [(False, False)]
    assert not compact.check_proposals("deduction", [finished(Generation([1], [5, 6, 7], [0.0] * 3, "*3|5", True))],
                                       [None])[0].well_formatted


def test_deduction_compares_type_and_value_and_runs_nothing(chat, box):
    runs = box._next
    right, wrong_type, wrong, spliced, unformatted = grade(
        chat, "deduction", TASK, respond(("output", "6")), respond(("output", "6.0")), respond(("output", "7")),
        respond(("output", "__import__('os').getpid()")), "6")
    one = ProgramTask("def f(a):\n    return a - 2", ("3",), ("1",))
    assert [a.correct for a in grade(chat, "deduction", one, *(respond(("output", x)) for x in ["1", "True", "1.0"]))] \
        == [True, False, False]
    assert right.correct
    assert not wrong_type.correct and wrong_type.well_formatted
    assert not wrong.correct and wrong.well_formatted
    assert not spliced.correct and not spliced.well_formatted
    assert not unformatted.correct and not unformatted.well_formatted
    assert box._next == runs  # nothing went to the sandbox


def test_abduction_runs_f_on_the_answer_in_the_sandbox(chat):
    # any input that gives the output is right, not only the proposer's
    task = ProgramTask("def f(a):\n    return a % 3", ("4",), ("1",))
    other, wrong, splice = grade(chat, "abduction", task, respond(("input", "7")), respond(("input", "2")),
                                 respond(("input", "0) or True or (0")))
    assert other.correct and not wrong.correct and wrong.well_formatted
    assert not splice.correct and not splice.well_formatted


def test_an_object_whose_eq_always_says_true_scores_nothing(chat):
    liar = ("class Liar:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
            "def f(a):\n    return Liar()")
    task = ProgramTask("def f(a):\n    return a * 2", ("1", "2", "3", "4"), ("2", "4", "6", "8"))
    (answer,) = grade(chat, "induction", task, respond(("python", liar)), shown=2)
    assert not answer.correct and "TypeError" in answer.reason
    str_liar = "class S(str):\n    def __eq__(self, o):\n        return True\ndef f(a):\n    return S('x')"
    assert not grade(chat, "induction", task, respond(("python", str_liar)), shown=2)[0].correct


def test_induction_needs_every_held_out_pair(compact):
    task = ProgramTask("a*2", ("1", "2", "3", "4"), ("2", "4", "6", "8"))
    exact, shown_only, general, junk = grade(compact, "induction", task, "a*2", "a*2+(a>2)", "a+a", "a*", shown=2)
    assert exact.correct and general.correct
    assert not shown_only.correct and shown_only.well_formatted  # right on the shown pairs only
    assert not junk.correct and not junk.well_formatted


def test_compact_deduction_and_abduction(compact):
    task = ProgramTask("a*3+1", ("5",), ("16",))
    assert [a.correct for a in grade(compact, "deduction", task, "16", "17", "016", "1a")] == [True, False, False, False]
    assert [a.correct for a in grade(compact, "abduction", task, "5", "4", "a")] == [True, False, False]


# ---- rewards -----------------------------------------------------------------------------------
@pytest.mark.parametrize("penalties, invalid, trivial, learnable, wrong, unformatted", [
    ("paper", -1.0, 0.0, 0.625, -0.5, -1.0),
    ("code", -1.0, -0.5, 0.625, -0.5, -1.0),
    ("none", 0.0, 0.0, 0.625, 0.0, 0.0),
])
def test_rewards_by_hand(penalties, invalid, trivial, learnable, wrong, unformatted):
    recipe = AZRRecipe.__new__(AZRRecipe)
    recipe.cfg = Config(penalties=penalties)
    valid = Verdict(True, "", TASK)
    assert recipe.propose_reward(Verdict(False, "rejected"), None) == invalid
    assert recipe.propose_reward(valid, 0.0) == trivial and recipe.propose_reward(valid, 1.0) == trivial
    assert recipe.propose_reward(valid, 3 / 8) == learnable  # 1 - 3/8
    assert recipe.solve_reward(Answer(True, True, "")) == 1.0
    assert recipe.solve_reward(Answer(False, True, "")) == wrong
    assert recipe.solve_reward(Answer(False, False, "")) == unformatted


def test_intrinsic_rewards_by_hand():
    """Novelty is the distance to the nearest reference: `a*3+1` is 1 - 2*4/10 = 0.2 from
    `a*3+2` (and 1 - 2/6 from `a`); size counts AST nodes beyond the seed's `def f(a): return a`
    (13 - 7 = 6); the sum is capped at intrinsic_max."""
    recipe = AZRRecipe.__new__(AZRRecipe)
    recipe.seed_nodes = 7
    proposal = Verdict(True, "", ProgramTask("a*3+1", ("5",), ("16",)), ast_nodes=13)
    references = [ProgramTask("a", ("1",), ("1",)), ProgramTask("a*3+2", ("1",), ("5",))]
    recipe.cfg = Config()  # the paper: none
    assert recipe.intrinsic_reward(proposal, references) == 0.0
    recipe.cfg = Config(novelty_reward=0.3, complexity_reward=0.05)
    assert recipe.intrinsic_reward(proposal, references) == pytest.approx(0.3 * 0.2 + 0.05 * 6)
    copy = Verdict(True, "", ProgramTask("a*3+2", ("7",), ("23",)), ast_nodes=13)
    assert recipe.intrinsic_reward(copy, references) == pytest.approx(0.05 * 6)  # a copy is not novel
    assert recipe.intrinsic_reward(Verdict(False, "rejected"), references) == 0.0
    assert recipe.intrinsic_reward(proposal, []) == 0.0  # induction proposers see no references
    recipe.cfg = Config(novelty_reward=0.3, complexity_reward=0.1, intrinsic_max=0.5)
    assert recipe.intrinsic_reward(proposal, references) == 0.5  # 0.06 + 0.6, capped


def test_repeats_are_tasks_in_their_buffer_or_proposed_twice_in_the_step():
    """`repeat_penalty`: a valid proposal repeats if its task (program and inputs, per type) is in
    its type's buffer or appears more than once among the step's proposals of that type."""
    recipe = AZRRecipe.__new__(AZRRecipe)
    old, twice, new = (ProgramTask(p, (x,), (y,)) for p, x, y in [("a+1", "1", "2"), ("a*2", "3", "6"), ("a-1", "5", "4")])
    recipe.buffers = {"deduction": [old], "abduction": [], "induction": []}
    kinds = ["deduction", "deduction", "deduction", "deduction", "abduction", "deduction", "abduction"]
    verdicts = [Verdict(True, "", old), Verdict(True, "", twice), Verdict(True, "", twice), Verdict(True, "", new),
                Verdict(True, "", old),  # abduction's buffer does not hold it
                Verdict(False, "rejected"), Verdict(True, "", ProgramTask("a+1", ("2",), ("3",)))]
    assert recipe.repeats(kinds, verdicts) == [True, True, True, False, False, False, False]


def test_the_repeat_penalty_is_paid_by_a_proposal_the_buffer_holds(tmp_path):
    """The same step collected twice proposes the same tasks (same seeds, no update between, no
    references from the grown buffer in the prompts): the second time every valid one is in the
    buffer, and its reward is 0.5 lower."""
    from selfplay.trainer import Trainer

    cfg = load_config(PRESET, ["steps=1", "eval.every=0", *SMALL, "recipe.repeat_penalty=0.5", "recipe.references=0",
                               "recipe.propose={deduction: 64, abduction: 64}"])
    recipe = Trainer(cfg, tmp_path).recipe
    first, again = recipe.collect(0), recipe.collect(0)
    recipe.close()
    for batch in (first, again):
        proposals = [s for s in batch.samples if s.role == "propose"]
        for s in proposals:
            learnability = recipe.propose_reward(Verdict(s.info["valid"], ""), s.info["solve_rate"])
            assert s.reward == learnability - 0.5 * s.info["repeat"]
    valid = [[s for s in batch.samples if s.role == "propose" and s.info["valid"]] for batch in (first, again)]
    assert [s.info["text"] for s in valid[0]] == [s.info["text"] for s in valid[1]] and valid[0]
    keys = [(s.task, s.info["task"]["program"], tuple(s.info["task"]["inputs"])) for s in valid[0]]
    assert [s.info["repeat"] for s in valid[0]] == [keys.count(k) > 1 for k in keys]  # the buffer held the seed alone
    assert all(s.info["repeat"] for s in valid[1])
    assert again.metrics["azr/deduction/repeated_proposals"] == 1.0


def test_buffers_deduplicate_and_keep_the_newest():
    recipe = AZRRecipe.__new__(AZRRecipe)
    recipe.cfg = Config(buffer_size=3)
    recipe.buffers = {"deduction": []}
    t = [ProgramTask(f"a+{i}", ("1",), (str(i + 1),)) for i in range(5)]
    recipe.add("deduction", [t[0], t[1], t[2]])
    recipe.add("deduction", [t[0], t[3], t[3]])  # t0 seen again: it moves to the newest place
    assert recipe.buffers["deduction"] == [t[2], t[0], t[3]]


def test_config_errors_are_one_line():
    with pytest.raises(ValueError, match="unknown task types"):
        load_config(PRESET, ["recipe.propose={deduce: 3}"])
    with pytest.raises(ValueError, match="induction_shown"):
        load_config(PRESET, ["recipe.induction_shown=4"])
    with pytest.raises(ValueError, match="unknown layer"):
        load_config(PRESET, ["recipe.sandbox.require=[moat]"])
    with pytest.raises(ValueError, match="prompt: example is for style chat"):
        load_config(PRESET, ["recipe.prompt=example"])
    with pytest.raises(ValueError, match="'a/{}' is not a compact expression with {} slots"):
        load_config(PRESET, ["recipe.templates=['a+{}', 'a/{}']"])
    with pytest.raises(ValueError, match="'a\\+1' is not a compact expression with {} slots"):
        load_config(PRESET, ["recipe.templates=['a+1']"])
    with pytest.raises(ValueError, match="templates are for style compact"):
        load_config(PRESET, ["recipe.style=chat", "recipe.sandbox.output_max_chars=200", "recipe.templates=['a+{}']",
                             "recipe.executor_answers={}"])


def test_a_run_without_a_required_isolation_layer_stops_at_start_saying_which(tmp_path):
    """Forbid `unshare` (as a container might), so no namespace layer can start: the run
    refuses to train, with one line that names the missing layers."""
    script = textwrap.dedent(f"""
        import errno, sys, pyseccomp
        f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        f.add_rule(pyseccomp.ERRNO(errno.EPERM), "unshare")
        f.load()
        from selfplay.cli import main
        sys.exit(main(["train", "azr_tiny", "steps=1", "output_dir={tmp_path / 'run'}"]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SELFPLAY_NO_PROGRESS": "1"})
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: required sandbox layers are not available here: ") and "user_ns" in last
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---- model-written code runs only in the sandbox --------------------------------------------------
MARKER = "azr_marker_7f3a"
_executed: list[str] = []


def _watch(event: str, args: tuple) -> None:
    """Audit hook: note any code object carrying MARKER that is executed in this process."""
    if event == "exec" and args:
        code = args[0]
        stack = [code]
        while stack:
            c = stack.pop()
            if hasattr(c, "co_consts"):
                if MARKER in c.co_names or MARKER in c.co_varnames or any(
                        isinstance(k, str) and MARKER in k for k in c.co_consts):
                    _executed.append(event)
                stack += [k for k in c.co_consts if hasattr(k, "co_consts")]


def test_model_written_code_never_runs_in_this_process(chat):
    sys.addaudithook(_watch)  # stays for the process: it only records
    program = f"def f(a):\n    {MARKER} = '{MARKER}'\n    return len({MARKER}) + a"
    verdict = propose(chat, program, "1")
    assert verdict.valid and verdict.task.outputs == (str(len(MARKER) + 1),)  # it ran: in the sandbox
    task = verdict.task
    answers = [grade(chat, "abduction", task, respond(("input", "1")))[0],
               grade(chat, "deduction", task, respond(("output", f"'{MARKER}'")))[0],
               grade(chat, "induction", ProgramTask(program, ("1", "2", "3", "4"), ("16", "17", "18", "19")),
                     respond(("python", program)), shown=2)[0]]
    assert [a.correct for a in answers] == [True, False, True]
    exec(compile(f"{MARKER} = 1", "<test>", "exec"), {})  # the hook itself works
    assert _executed == ["exec"], "model-written code was executed in the trainer process"


# ---- the recipe, end to end -------------------------------------------------------------------
SMALL = ["recipe.propose={deduction: 16, abduction: 16, induction: 4}", "recipe.attempts=2",
         "recipe.solve={deduction: 4, abduction: 4, induction: 2}", "recipe.eval_size=4", "threads=1",
         "recipe.executor_answers={}"]  # the tests below count sampled answers


def test_seeding_grows_the_buffers_with_the_untrained_model_and_is_saved(tmp_path):
    from selfplay.trainer import Trainer

    cfg = load_config(PRESET, ["steps=1", "recipe.seed_programs=3", "eval.every=0", *SMALL,
                               "recipe.propose={deduction: 64, abduction: 64, induction: 4}"])
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    recipe = trainer.recipe
    assert recipe.seeded
    for kind in ("deduction", "abduction"):
        assert len(recipe.buffers[kind]) >= 3  # the identity program and proposals of the untrained model
        assert all(t.outputs for t in recipe.buffers[kind])
    state = json.loads((tmp_path / "checkpoints" / "step-000001" / "azr_state.json").read_text())
    assert state["seeded"] and len(state["buffers"]["deduction"]) == len(recipe.buffers["deduction"])


def test_the_programs_suite_grades_right_answers_right(box):
    from selfplay.evals.suites import SUITES, grade_programs_many, select

    problems = select(SUITES["programs"].problems(), 30)
    kinds = {p.id.split("/")[0] for p in problems}
    assert kinds == {"deduction", "abduction", "induction"} and len(SUITES["programs"].problems()) == 192

    def right(problem):
        task = ProgramTask.from_dict(json.loads(problem.answer))
        kind = problem.id.split("/")[0]
        fence = {"deduction": ("output", task.outputs[0]), "abduction": ("input", task.inputs[0]),
                 "induction": ("python", task.program)}[kind]
        return respond(fence)

    grades = grade_programs_many(problems, [right(p) for p in problems], box)
    assert all(g.passed for g in grades), [g.reason for g in grades if not g.passed]
    wrong = grade_programs_many(problems, ["<think></think> <answer>no</answer>"] * len(problems), box)
    assert not any(g.passed for g in wrong)


def test_the_worked_examples_are_right(box):
    """`prompt: example` shows one exchange per (type, role) before the question; each
    example response must be one the checker accepts (a valid proposal with the outputs the
    example states, a correct answer), or the model would copy a wrong one."""
    style = ChatStyle(worked_example=True)
    checker, task = Checker(box, style, timeout_s=2.0, induction_inputs=10), style.EXAMPLE
    for kind in TASK_TYPES:
        question, response = style.example(kind, "propose", 5)
        verdict = checker.check_proposals(kind, [response], [task if kind == "induction" else None])[0]
        assert verdict.valid, (kind, verdict.reason)
        assert verdict.task.outputs == (task.outputs if kind == "induction" else task.outputs[:1])
        question, response = style.example(kind, "solve", 5)
        assert checker.grade(kind, [task], [response], shown=5)[0].correct, kind
        assert question == style.solve_prompt(kind, task, 5)
        assert "your reasoning" not in question  # the placeholder small models copy
    assert "your reasoning" in ChatStyle().solve_prompt("deduction", task, 5)  # the paper's format
    assert ChatStyle().example("deduction", "solve", 5) is None
    assert CompactStyle(worked_example=True).example("deduction", "solve", 5) is None


def test_chat_style_runs_end_to_end_and_prompts_end_with_think(tmp_path):
    from selfplay.trainer import Trainer

    with pytest.raises(ValueError, match="output_max_chars"):
        # the tiny preset's 4-character outputs
        load_config(PRESET, ["recipe.style=chat", "recipe.templates=[]", "recipe.executor_answers={}"])
    # the 64-wide model: the format's rules do not depend on the size, and it runs in a third of the time
    cfg = load_config(PRESET, ["steps=1", "eval.every=1", "recipe.style=chat", "recipe.templates=[]", "model.name=tiny",
                               "recipe.sandbox.output_max_chars=200",
                               "recipe.propose_max_new_tokens=12",
                               "recipe.solve_max_new_tokens=12", *SMALL])
    trainer = Trainer(cfg, tmp_path)
    recipe = trainer.recipe
    assert recipe.sampling("deduction", "propose").allowed_token_ids is None  # chat: any token
    question = recipe.style.solve_prompt("deduction", recipe.buffers["deduction"][0], 5)
    ids = recipe.prompt_ids("deduction", "solve", question)
    assert recipe.policy.tokenizer.decode(ids).endswith("<think>")
    paper_style, recipe.style = recipe.style, ChatStyle(worked_example=True)  # as `prompt: example` makes it
    text = recipe.policy.tokenizer.decode(recipe.prompt_ids("deduction", "solve", "QUESTION"))
    assert text.index(ChatStyle.EXAMPLE.outputs[0]) < text.index("QUESTION") and text.endswith("<think>")
    recipe.style = paper_style
    trainer.train()
    row = read_metrics(tmp_path)[-1]
    # a random model writes no <think>...</answer>: every response is badly formatted, scored -1
    assert row["azr/deduction/format_errors"] == 1.0 and row["azr/deduction/solve_rate"] == 0.0
    assert "eval/azr/induction/solve_rate" in row
    assert 0 < row["eval/azr/deduction/distinct_answers"] <= 1


@pytest.mark.parametrize("train_attempts", [False, True])
def test_attempts_are_solver_samples_only_with_train_attempts_and_solve_weight(tmp_path, train_attempts):
    from selfplay.trainer import Trainer

    cfg = load_config(PRESET, ["steps=1", "eval.every=0", *SMALL, f"recipe.train_attempts={train_attempts}",
                               "recipe.solve_weight=3"])
    recipe = Trainer(cfg, tmp_path).recipe
    batch = recipe.collect(0)
    proposals = [s for s in batch.samples if s.role == "propose"]
    answers = [s for s in batch.samples if s.role == "solve"]
    attempts = [s for s in answers if s.info["attempt"]]
    valid = sum(s.info["valid"] for s in proposals)
    assert valid > 0  # the templates make the untrained model's proposals valid often
    assert len(attempts) == (2 * valid if train_attempts else 0)  # recipe.attempts=2 per valid proposal
    assert len(answers) - len(attempts) == 4 + 4 + 2  # the solver tasks of recipe.solve
    # solve_weight: the solver's samples weigh 3 in the loss, the proposer's 1
    assert {s.weight for s in answers} == {3.0} and {s.weight for s in proposals} == {1.0}
    for kind in TASK_TYPES:  # an attempt is graded like a solver answer; s is the share of its owner's right
        mine = [s for s in proposals if s.task == kind and s.info["valid"]]
        if train_attempts and mine:
            right = sum(s.info["correct"] for s in attempts if s.task == kind)
            assert right == round(sum(s.info["solve_rate"] for s in mine) * 2)
        assert all(s.reward == (1.0 if s.info["correct"] else -0.5 if s.info["well_formatted"] else -1.0)
                   for s in answers if s.task == kind)
    # the step's solve rates are over the solver tasks alone, as without the option
    for kind in ("deduction", "abduction"):
        tasks = [s for s in answers if s.task == kind and not s.info["attempt"]]
        assert batch.metrics[f"azr/{kind}/solve_rate"] == sum(s.info["correct"] for s in tasks) / len(tasks)
    recipe.close()


def test_executor_answers_are_the_tasks_right_answers_written_as_solver_samples(tmp_path):
    from selfplay.trainer import Trainer

    cfg = load_config(PRESET, ["steps=1", "eval.every=0", *SMALL, "recipe.solver_tasks=same",
                               "recipe.executor_answers={deduction: 6, abduction: 6, induction: 2}"])
    recipe = Trainer(cfg, tmp_path).recipe
    batch = recipe.collect(0)
    answers = [s for s in batch.samples if s.role == "solve"]
    written = [s for s in answers if s.info["executor"]]
    sampled = [s for s in answers if not s.info["executor"]]
    assert len(sampled) == 4 + 4 + 2  # the solver tasks, answered as without the option
    assert written and all(s.reward == 1.0 and s.logprobs == [] and s.info["correct"] for s in written)
    for kind in TASK_TYPES:
        mine = [s for s in written if s.task == kind]
        tasks = [ProgramTask.from_dict(s.info["task"]) for s in mine]
        # each is right, graded in the sandbox as a solver's answer is, and ends with the stop token
        grades = recipe.checker.grade(kind, tasks, [s.info["text"] for s in mine], cfg.recipe.induction_shown)
        assert all(g.correct for g in grades), [g.reason for g in grades]
        assert all(s.response_ids[-1] == recipe.policy.tokenizer.eos_token_id for s in mine)
        assert all(len(s.response_ids) <= cfg.recipe.solve_max_new_tokens for s in mine)  # a solver could write it
        # the step's solver tasks first (with their prompts), then draws from the buffer
        asked = [s.prompt_ids for s in sampled if s.task == kind]
        fits = [s.prompt_ids for s in sampled if s.task == kind
                if len(recipe.style.right_answer(kind, ProgramTask.from_dict(s.info["task"]))) + 1  # the stop
                <= cfg.recipe.solve_max_new_tokens]
        assert [s.prompt_ids for s in mine][:len(fits)] == fits and len(mine) <= (6 if kind != "induction" else 2)
        assert len(asked) == (4 if kind != "induction" else 2)
    for kind in ("deduction", "abduction"):  # the step's solve rate is the sampled answers' alone
        tasks = [s for s in sampled if s.task == kind]
        assert batch.metrics[f"azr/{kind}/solve_rate"] == sum(s.info["correct"] for s in tasks) / len(tasks)
    # their advantage is executor_advantage, apart from TRR++: the sampled answers' baseline is
    # their own, as without the option; executor_in_group puts them in the solver's groups
    recipe.advantages(batch)
    assert {s.advantage for s in written} == {1.0}
    for kind in TASK_TYPES:
        mine = [s.reward for s in sampled if s.task == kind]
        mean, std = sum(mine) / len(mine), statistics.stdev(mine)
        assert [s.advantage for s in sampled if s.task == kind] == pytest.approx([(r - mean) / (std + 1e-8) for r in mine])
    recipe.cfg.executor_in_group = True
    recipe.advantages(batch)
    for kind in TASK_TYPES:
        group = [s.reward for s in answers if s.task == kind]
        mean, std = sum(group) / len(group), statistics.stdev(group)
        assert [s.advantage for s in answers if s.task == kind] == pytest.approx([(r - mean) / (std + 1e-8) for r in group])
    recipe.close()
    # a training step with them: the learner takes its own log-probs for the written answers,
    # so the sampler check (which stops a run on a gap) sees only what was sampled
    trainer = Trainer(cfg, tmp_path / "step")
    metrics = trainer.train_step()
    trainer.recipe.close()
    assert metrics["loss/sampler_logprob_gap"] < 1e-4 and metrics["loss/num_samples"] > len(sampled)
    with pytest.raises(ValueError, match="executor_answers is for style compact"):
        load_config(PRESET, ["recipe.style=chat", "recipe.sandbox.output_max_chars=200", "recipe.templates=[]",
                             "recipe.executor_answers={deduction: 4}"])
