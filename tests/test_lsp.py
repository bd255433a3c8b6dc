"""The LSP recipe (ALGORITHMS.md section 2): the Challenger's queries, their checks, the
Solver's graded answers, both roles' rewards, weights and advantages, the held-out
evaluation and the recipe's state, on the real tiny model and the real arithmetic family."""

from __future__ import annotations

import copy
import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from selfplay.config import ConfigError, load_config
from selfplay.models.generation import SamplingParams, default_stop_token_ids
from selfplay.models.policy import Policy
from selfplay.recipes import Batch, RecipeContext, recipe_class
from selfplay.evals.instructions import instructions
from selfplay.recipes.lsp import (CHALLENGER, HELD_OUT, SOLVER, Config, LSPRecipe, _fill, _unfill, faded_counts,
                                  looks_like_code, novelty_bonus)
from selfplay.rewards.chat import ModelChat
from selfplay.models.loading import render_prompt
from selfplay.rewards.judge import ModelJudge, quality_prompt
from selfplay.rollout.sample import Sample
from selfplay.seeding import derive_seed
from selfplay.tasks import make as make_task

PRESET = Path(__file__).resolve().parents[1] / "selfplay" / "configs" / "lsp_tiny.yaml"
# N = 32 queries a step of two one-digit operands (the preset has three): the random tiny model
# writes a valid one about once in 30-100 tries; the paper's challenger reward and weights
# unless a test turns the repetition penalty on (the preset's is 5) or sets alpha_ch, and no
# probes or candidates unless a test asks for them (the preset draws 8 and writes 64)
SMALL = ["recipe.queries_per_step=32", "recipe.answers_per_query=3", "recipe.eval_size=16",
         "recipe.repetition_penalty=0", "recipe.task_options.terms=2", 'recipe.compact_template="{}+{}"',
         "recipe.query_max_new_tokens=2", "recipe.alpha_ch=1", "recipe.challenger_probes=0",
         "recipe.challenger_candidates=0"]


def load(overrides=()):
    return load_config(PRESET, [*SMALL, *overrides])


def new_policy(cfg=None):
    cfg = cfg or load()
    return Policy(cfg.model, cfg.optim, cfg.sampling, cfg.seed)


def build(policy, tmp_path, overrides=(), seed=0) -> LSPRecipe:
    """The recipe as the trainer builds it: its config section, the Policy and a RecipeContext."""
    cfg = load(overrides)
    s = cfg.sampling
    context = RecipeContext(seed=seed, run_dir=Path(tmp_path),
                            sampling=SamplingParams(s.temperature, s.top_p, s.max_new_tokens),
                            eval_sampling=SamplingParams(cfg.eval.temperature, s.top_p, s.max_new_tokens))
    recipe = recipe_class(cfg.recipe.name)(cfg.recipe, policy, context)
    assert isinstance(recipe, LSPRecipe)
    return recipe


@pytest.fixture(scope="module")
def policy():
    """The preset's random tiny model. Collecting never changes its weights (only a trainer
    does) and every generate call is seeded, so the tests can share it."""
    return new_policy()


def challengers(batch):
    return [s for s in batch.samples if s.role == CHALLENGER]


def solvers(batch, group=None):
    return [s for s in batch.samples if s.role == SOLVER and (group is None or s.group == group)]


def mixed_step(recipe, steps=range(60), also=lambda batch: True):
    """The first step whose queries are some valid and some not, and that passes `also` (the
    random model writes a valid sum rarely; every step is a pure function of (seed, step))."""
    for step in steps:
        batch = recipe.collect(step)
        own = [c for c in challengers(batch) if not (c.info.get("probe") or c.info.get("candidate"))]
        valid = [c for c in own if c.info["valid"]]
        if valid and len(valid) < len(own) and also(batch):
            return step, batch
    raise AssertionError("no step with a valid query: has the tiny model or the seed changed?")


def solver(group, R, R_Q=0.0, text="7", parsed=True, length=2, solved=None):
    # solved: the answer was exactly right (R >= 1 with any reward_scale >= 1 and format_reward < 1)
    return Sample(prompt_ids=[1], response_ids=[2] * length, logprobs=[-1.0] * length, task="arithmetic",
                  role=SOLVER, episode_id=0, reward=R + R_Q, group=group,
                  info={"text": text, "R": R, "R_Q": R_Q, "judge_parsed": parsed,
                        "solved": R >= 1.0 if solved is None else solved})


def challenger(group, reward, text="1+2"):
    return Sample(prompt_ids=[1], response_ids=[2, 3], logprobs=[-1.0, -1.0], task="arithmetic",
                  role=CHALLENGER, episode_id=0, reward=reward, group=group, info={"text": text})


# ---------------------------------------------------------------- 1. the query the Challenger's text makes

def test_fill_puts_one_character_in_each_slot():
    assert _fill("{}+{}", "34") == "3+4"
    assert _fill("({})*{}=", "12") == "(1)*2="  # the text after the last slot is kept
    assert _fill("{}+{}", "{}") == "{+}"  # the characters are taken literally, not as slots


def test_query_text_compact_fills_the_template_and_keeps_a_short_text_as_written(policy, tmp_path):
    lsp = build(policy, tmp_path)
    assert lsp.cfg.style == "compact" and lsp.cfg.compact_template == "{}+{}"
    assert lsp.query_text("34") == "3+4"
    assert lsp.query_text("345") == "3+4"  # one character per slot; the rest is dropped
    assert lsp.query_text(" 4") == " +4"  # whitespace fills a slot like any character (and is not a number)
    assert lsp.check(" +4")[0] is False
    # one character cannot fill two slots: the query is the text as written, and refused
    assert lsp.query_text("l") == "l"
    ok, reason, problem = lsp.check("l")
    assert (ok, problem) == (False, None) and reason == "unexpected character 'l' at position 0"
    assert lsp.query_text("") == ""
    assert lsp.check("")[:2] == (False, "the query is empty")


def test_query_text_without_a_template_is_the_text_stripped(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.compact_template=''"])
    assert lsp.cfg.compact_template == ""
    assert lsp.query_text("  3+4 \n") == "3+4"
    assert lsp.query_text("34") == "34"


def test_chat_style_ignores_the_compact_template(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.style=chat"])
    assert lsp.cfg.compact_template == "{}+{}"  # set, but not used in chat style
    assert lsp.query_text("  What is 3+4?\n") == "What is 3+4?"
    assert lsp.query_text("34") == "34"
    prompt = policy.tokenizer.decode(lsp.challenger_prompt)
    assert prompt.startswith("<|im_start|>user\nYou are writing a task for another assistant")
    assert "following this template: an arithmetic expression over whole numbers" in prompt


def test_a_digit_too_short_for_the_template_is_refused(policy, tmp_path):
    lsp = build(policy, tmp_path)
    query = lsp.query_text("7")  # the Challenger stopped after one character
    assert query == "7" and not lsp.fills_template("7") and lsp.fills_template("73")
    # collect refuses such queries before checking them: no step has a valid query of fewer characters
    for step in range(30):
        batch = lsp.collect(step)
        for s in batch.samples:
            if s.role == CHALLENGER and len(lsp.policy.tokenizer.decode(s.response_ids, skip_special_tokens=True)) < 2:
                assert s.info["valid"] is False and s.info["reason"] == "too short to fill the template"


FOUR_OPERANDS = ["recipe.task_options.terms=4", 'recipe.compact_template="{}+{}+{}+{}"', "recipe.query_max_new_tokens=4"]


def test_a_compact_alphabet_lets_a_random_challenger_fill_four_slots(tmp_path):
    """Unrestricted, the random model fills four slots with digits about once in 10^4 tries;
    kept to the digits (and the stop tokens), every query that fills them is a sum."""
    free = build(new_policy(load(FOUR_OPERANDS)), tmp_path, FOUR_OPERANDS)
    digits = build(free.policy, tmp_path, [*FOUR_OPERANDS, 'recipe.compact_alphabet="0123456789"'])
    free_batches = [free.collect(step) for step in range(3)]
    assert [c.info["reason"] for b in free_batches for c in challengers(b)].count("ok") == 0
    assert all(s.allowed_token_ids is None for b in free_batches for s in b.samples)
    allowed = set(digits.query_sampling.allowed_token_ids)
    tokenizer = digits.policy.tokenizer
    assert allowed == set(tokenizer("0123456789", add_special_tokens=False)["input_ids"]) | set(
        default_stop_token_ids(digits.policy.model, tokenizer))
    reasons = []
    for step in range(3):
        batch = digits.collect(step)
        # the learner trains the Challenger as the policy it samples from (tests/test_learner.py)
        assert all(s.allowed_token_ids is None for s in solvers(batch))
        for c in challengers(batch):
            assert c.allowed_token_ids == digits.query_sampling.allowed_token_ids
            assert set(c.response_ids) <= allowed
            written = tokenizer.decode(c.response_ids, skip_special_tokens=True)
            assert set(written) <= set("0123456789")
            reasons.append(c.info["reason"])
            if len(written) == 4:  # a sum of the family: one to train on, or one kept for evaluation
                assert c.info["reason"] in ("ok", HELD_OUT) and c.info["text"] == "+".join(written)
    assert reasons.count("ok") >= len(reasons) // 4


def test_a_boxed_challenger_is_trained_as_the_alphabet_it_writes(policy, tmp_path):
    """`query_from: boxed` samples the Challenger's turn over the query alphabet and `}`: its samples
    carry that alphabet, so the learner trains the policy it drew from (the softmax over it)."""
    lsp = build(policy, tmp_path, ["recipe.style=chat", "recipe.query_from=boxed", "recipe.quality=false",
                                   "recipe.query_max_new_tokens=4"])
    tokenizer = policy.tokenizer
    assert tokenizer.decode(lsp.challenger_prompt).endswith("\\boxed{")
    allowed = set(tokenizer("0123456789+-*}", add_special_tokens=False)["input_ids"]) | set(
        default_stop_token_ids(policy.model, tokenizer))
    assert set(lsp.query_sampling.allowed_token_ids) == allowed
    batch = lsp.collect(0)
    assert all(s.allowed_token_ids is None for s in solvers(batch))
    for c in challengers(batch):
        assert c.allowed_token_ids == lsp.query_sampling.allowed_token_ids and set(c.response_ids) <= allowed
    assert all(s.allowed_token_ids is None for s in build(policy, tmp_path).collect(0).samples)  # unrestricted


TWO_TO_FOUR = ["recipe.task_options.terms=4", "recipe.task_options.min_terms=2", 'recipe.compact_template="{}+{}+{}+{}"',
               "recipe.compact_min_slots=2", "recipe.query_max_new_tokens=4", 'recipe.compact_alphabet="0123456789"']


def test_a_challenger_may_stop_after_the_minimum_slots_and_asks_a_shorter_sum(policy, tmp_path):
    lsp = build(policy, tmp_path, TWO_TO_FOUR)
    assert [lsp.query_text(w) for w in ("35", "357", "3579", "35791")] == ["3+5", "3+5+7", "3+5+7+9", "3+5+7+9"]
    assert not lsp.fills_template("3") and lsp.query_text("3") == "3"  # below the minimum: as written, refused
    for query in ("3+5", "3+5+7", "3+5+7+9"):  # each a sum of the family: one to train on, or held out
        problem = lsp.task.check_query(query).problem
        assert lsp.check(query)[1] == (HELD_OUT if lsp.task.is_held_out(problem) else "ok")
    every = build(policy, tmp_path, FOUR_OPERANDS)  # without the option every slot must be filled
    assert not every.fills_template("357") and every.query_text("357") == "357"


def test_a_random_challenger_writes_sums_of_every_allowed_length(tmp_path):
    """With 2-4 slots and the digits, a random Challenger's queries are sums of two, three and four
    operands, each checked against the family (training or held out) and refused below two."""
    lsp = build(new_policy(load(TWO_TO_FOUR)), tmp_path, TWO_TO_FOUR)
    tokenizer, lengths = lsp.policy.tokenizer, Counter()
    for step in range(4):
        for c in challengers(lsp.collect(step)):
            written = tokenizer.decode(c.response_ids, skip_special_tokens=True)
            if len(written) < 2:
                assert c.info["reason"] == "too short to fill the template"
            else:
                assert c.info["text"] == "+".join(written) and c.info["reason"] in ("ok", HELD_OUT)
                assert c.info["valid"] == (c.info["reason"] == "ok")
                lengths[len(written)] += 1
    assert set(lengths) == {2, 3, 4}


def test_a_compact_alphabet_character_that_is_not_one_token_is_a_config_error(policy, tmp_path):
    with pytest.raises(ConfigError, match=r"recipe.compact_alphabet: every character of '0123\u6f22' must be one "
                                          r"token of this model's tokenizer"):  # 漢: the unknown token here
        build(policy, tmp_path, ['recipe.compact_alphabet="0123\u6f22"'])


# ---------------------------------------------------------------- 2. check: training problems only

def test_check_takes_a_training_sum_with_its_problem(policy, tmp_path):
    lsp = build(policy, tmp_path)
    assert not lsp.task.is_held_out(lsp.task.check_query("4+3").problem)
    ok, reason, problem = lsp.check("4+3")
    assert (ok, reason) == (True, "ok")
    assert (problem.text, problem.answer) == ("4+3", "7")
    ok, _, problem = lsp.check(" 4 + 3 =")  # the family's own parser reads it into its canonical form
    assert ok and (problem.text, problem.answer) == ("4+3", "7")


def test_check_refuses_the_held_out_problems(policy, tmp_path):
    lsp = build(policy, tmp_path)
    held_out = lsp.task.held_out(256)
    assert len(held_out) == 23 and held_out[0].text == "8+7"  # the preset's whole evaluation set
    for p in held_out:
        ok, reason, problem = lsp.check(p.text)
        assert (ok, problem) == (False, None)
        assert "held-out" in reason
    assert lsp.held_out == held_out[:16]  # eval_size=16: a prefix of the same fixed set


@pytest.mark.parametrize("query", ["", "3+", "ab", "__import__('os')", "1234567890+1", "(" * 17 + "1" + ")" * 17,
                                   "9" * 201, "3/4", "3*4", "-3+4", "03+4", "٣+4", "3+4\n7"])
def test_check_refuses_garbage_with_a_reason_and_never_raises(policy, tmp_path, query):
    lsp = build(policy, tmp_path)
    ok, reason, problem = lsp.check(query)
    assert (ok, problem) == (False, None)
    assert isinstance(reason, str) and reason and reason != "ok"


def test_check_reads_the_familys_grammar_not_its_difficulty(policy, tmp_path):
    """The family's grammar, not its draw options (digits: 1, terms: 2), decides what a problem
    is: longer numbers, more terms and a bare number are problems. The compact template keeps
    the tiny Challenger inside the options; a chat Challenger that writes whole queries is not."""
    lsp = build(policy, tmp_path)
    assert lsp.check("9999+1")[0] is True and lsp.check("9999+1")[2].answer == "10000"
    assert lsp.check("1+2+3")[0] is True
    assert lsp.check("34")[:2] == (True, "ok")


def test_a_non_verifiable_reward_takes_any_non_empty_query(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.reward=judge", "recipe.quality=false"])
    assert lsp.verifiable is False and lsp.judge is None
    assert lsp.check("Write a haiku about the sea.") == (True, "ok", None)
    assert lsp.check("8+7") == (True, "ok", None)  # no held-out split without a task grader
    assert lsp.check("") == (False, "empty query", None)


# ---------------------------------------------------------------- 3. collect on the real tiny model

COLLECTED = ["recipe.answers_per_query=4", "recipe.reward_scale=2.0", "recipe.alpha_ch=0.5",
             "recipe.invalid_query_reward=-3"]


@pytest.fixture(scope="module")
def collected(policy, tmp_path_factory):
    """A step with valid and invalid queries and an answer worth something: N = 32, G = 4, R
    scaled by 2, a format reward of 0.2 (the preset's), alpha_ch = 0.5, invalid queries paid -3."""
    lsp = build(policy, tmp_path_factory.mktemp("collect"), COLLECTED)
    step, batch = mixed_step(lsp, also=lambda batch: any(s.info["R"] > 0 for s in solvers(batch)))
    return lsp, step, batch


def test_collect_answers_every_valid_query_G_times_and_no_invalid_one(collected):
    lsp, step, batch = collected
    N, G, tokenizer = 32, 4, lsp.policy.tokenizer
    ch = challengers(batch)
    assert len(ch) == N  # one challenger sample per query
    assert [c.group for c in ch] == [f"{step}:{i}" for i in range(N)]
    assert [c.episode_id for c in ch] == [step * N + i for i in range(N)]
    assert len(batch.samples) == N + G * sum(c.info["valid"] for c in ch)
    for c in ch:
        assert tokenizer.decode(c.prompt_ids) == "Q:"
        assert len(c.response_ids) <= 2  # query_max_new_tokens: one character per slot
        written = tokenizer.decode(c.response_ids, skip_special_tokens=True)
        ok, reason, problem = (lsp.check(c.info["text"]) if lsp.fills_template(written)
                               else (False, "too short to fill the template", None))
        assert (c.info["valid"], c.info["reason"]) == (ok, reason)
        own = solvers(batch, c.group)
        if not ok:
            assert own == []  # no answers to an invalid (or held-out) query
            assert c.reward == -3.0  # invalid_query_reward
            continue
        assert len(own) == G
        assert not lsp.task.is_held_out(problem)
        for s in own:
            assert s.episode_id == c.episode_id and s.task == "arithmetic"
            assert tokenizer.decode(s.prompt_ids) == problem.text + "="  # the Solver sees `3+4=`
            assert len(s.response_ids) == len(s.logprobs) <= 2
            # the VerifiableReward, recomputed: 1 right, format_reward 0.2 for a wrong integer,
            # 0 for anything else; times reward_scale 2. LSP-Zero: R_Q = 0.
            grade = lsp.task.grade(problem, s.info["text"])
            R = 1.0 if grade.score == 1.0 else 0.2 if grade.well_formed else 0.0
            assert s.info["R"] == pytest.approx(2.0 * R)
            assert s.info["R_Q"] == 0.0 and s.info["reason"] == grade.reason
            assert s.reward == pytest.approx(2.0 * R + 0.0)  # R * reward_scale + R_Q * quality_scale
        # r_ch = -V(q) + V_Q(q), V_Q = 0
        assert c.reward == pytest.approx(-sum(s.info["R"] for s in own) / G)
    assert {s.group for s in solvers(batch)} <= {c.group for c in ch if c.info["valid"]}
    assert any(s.info["R"] > 0 for s in solvers(batch))  # the fixture's step has an answer worth 0.4 or 2


def test_collect_weights_make_L_sol_plus_alpha_ch_L_ch(collected):
    lsp, step, batch = collected
    B, N = len(batch.samples), 32
    sol, ch = solvers(batch), challengers(batch)
    n_solver = len(sol)
    assert n_solver + N == B
    # the learner averages over all B samples: (1/B) sum w l = mean over answers + alpha_ch * mean over queries
    assert all(s.weight == pytest.approx(B / n_solver) for s in sol)
    assert all(c.weight == pytest.approx(0.5 * B / N) for c in ch)
    assert sum(s.weight for s in sol) == pytest.approx(B)
    assert sum(c.weight for c in ch) == pytest.approx(0.5 * B)


def test_collect_metrics_describe_the_step(collected):
    lsp, step, batch = collected
    ch, sol = challengers(batch), solvers(batch)
    m = batch.metrics
    texts = [c.info["text"] for c in ch]
    assert m["lsp/valid_queries"] == pytest.approx(sum(c.info["valid"] for c in ch) / 32)
    assert m["lsp/query_length"] == pytest.approx(sum(map(len, texts)) / 32)
    assert m["lsp/distinct_queries"] == pytest.approx(len(set(texts)) / 32)
    assert m["lsp/solver_reward"] == pytest.approx(sum(s.info["R"] for s in sol) / len(sol))
    assert m["lsp/challenger_reward"] == pytest.approx(sum(c.reward for c in ch) / 32)
    assert m["lsp/judge_parse_failures"] == 0.0 and m["lsp/quality_reward"] == 0.0


def test_a_step_is_a_pure_function_of_seed_and_step(collected, policy, tmp_path):
    lsp, step, batch = collected
    again = build(policy, tmp_path, COLLECTED).collect(step)
    assert [(s.role, s.group, s.response_ids, s.reward) for s in again.samples] == \
           [(s.role, s.group, s.response_ids, s.reward) for s in batch.samples]
    other_seed = build(policy, tmp_path, seed=1).collect(step)
    assert [c.response_ids for c in challengers(other_seed)] != [c.response_ids for c in challengers(batch)]


# ---------------------------------------------------------------- 4. the Challenger's reward, by hand

ANSWERS = dict(R=[1.0, 0.0, 0.0, 1.0], R_Q=[0.5, 0.5, 0.0, 0.0], text=["7", "7", "7", "3"])


def answers(R, R_Q, text):
    return [solver("0:0", r, q, t) for r, q, t in zip(R, R_Q, text)]


def test_challenger_reward_lsp_is_minus_V_plus_V_Q(policy, tmp_path):
    lsp = build(policy, tmp_path)
    assert lsp.cfg.challenger_reward == "lsp"
    # V = mean(1, 0, 0, 1) = 0.5; V_Q = mean(0.5, 0.5, 0, 0) = 0.25; -0.5 + 0.25 = -0.25
    assert lsp.challenger_reward(answers(**ANSWERS), valid=True) == pytest.approx(-0.25)
    # LSP-Zero's zero-sum reward: R_Q = 0 -> -V = -0.5
    assert lsp.challenger_reward(answers(ANSWERS["R"], [0.0] * 4, ANSWERS["text"]), True) == pytest.approx(-0.5)
    assert lsp.challenger_reward(answers(**ANSWERS), valid=False) == -2.0  # invalid_query_reward
    assert lsp.challenger_reward([], valid=False) == -2.0


def test_a_held_out_query_may_be_paid_apart_from_an_invalid_one(policy, tmp_path):
    default = build(policy, tmp_path)
    roaming = build(policy, tmp_path, ["recipe.held_out_query_reward=-1"])
    assert default.challenger_reward([], valid=False, held_out=True) == -2.0  # None: invalid_query_reward
    assert roaming.challenger_reward([], valid=False, held_out=True) == -1.0
    assert roaming.challenger_reward([], valid=False) == -2.0  # a malformed query still pays -2
    # collect: the first step where the random Challenger writes a held-out sum (2+5, ...), paid -1
    for step in range(400):
        batch = roaming.collect(step)
        held_out = [c for c in challengers(batch) if c.info["reason"] == HELD_OUT]
        if held_out:
            break
    else:
        pytest.fail("the random Challenger wrote no held-out sum")
    assert all(c.reward == -1.0 and not c.info["valid"] and solvers(batch, c.group) == [] for c in held_out)
    assert all(c.reward == -2.0 for c in challengers(batch) if not c.info["valid"] and c not in held_out)
    assert batch.metrics["lsp/held_out_queries"] == len(held_out) / len(challengers(batch))
    assert [c.reward for c in challengers(default.collect(step)) if c.info["text"] in
            {h.info["text"] for h in held_out}] == [-2.0] * len(held_out)


def test_slot_credit_pays_a_malformed_query_for_each_slot_it_filled_right(policy, tmp_path):
    """Template `{}+{}` (SMALL): training sums have a digit in both slots. Credit 0.6: `3a` fills
    one slot of two right (0.3), `ab` none, `7` (too short) one (0.3), `34` both (0.6)."""
    lsp = build(policy, tmp_path, ["recipe.invalid_slot_credit=0.6"])
    assert lsp.slot_characters == [set("0123456789")] * 2
    assert [lsp.slot_credit(w) for w in ("3a", "ab", "7", "34", "")] == pytest.approx([0.3, 0.0, 0.3, 0.6, 0.0])
    assert build(policy, tmp_path).slot_credit("3a") == 0.0  # off by default
    # collect: a malformed query is paid -2 + its credit; valid and held-out queries get none
    plain = build(policy, tmp_path)
    for step in range(400):
        a, b = challengers(plain.collect(step)), challengers(lsp.collect(step))
        if any(c.info["reason"] == HELD_OUT for c in a) and any(c.info["valid"] for c in a):
            break
    else:
        pytest.fail("the random Challenger wrote no held-out and no valid sum")
    for before, after in zip(a, b):
        assert before.info["text"] == after.info["text"]  # the same queries: the credit changes no sampling
        text = before.info["text"]
        if before.info["valid"] or before.info["reason"] == HELD_OUT:
            assert after.reward == pytest.approx(before.reward)
        else:  # `3+a` was written `3a`; a text too short for the template is as written
            written = text[0] + text[2] if len(text) == 3 and text[1] == "+" else text
            assert after.reward == pytest.approx(before.reward + 0.3 * sum(c in "0123456789" for c in written[:2]))
    assert any(after.reward > before.reward for before, after in zip(a, b))


def test_challenger_reward_rzero_peaks_at_half_agreement(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.challenger_reward=rzero"])
    # the majority "7" holds 3 of 4 answers: p = 0.75, 1 - 2|0.75 - 0.5| = 0.5; + V_Q 0.25 = 0.75
    assert lsp.challenger_reward(answers(**ANSWERS), True) == pytest.approx(0.75)
    # answers compared stripped: " 7", "7 ", "3", "3" split half and half: p = 0.5 -> 1; + V_Q 0
    split = answers([0.0] * 4, [0.0] * 4, [" 7", "7 ", "3", "3"])
    assert lsp.challenger_reward(split, True) == pytest.approx(1.0)
    unanimous = answers([1.0] * 4, [0.0] * 4, ["7"] * 4)  # p = 1 -> 0
    assert lsp.challenger_reward(unanimous, True) == pytest.approx(0.0)
    assert lsp.challenger_reward(answers(**ANSWERS), False) == -2.0


def test_challenger_reward_uncertainty_peaks_at_half_solved(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.challenger_reward=uncertainty"])
    # two of four solved: s = 0.5 -> 1 - 2|0.5 - 0.5| = 1; + V_Q 0.25 = 1.25 (rzero reads the
    # majority "7", 3 of 4, from the same answers: 0.75)
    assert lsp.challenger_reward(answers(**ANSWERS), True) == pytest.approx(1.25)
    one = answers([1.0, 0.2, 0.2, 0.2], [0.0] * 4, ["7", "1", "2", "3"])  # s = 0.25 -> 0.5
    assert lsp.challenger_reward(one, True) == pytest.approx(0.5)
    # four wrong integers paid the preset's format reward: s = 0 -> 0, a blind spot pays nothing
    assert lsp.challenger_reward(answers([0.2] * 4, [0.0] * 4, ["1", "2", "3", "4"]), True) == pytest.approx(0.0)
    assert lsp.challenger_reward(answers([1.0] * 4, [0.0] * 4, ["7"] * 4), True) == pytest.approx(0.0)
    assert lsp.challenger_reward(answers(**ANSWERS), False) == -2.0
    # -V(q) (+ V_Q) before step 100, uncertainty from it
    late = build(policy, tmp_path, ["recipe.challenger_reward_late=uncertainty",
                                    "recipe.challenger_reward_late_from=100"])
    assert late.challenger_reward(one, True, step=99) == pytest.approx(-0.4)  # V = mean(1, .2, .2, .2)
    assert late.challenger_reward(one, True, step=100) == pytest.approx(0.5)
    assert late.challenger_reward(answers(**ANSWERS), False, step=100) == -2.0


def test_the_late_challenger_reward_takes_over_in_collect_at_its_step(policy, tmp_path):
    plain = build(policy, tmp_path)
    # a step with a valid query some answer is paid for (there -V(q) and uncertainty differ)
    step, before = mixed_step(plain, steps=range(1, 400),
                              also=lambda batch: any(a.info["R"] > 0 for a in solvers(batch)))
    late = build(policy, tmp_path, ["recipe.challenger_reward_late=uncertainty",
                                    f"recipe.challenger_reward_late_from={step}"])
    after = late.collect(step)
    assert [c.info["text"] for c in challengers(after)] == [c.info["text"] for c in challengers(before)]
    for old, new in zip(challengers(before), challengers(after)):
        if not old.info["valid"]:
            assert new.reward == old.reward  # -2 less the repetition penalty, either way
            continue
        own = solvers(after, new.group)
        s = sum(a.info["solved"] for a in own) / len(own)
        V = sum(a.info["R"] for a in own) / len(own)
        # the same repetition penalty on both: the difference is the reward itself
        assert new.reward - old.reward == pytest.approx((1 - 2 * abs(s - 0.5)) - (-V))
    # the step before the switch pays -V(q), as the plain recipe does
    assert [c.reward for c in challengers(late.collect(step - 1))] == \
        [c.reward for c in challengers(plain.collect(step - 1))]


def test_challenger_reward_greedy_is_minus_the_greedy_answers_R(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.challenger_reward=greedy"])
    # the sampled answers (V = 0.5) do not enter: -R of the greedy answer, + V_Q 0.25
    assert lsp.challenger_reward(answers(**ANSWERS), True, greedy=1.0) == pytest.approx(-0.75)
    assert lsp.challenger_reward(answers(**ANSWERS), True, greedy=0.2) == pytest.approx(0.05)  # wrong, well formed
    assert lsp.challenger_reward(answers(**ANSWERS), False) == -2.0


def test_the_greedy_reward_grades_the_solvers_greedy_answer_to_each_valid_query(policy, tmp_path):
    plain = build(policy, tmp_path)
    # a step with a valid query some sampled answer is paid for (there -V(q) is not 0)
    step, before = mixed_step(plain, steps=range(1, 400),
                              also=lambda batch: any(a.info["R"] > 0 for a in solvers(batch)))
    lsp = build(policy, tmp_path, ["recipe.challenger_reward=greedy"])
    after = lsp.collect(step)
    assert [s.response_ids for s in after.samples] == [s.response_ids for s in before.samples]  # the same step
    valid = [c for c in challengers(after) if c.info["valid"]]
    # the Solver's greedy answers to the valid queries, generated and graded here by the family itself
    problems = [lsp.task.check_query(c.info["text"]).problem for c in valid]
    greedy = policy.generator.generate([lsp.task_prompt_ids(p) for p in problems], lsp.context.eval_sampling)
    for c, problem, answer in zip(valid, problems, greedy):
        grade = lsp.task.grade(problem, answer.text)
        R = 1.0 if grade.score == 1.0 else lsp.cfg.format_reward if grade.well_formed else 0.0
        assert c.reward == pytest.approx(-R)  # no repetition penalty in these tests
    for old, new in zip(challengers(before), challengers(after)):
        if not old.info["valid"]:
            assert new.reward == old.reward == -2.0
    assert [c.reward for c in challengers(after)] != [c.reward for c in challengers(before)]  # not -V(q)
    # no greedy answers are generated for the other rewards
    assert plain.greedy_rewards(step, ["3+4"], [lsp.task_prompt_ids(problems[0])]) == {}
    # a query asked twice is answered once
    generate, asked = policy.generator.generate, []
    policy.generator.generate = lambda prompts, *args, **kw: asked.append(len(prompts)) or generate(prompts, *args, **kw)
    try:
        ids = {q: lsp.prompt_ids(q + "=") for q in ("3+4", "5+1")}
        rewards = lsp.greedy_rewards(step, ["3+4", "5+1", "3+4"], [ids["3+4"], ids["5+1"], ids["3+4"]])
    finally:
        policy.generator.generate = generate
    assert asked == [2] and set(rewards) == {"3+4", "5+1"}


def test_challenger_reward_learnability_pays_for_sometimes_solved(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.challenger_reward=learnability", "recipe.format_reward=0"])
    # s = 0.5 -> 1 - 0.5 = 0.5; + V_Q 0.25 = 0.75
    assert lsp.challenger_reward(answers(**ANSWERS), True) == pytest.approx(0.75)
    never = answers([0.0] * 4, [0.5] * 4, ["1"] * 4)  # s = 0 -> 0; + V_Q 0.5
    always = answers([1.0] * 4, [0.0] * 4, ["7"] * 4)  # s = 1 -> 0
    assert lsp.challenger_reward(never, True) == pytest.approx(0.5)
    assert lsp.challenger_reward(always, True) == pytest.approx(0.0)
    # with reward_scale 2, R is 2 for a right answer: s = mean(R) / 2 = 0.25 -> 0.75
    scaled = build(policy, tmp_path, ["recipe.challenger_reward=learnability", "recipe.format_reward=0",
                                      "recipe.reward_scale=2", "recipe.invalid_query_reward=-5"])
    assert scaled.challenger_reward(answers([2.0, 0.0, 0.0, 0.0], [0.0] * 4, ["7"] * 4), True) == \
        pytest.approx(0.75)
    assert scaled.challenger_reward([], False) == -5.0


def test_the_reward_scale_enters_V_and_the_quality_scale_is_already_in_R_Q(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.reward_scale=2"])
    # info R holds R * reward_scale: [2, 0, 0, 2] -> V = 1; V_Q = 0.25: -1 + 0.25
    assert lsp.challenger_reward(answers([2.0, 0.0, 0.0, 2.0], ANSWERS["R_Q"], ANSWERS["text"]), True) == \
        pytest.approx(-0.75)


def test_learnability_solve_rate_ignores_the_format_reward(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.challenger_reward=learnability"])
    assert lsp.cfg.format_reward == 0.2  # the preset's
    # four wrong integers: R = 0.2 each (format reward), solve rate 0 -> never solved -> 0
    wrong = answers([0.2] * 4, [0.0] * 4, ["1", "2", "3", "4"])
    assert lsp.challenger_reward(wrong, True) == pytest.approx(0.0)  # not 1 - 0.2: a format reward is no solve


# ---------------------------------------------------------------- 5. advantages

def test_advantages_by_hand(policy, tmp_path):
    lsp = build(policy, tmp_path)
    samples = [solver("0:0", r) for r in (1.0, 0.0, 0.0, 1.0)] + [solver("0:1", r) for r in (0.2, 0.2, 1.0, 0.2)] \
        + [challenger("0:0", -0.5), challenger("0:1", -0.4), challenger("0:2", -2.0)]
    trained = lsp.advantages(Batch(samples))
    assert trained == samples  # every sample is trained on
    # A_sol = R - V(q): V = 0.5 and 0.4; A_ch = r_ch - mean(-0.5, -0.4, -2) = r_ch + 0.9666...
    expected = [0.5, -0.5, -0.5, 0.5, -0.2, -0.2, 0.6, -0.2, -0.5 + 2.9 / 3, -0.4 + 2.9 / 3, -2.0 + 2.9 / 3]
    assert [s.advantage for s in trained] == pytest.approx(expected)


def test_advantages_on_a_collected_batch(collected):
    lsp, step, batch = collected
    batch = copy.deepcopy(batch)
    trained = lsp.advantages(batch)
    assert len(trained) == len(batch.samples)
    ch = challengers(batch)
    mean_r_ch = sum(c.reward for c in ch) / len(ch)
    for s in trained:
        if s.role == SOLVER:
            group = solvers(batch, s.group)
            assert s.advantage == pytest.approx(s.reward - sum(g.reward for g in group) / len(group))
        else:
            assert s.advantage == pytest.approx(s.reward - mean_r_ch)
    assert sum(c.advantage for c in ch) == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- 6. step metrics, by hand

def test_looks_like_code():
    assert looks_like_code("```python\nprint(7)\n```")
    assert looks_like_code("def f(): return 7")
    assert looks_like_code("import os")
    assert not looks_like_code("7")
    assert not looks_like_code("define seven")


def test_step_metrics_by_hand(policy, tmp_path):
    queries = ["1+2", "1+2", "a+b", "8+7"]
    p = build(policy, tmp_path).check("1+2")[2]
    assert build(policy, tmp_path).check("8+7") == (False, HELD_OUT, None) and HELD_OUT == \
        "a held-out problem (kept for evaluation)"
    checks = [(True, "ok", p), (True, "ok", p), (False, "unexpected character 'a' at position 0", None),
              (False, HELD_OUT, None)]
    samples = [solver("0:0", 1.0, 0.5, "```python", parsed=True, length=2),
               solver("0:0", 0.0, 0.0, "def f", parsed=False, length=4),
               solver("0:1", 0.2, 0.0, "import os", parsed=False, length=2),
               solver("0:1", 1.0, 1.0, "3", parsed=True, length=0),
               challenger("0:0", -0.6), challenger("0:1", 0.1), challenger("0:2", -2.0), challenger("0:3", -2.5)]
    expected = {
        "lsp/valid_queries": 2 / 4,
        "lsp/held_out_queries": 1 / 4,  # 8+7; a+b is no sum
        "lsp/query_length": 3.0,  # (3 + 3 + 3 + 3) / 4
        "lsp/distinct_queries": 3 / 4,
        "lsp/solver_reward": 0.55,  # (1 + 0 + 0.2 + 1) / 4
        "lsp/solver_accuracy": 0.5,  # R = 1 twice in 4; the format reward 0.2 is no solve
        "lsp/quality_reward": 0.375,  # (0.5 + 0 + 0 + 1) / 4
        "lsp/code_answers": 0.75,  # ```, def, import; not "3"
        "lsp/challenger_reward": -5 / 4,  # (-0.6 + 0.1 - 2 - 2.5) / 4
        "lsp/answer_length": 2.0,  # (2 + 4 + 2 + 0) / 4
    }
    zero = build(policy, tmp_path).step_metrics(samples, queries, checks)
    assert zero == pytest.approx({**expected, "lsp/judge_parse_failures": 0.0})  # LSP-Zero: no judge
    with_judge = build(policy, tmp_path, ["recipe.quality=true"]).step_metrics(samples, queries, checks)
    assert with_judge == pytest.approx({**expected, "lsp/judge_parse_failures": 0.5})  # 2 of 4 unparsed


# ---------------------------------------------------------------- 7. evaluation

def test_evaluate_reports_held_out_accuracy_and_transcripts(policy, tmp_path):
    lsp = build(policy, tmp_path)
    result = lsp.evaluate(step=4)
    m = result.metrics
    assert set(m) == {"eval/arithmetic/accuracy", "eval/arithmetic/well_formed", "eval/arithmetic/response_length",
                      "eval/lsp/fresh_valid", "eval/lsp/uniform_accuracy", "eval/lsp/held_out_sampled_accuracy",
                      "eval/lsp/uniform_sampled_accuracy"}  # the random Challenger's 32 fresh queries are all invalid
    assert m["eval/lsp/fresh_valid"] == 0.0
    assert 0.0 <= m["eval/arithmetic/accuracy"] <= m["eval/arithmetic/well_formed"] <= 1.0
    assert 0.0 <= m["eval/arithmetic/response_length"] <= 2.0
    assert len(lsp.held_out) == 16 and all(lsp.task.is_held_out(p) for p in lsp.held_out)
    assert len(result.transcripts) == 4  # eval_transcripts
    assert [t["prompt"] for t in result.transcripts] == [p.text + "=" for p in lsp.held_out[:4]]
    for t, p in zip(result.transcripts, lsp.held_out):
        grade = lsp.task.grade(p, t["response"])
        assert (t["step"], t["answer"], t["score"], t["reason"]) == (4, p.answer, grade.score, grade.reason)
    assert lsp.evaluate(step=4) == result  # greedy: the same answers again
    greedy_only = build(policy, tmp_path, ["recipe.eval_sampled=false"]).evaluate(step=4).metrics
    assert greedy_only == {k: v for k, v in m.items() if "_sampled_" not in k}  # no sampled answers drawn


def test_fresh_query_accuracy_grades_the_challengers_valid_queries_greedily(policy, tmp_path):
    lsp = build(policy, tmp_path)
    step = next(step for step in range(100) if lsp.fresh_query_accuracy(step)["eval/lsp/fresh_valid"] > 0)
    fresh = lsp.fresh_query_accuracy(step)
    # by hand: the same N queries (the evaluation seed), the valid ones answered greedily
    seed = lsp.context.seed * 7_927 + step  # derive_seed(seed, step, "evaluation")
    queries = policy.eval_generator.generate([lsp.challenger_prompt] * 32, lsp.context.sampling, seed=seed)
    # a text of fewer than the template's two characters is refused, as in collect
    problems = [c[2] for c in (lsp.check(lsp.query_text(q.text)) for q in queries if len(q.text) >= 2) if c[0]]
    assert problems and fresh["eval/lsp/fresh_valid"] == len(problems) / 32
    answers = [policy.eval_generator.generate([lsp.prompt_ids(p.text + "=")], lsp.context.eval_sampling)[0].text
               for p in problems]
    assert fresh["eval/lsp/fresh_accuracy"] == sum(a.strip() == p.answer for a, p in zip(answers, problems)) / len(problems)
    # the yardstick: 32 training sums drawn uniformly with the same seed, answered the same way
    rng = random.Random(seed)
    uniform = [lsp.task.sample(rng) for _ in range(32)]
    assert not any(lsp.task.is_held_out(p) for p in uniform)
    answers = policy.eval_generator.generate([lsp.prompt_ids(p.text + "=") for p in uniform], lsp.context.eval_sampling)
    assert fresh["eval/lsp/uniform_accuracy"] == sum(a.text.strip() == p.answer for a, p in zip(answers, uniform)) / 32
    # sampled as in training: G = 3 answers each at temperature 1, their mean accuracy V(q)
    for key, group in (("fresh", problems), ("uniform", uniform), ("held_out", lsp.held_out)):
        repeated = [p for p in group for _ in range(3)]
        answers = policy.eval_generator.generate([lsp.prompt_ids(p.text + "=") for p in repeated], lsp.context.sampling,
                                                 seed=seed)
        assert fresh[f"eval/lsp/{key}_sampled_accuracy"] == \
            sum(a.text.strip() == p.answer for a, p in zip(answers, repeated)) / len(repeated)
        assert any(len({a.text for a in answers[i:i + 3]}) > 1 for i in range(0, len(answers), 3))  # not greedy
    # (a random Solver answers almost nothing, greedy or sampled: how the answers are drawn is checked here)
    generate, drawn = policy.eval_generator.generate, []
    policy.eval_generator.generate = lambda prompts, sampling, **kw: \
        drawn.append((len(prompts), sampling.temperature)) or generate(prompts, sampling, **kw)
    try:
        lsp.sampled_accuracy(lsp.held_out, seed)
    finally:
        policy.eval_generator.generate = generate
    assert drawn == [(16 * 3, 1.0)]
    # an evaluation whose Challenger stops after one digit, which the family reads as a problem: refused
    def short_problems(step):
        queries = policy.eval_generator.generate([lsp.challenger_prompt] * 32, lsp.context.sampling,
                                                 seed=lsp.context.seed * 7_927 + step)
        return sum(len(q.text) == 1 and lsp.task.check_query(q.text).problem is not None for q in queries)
    step = next(step for step in range(200) if short_problems(step))
    queries = policy.eval_generator.generate([lsp.challenger_prompt] * 32, lsp.context.sampling,
                                             seed=lsp.context.seed * 7_927 + step)
    valid = sum(len(q.text) >= 2 and lsp.check(lsp.query_text(q.text))[0] for q in queries)
    assert lsp.fresh_query_accuracy(step)["eval/lsp/fresh_valid"] == valid / 32
    # a template no one-digit sum can fill ("34+5"): no valid query, no accuracy on fresh queries
    never = build(policy, tmp_path, ['recipe.compact_template="{}{}+{}"', "recipe.query_max_new_tokens=3"])
    assert set(never.fresh_query_accuracy(step=4)) == {"eval/lsp/fresh_valid", "eval/lsp/uniform_accuracy",
                                                       "eval/lsp/held_out_sampled_accuracy",
                                                       "eval/lsp/uniform_sampled_accuracy"}
    assert never.fresh_query_accuracy(step=4)["eval/lsp/fresh_valid"] == 0.0


def test_transcripts_show_the_last_steps_queries_with_their_answers_and_rewards(collected, policy, tmp_path):
    lsp, step, batch = collected
    lsp.collect(step)  # the fixture's step again (seeded: the same batch), as the step before an evaluation
    rows = lsp.evaluate(step + 1).transcripts[:4]  # eval_transcripts = 4
    queries = challengers(batch)[:4]
    assert [(r["step"], r["role"], r["query"], r["challenger_reward"]) for r in rows] == \
           [(step + 1, CHALLENGER, q.info["text"], round(q.reward, 4)) for q in queries]
    for row, query in zip(rows, queries):
        answers = solvers(batch, query.group)  # an invalid query has none
        assert [(a["answer"], a["R"]) for a in row["answers"]] == [(s.info["text"], round(s.info["R"], 4)) for s in answers]
        assert len(row["answers"]) in (0, 4) and (len(row["answers"]) == 4) == query.info["valid"]


def test_evaluate_without_a_verifiable_reward_is_empty(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.reward=judge", "recipe.quality=false"])
    result = lsp.evaluate(step=4)
    assert result.metrics == {} and result.transcripts == []


# ---------------------------------------------------------------- 8. state: save and load

def test_lsp_zero_saves_a_trivial_state_and_a_fresh_recipe_continues_the_same(collected, policy, tmp_path):
    lsp, step, batch = collected
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    lsp.save(folder)
    assert json.loads((folder / "lsp.json").read_text()) == {"reward": {}, "judge": None, "asked": {}, "replayable": []}
    fresh = build(new_policy(), tmp_path, COLLECTED)
    fresh.load(folder)
    a, b = lsp.collect(step), fresh.collect(step)
    assert [(s.role, s.info["text"], s.reward, s.weight) for s in a.samples] == \
           [(s.role, s.info["text"], s.reward, s.weight) for s in b.samples]
    assert a.metrics == b.metrics


def short_judge(recipe):
    """The recipe's judge generates 512 greedy tokens (no option sets its sampling): far too slow
    for a test on the CPU. Sampling 4 tokens at temperature 1 makes each call's seed count."""
    recipe.judge.chat.sampling = SamplingParams(temperature=1.0, max_new_tokens=4)
    return recipe


def test_lsp_with_the_quality_judge_keeps_its_call_count_across_save_and_load(policy, tmp_path):
    quality = ["recipe.quality=true", "recipe.answers_per_query=2"]
    # the steps with a valid query (the judge is called only then); queries do not depend on the judge
    plain = build(policy, tmp_path, ["recipe.answers_per_query=2"])
    first, _ = mixed_step(plain)
    second, _ = mixed_step(plain, range(first + 1, first + 60))

    lsp = short_judge(build(policy, tmp_path, quality))
    assert lsp.judge is not None and lsp.judge.state_dict() == {"calls": 0}
    batch = lsp.collect(first)
    assert lsp.judge.state_dict() == {"calls": 1}  # one batched call per step
    sol = solvers(batch)
    assert sol and len(lsp.judge.last_replies) == len(sol)
    for s in sol:  # the random reference model writes no score tag: R_Q = 0, unparsed
        assert s.info["R_Q"] == 0.0 and s.info["judge_parsed"] is False
        assert s.reward == pytest.approx(s.info["R"] + s.info["R_Q"])
    assert batch.metrics["lsp/judge_parse_failures"] == 1.0

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    lsp.save(folder)
    assert json.loads((folder / "lsp.json").read_text()) == {"reward": {}, "judge": {"calls": 1}, "asked": {},
                                                              "replayable": []}
    resumed = short_judge(build(new_policy(), tmp_path, quality))
    resumed.load(folder)
    assert resumed.judge.state_dict() == {"calls": 1}

    a, b = lsp.collect(second), resumed.collect(second)
    assert [(s.role, s.info["text"], s.reward) for s in a.samples] == \
           [(s.role, s.info["text"], s.reward) for s in b.samples]
    assert [r.text for r in lsp.judge.last_replies] == [r.text for r in resumed.judge.last_replies]
    assert lsp.judge.state_dict() == resumed.judge.state_dict() == {"calls": 2}
    # without the load, the judge would sample its second call with the first call's seed
    not_loaded = short_judge(build(policy, tmp_path, quality))
    not_loaded.collect(second)
    assert [r.text for r in not_loaded.judge.last_replies] != [r.text for r in lsp.judge.last_replies]


# ---------------------------------------------------------------- 9. config errors

def test_the_preset_loads_as_lsp_zero():
    cfg = load_config(PRESET)
    assert isinstance(cfg.recipe, Config) and cfg.recipe.name == "lsp"
    assert (cfg.recipe.quality, cfg.recipe.reward, cfg.recipe.challenger_reward) == (False, "verifiable", "lsp")
    # the template has a slot per operand, one character each, and the Challenger writes that many
    slots = cfg.recipe.compact_template.count("{}")
    assert slots == cfg.recipe.task_options["terms"] == cfg.recipe.query_max_new_tokens
    assert Config().quality is True and Config().invalid_query_reward == -2.0


@pytest.mark.parametrize("overrides, message", [
    (["recipe.reward=foo"], r"recipe\.reward: unknown reward source 'foo'; available: verifiable, "
                            r"reward_model:PATH_OR_ID, judge, judge:openai:MODEL"),
    (["recipe.quality_judge=bar"], r"recipe\.quality_judge: unknown reward source 'bar'"),
    (["recipe.challenger_reward=learnability", "recipe.reward=judge"],
     r"recipe\.challenger_reward=learnability needs a solve rate: use recipe\.reward=verifiable"),
    (["recipe.challenger_reward=learnability", "recipe.reward=reward_model:some/model"],
     r"recipe\.challenger_reward=learnability needs a solve rate"),
    (["recipe.challenger_reward=uncertainty", "recipe.reward=judge"],
     r"recipe\.challenger_reward=uncertainty needs a solve rate: use recipe\.reward=verifiable"),
    (["recipe.challenger_reward_late=learnability", "recipe.reward=judge"],
     r"recipe\.challenger_reward_late=learnability needs a solve rate"),
    (["recipe.challenger_reward=sqlm"], r"challenger_reward"),
    (["recipe.task=sums"], r"unknown task 'sums'; available: arithmetic"),
    (["recipe.answers_per_query=1"], r"answers_per_query"),
    (["recipe.repetition_penalty_final=1"], r"recipe\.repetition_penalty_final needs recipe\.repetition_penalty_steps > 0"),
    (["recipe.alpha_ch_final=2"], r"recipe\.alpha_ch_final needs recipe\.alpha_ch_steps > 0"),
    (["recipe.novelty_decay=0"], r"recipe\.novelty_decay"),
    (["recipe.novelty_bonus=-1"], r"recipe\.novelty_bonus"),
    (["recipe.compact_min_slots=4"], r"recipe\.compact_min_slots \(4\) is more than the 3 slots of recipe\.compact_template"),
    (["recipe.compact_min_slots=0"], r"recipe\.compact_min_slots"),
    (["recipe.task_options.min_terms=4"], r"min_terms must be in 2\.\.terms \(3\), got 4"),
    (["recipe.challenger_probes=8", "recipe.style=chat"],
     r"recipe\.challenger_probes needs style=compact, a compact_template with slots and reward=verifiable"),
    (["recipe.challenger_probes=-1"], r"recipe\.challenger_probes"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):  # the preset's probes off: they need reward=verifiable
        load_config(PRESET, ["recipe.challenger_probes=0", *overrides])


# ---------------------------------------------------------------- the Challenger's probes

def test_unfill_reads_back_the_characters_of_the_slots():
    assert _unfill("{}+{}+{}", "3+4+5") == "345"
    assert _unfill("{}{}+{}", "56+7") == "567"
    assert _fill("{}+{}", _unfill("{}+{}", "9+0")) == "9+0"
    assert _unfill("{}+{}+{}+{}", "3+4") == "34"  # the template cut after two slots, as _fill cuts it
    with pytest.raises(ValueError, match=r"'3\+45' does not fit the template '\{\}\+\{\}'"):
        _unfill("{}+{}", "3+45")


def test_probes_or_slot_credit_of_a_family_that_does_not_fit_the_template_are_a_config_error(policy, tmp_path):
    with pytest.raises(ConfigError, match=r"recipe\.challenger_probes: '[\d+]+' does not fit the template"):
        build(policy, tmp_path, ["recipe.challenger_probes=4", "recipe.task_options.digits=2"])
    with pytest.raises(ConfigError, match=r"recipe\.invalid_slot_credit: '[\d+]+' does not fit the template"):
        build(policy, tmp_path, ["recipe.invalid_slot_credit=0.5", "recipe.task_options.digits=2"])


def beside_plain(policy, tmp_path, extra, common=(), also=lambda batch: True):
    """A mixed step (`mixed_step`) of the recipe with the `extra` overrides, and the same step without
    them: (plain recipe, recipe, step, batch, plain batch, the samples the extras add). The step's own
    samples are the same either way; the extras come after them."""
    plain, lsp = build(policy, tmp_path, common), build(policy, tmp_path, [*common, *extra])
    step, batch = mixed_step(lsp, also=also)
    before = plain.collect(step)
    own = batch.samples[:len(before.samples)]
    assert [(s.response_ids, s.reward) for s in own] == [(s.response_ids, s.reward) for s in before.samples]
    return plain, lsp, step, batch, before, batch.samples[len(before.samples):]


def test_challenger_probes_are_training_sums_paid_minus_V_against_their_own_mean(policy, tmp_path):
    # a step with valid and invalid queries whose probes are not all paid alike (the random Solver
    # rarely writes a number: R = 0.2 of one answer in three pays -0.067)
    plain, lsp, step, batch, before, probes = beside_plain(
        policy, tmp_path, ["recipe.challenger_probes=16"],
        also=lambda b: len({s.reward for s in b.samples if s.info.get("probe")}) > 1)
    own = batch.samples[:len(before.samples)]
    assert len(probes) == 16 and all(p.role == CHALLENGER and p.info["probe"] for p in probes)
    # alpha_ch 1, N = 32: L_ch the mean over the step's own queries, each probe weighing as one of them
    weight = len(batch.samples) / 32
    assert all(c.weight == pytest.approx(weight) for c in challengers(batch))
    G, rng = 3, random.Random(derive_seed(0, step, "prompts"))
    problems = [lsp.task.sample(rng) for _ in range(16)]
    answers = policy.generator.generate([lsp.task_prompt_ids(p) for p in problems for _ in range(G)],
                                        lsp.context.sampling, seed=rng.randrange(2**31))
    for j, (probe, problem) in enumerate(zip(probes, problems)):
        assert probe.info["text"] == problem.text and not lsp.task.is_held_out(problem)
        # written as the Challenger writes it: the template's slots, one digit each; no sampler log-probs
        assert policy.tokenizer.decode(probe.response_ids) == problem.text.replace("+", "")
        assert probe.prompt_ids == lsp.challenger_prompt and probe.logprobs == []
        grades = [lsp.task.grade(problem, a.text) for a in answers[j * G:(j + 1) * G]]
        R = [1.0 if g.score == 1.0 else 0.2 if g.well_formed else 0.0 for g in grades]  # the preset's format reward
        assert probe.reward == pytest.approx(-sum(R) / G)
    assert batch.metrics["lsp/probe_solver_reward"] == pytest.approx(-sum(p.reward for p in probes) / 16)
    # the Solver does not train on its answers to them: the step's Solver samples are the same, and
    # still weigh as L_sol, the mean over them (the learner divides by the whole batch's size)
    assert len(solvers(batch)) == len(solvers(before))
    assert sum(s.weight for s in solvers(batch)) == pytest.approx(len(batch.samples))
    # A_ch of a probe against the probes' mean; the step's own samples against theirs, as without probes
    lsp.advantages(batch)
    plain.advantages(before)
    mean = sum(p.reward for p in probes) / 16
    assert [p.advantage for p in probes] == pytest.approx([p.reward - mean for p in probes])
    assert [s.advantage for s in own] == pytest.approx([s.advantage for s in before.samples])


def test_challenger_candidates_are_its_own_queries_paid_minus_the_greedy_answer(policy, tmp_path):
    # a step whose candidates are some valid and some not
    plain, lsp, step, batch, before, candidates = beside_plain(
        policy, tmp_path, ["recipe.challenger_candidates=48"], common=["recipe.repetition_penalty=0.5"],
        also=lambda b: len({s.info["valid"] for s in b.samples if s.info.get("candidate")}) > 1)
    own = batch.samples[:len(before.samples)]
    assert len(candidates) == 48 and all(c.role == CHALLENGER and c.info["candidate"] for c in candidates)
    # sampled as the Challenger's own queries, from their own seed, with the sampler's log-probs
    rng = random.Random(derive_seed(0, step, "candidates"))
    queries = policy.generator.generate([lsp.challenger_prompt] * 48, lsp.query_sampling, seed=rng.randrange(2**31))
    assert [c.response_ids for c in candidates] == [q.response_ids for q in queries]
    assert [c.logprobs for c in candidates] == [q.logprobs for q in queries]
    # a valid one pays -R of the Solver's greedy answer, a malformed one -2; each less 0.5 x its share
    # of the 48
    valid = [c for c in candidates if c.info["valid"]]
    problems = [lsp.task.check_query(c.info["text"]).problem for c in valid]
    answers = policy.generator.generate([lsp.task_prompt_ids(p) for p in problems], lsp.context.eval_sampling)
    R = {c.info["text"]: 1.0 if g.score == 1.0 else 0.2 if g.well_formed else 0.0
         for c, g in zip(valid, (lsp.task.grade(p, a.text) for p, a in zip(problems, answers)))}
    texts = [c.info["text"] for c in candidates]
    for c in candidates:
        paid = -R[c.info["text"]] if c.info["valid"] else -2.0
        assert c.reward == pytest.approx(paid - 0.5 * texts.count(c.info["text"]) / 48)
    assert batch.metrics["lsp/candidate_valid"] == pytest.approx(len(valid) / 48)
    assert batch.metrics["lsp/candidate_solver_accuracy"] == pytest.approx(
        sum(R[c.info["text"]] == 1.0 for c in valid) / len(valid))
    # together they weigh half as much as the step's N = 32 own queries (alpha_ch 1, the preset's
    # candidate_weight 0.5); the Solver's samples are the same and still weigh as L_sol
    size = len(batch.samples)
    assert all(c.weight == pytest.approx(0.5 * size / 48) for c in candidates)
    assert all(c.weight == pytest.approx(size / 32) for c in challengers(batch) if not c.info.get("candidate"))
    assert len(solvers(batch)) == len(solvers(before))
    assert sum(s.weight for s in solvers(batch)) == pytest.approx(size)
    # A_ch of a candidate against the candidates' mean; the step's own samples as without them
    lsp.advantages(batch)
    plain.advantages(before)
    mean = sum(c.reward for c in candidates) / 48
    assert [c.advantage for c in candidates] == pytest.approx([c.reward - mean for c in candidates])
    assert [s.advantage for s in own] == pytest.approx([s.advantage for s in before.samples])


def test_candidates_start_at_their_step_and_weigh_their_share_of_the_own_queries(policy, tmp_path):
    plain = build(policy, tmp_path)
    lsp = build(policy, tmp_path, ["recipe.challenger_candidates=48", "recipe.candidate_weight=0.25",
                                   "recipe.candidates_from=3"])
    for step in range(5):
        before, batch = plain.collect(step), lsp.collect(step)
        candidates = [c for c in challengers(batch) if c.info.get("candidate")]
        own = batch.samples[:len(before.samples)]
        assert [(s.response_ids, s.reward) for s in own] == [(s.response_ids, s.reward) for s in before.samples]
        if step < 3:  # no candidates yet: the step is the plain one, weights and metrics too
            assert candidates == [] and len(batch.samples) == len(before.samples)
            assert [s.weight for s in batch.samples] == [s.weight for s in before.samples]
            assert "lsp/candidate_valid" not in batch.metrics
            continue
        # then 48 a step, together a quarter of the N = 32 own queries' weight (alpha_ch 1)
        size = len(batch.samples)
        assert len(candidates) == 48 and size == len(before.samples) + 48
        assert all(c.weight == pytest.approx(0.25 * size / 48) for c in candidates)
        assert all(c.weight == pytest.approx(size / 32) for c in challengers(batch) if not c.info.get("candidate"))
        assert sum(s.weight for s in solvers(batch)) == pytest.approx(size if solvers(batch) else 0)
        assert "lsp/candidate_valid" in batch.metrics


def test_the_solver_replays_earlier_valid_queries_of_its_window_and_keeps_them_across_a_checkpoint(policy, tmp_path):
    plain = build(policy, tmp_path)
    lsp = build(policy, tmp_path, ["recipe.solver_replay=5", "recipe.replay_window=3"])
    valid_by_step, replayed_steps = [], 0
    for step in range(40):
        before, batch = plain.collect(step), lsp.collect(step)
        valid = [c.info["text"] for c in challengers(before) if c.info["valid"]]
        window = [q for queries in valid_by_step[-3:] for q in queries]  # the last three steps' valid queries
        valid_by_step.append(valid)
        replay = [s for s in solvers(batch) if "replay" in s.group]
        # the step's own queries, answers and Challenger rewards are those of a run without replay
        assert [(s.role, s.info["text"], s.reward) for s in batch.samples if s not in replay] == \
               [(s.role, s.info["text"], s.reward) for s in before.samples]
        assert batch.metrics == before.metrics  # the degeneration signals describe the step's own queries
        if not window:
            assert replay == []
            continue
        replayed_steps += 1
        rng = random.Random(derive_seed(0, step, "replay"))
        drawn = [rng.choice(window) for _ in range(5)]
        assert len(replay) == 5 * 3  # G = 3 answers to each
        for j, query in enumerate(drawn):
            answers = [s for s in replay if s.group == f"{step}:replay{j}"]
            assert len(answers) == 3
            assert answers[0].prompt_ids == lsp.task_prompt_ids(lsp.task.check_query(query).problem)
        # trained as the Solver's own answers are: L_sol is the mean over all of them
        n_solver = len(solvers(batch))
        assert [s.weight for s in solvers(batch)] == pytest.approx([(n_solver + 32) / n_solver] * n_solver)
        lsp.advantages(batch)
        for j in range(5):
            answers = [s for s in replay if s.group == f"{step}:replay{j}"]
            V = sum(s.reward for s in answers) / 3
            assert [s.advantage for s in answers] == pytest.approx([s.reward - V for s in answers])
    assert replayed_steps >= 10
    # the window is the recipe's state: a fresh recipe loaded from a checkpoint replays the same
    folder = tmp_path / "replay"
    folder.mkdir()
    lsp.save(folder)
    assert json.loads((folder / "lsp.json").read_text())["replayable"] == valid_by_step[-3:]
    fresh = build(policy, tmp_path, ["recipe.solver_replay=5", "recipe.replay_window=3"])
    fresh.load(folder)
    a, b = lsp.collect(40), fresh.collect(40)
    assert [(s.group, s.response_ids, s.reward) for s in a.samples] == [(s.group, s.response_ids, s.reward)
                                                                       for s in b.samples]


def step_with_a_repeat(plain, penalised, steps):
    """The first of `steps` where the random Challenger repeats some query: both recipes' batches,
    the queries and the step."""
    for step in steps:
        a, b = plain.collect(step), penalised.collect(step)
        texts = [c.info["text"] for c in challengers(a)]
        if len(set(texts)) < len(texts):
            return a, b, texts, step
    pytest.fail("no step with a repeated query")


def test_the_repetition_penalty_charges_each_query_its_share_of_the_step(policy, tmp_path):
    penalised = build(policy, tmp_path, ["recipe.repetition_penalty=2"])
    a, b, texts, _ = step_with_a_repeat(build(policy, tmp_path), penalised, range(40))
    # r_ch = (what it was) - 2 * count(query) / N: a query written 3 times in 64 pays 2 * 3/64
    for before, after in zip(challengers(a), challengers(b)):
        share = texts.count(before.info["text"]) / len(texts)
        assert after.reward == pytest.approx(before.reward - 2 * share)
    assert [s.reward for s in solvers(a)] == [s.reward for s in solvers(b)]  # the Solver is not charged
    assert a.metrics["lsp/repetition_penalty"] == 0.0 and b.metrics["lsp/repetition_penalty"] == 2.0


def test_the_repetition_penalty_schedule_is_linear_then_constant(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.repetition_penalty=5", "recipe.repetition_penalty_final=1",
                                   "recipe.repetition_penalty_steps=400"])
    # 5 -> 1 over 400 steps: 1/100 a step; step 100 is a quarter of the way (5 - 1), step 400 on: 1
    assert [lsp.repetition_penalty(step) for step in (0, 100, 200, 399, 400, 5000)] == \
        pytest.approx([5.0, 4.0, 3.0, 1.01, 1.0, 1.0])
    assert build(policy, tmp_path, ["recipe.repetition_penalty=5"]).repetition_penalty(5000) == 5.0
    # what collect charges is the scheduled penalty
    a, b, texts, step = step_with_a_repeat(build(policy, tmp_path), lsp, range(200, 240))
    assert b.metrics["lsp/repetition_penalty"] == pytest.approx(5 - 4 * step / 400)
    for before, after in zip(challengers(a), challengers(b)):
        share = texts.count(before.info["text"]) / len(texts)
        assert after.reward == pytest.approx(before.reward - (5 - 4 * step / 400) * share)


def test_the_alpha_ch_schedule_weighs_the_challenger_linearly_then_constantly(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.alpha_ch=0.5", "recipe.alpha_ch_final=2", "recipe.alpha_ch_steps=300"])
    # 0.5 -> 2 over 300 steps: 0.005 a step; step 100: 1.0, step 200: 1.5, from step 300 on: 2
    for step, alpha in ((0, 0.5), (100, 1.0), (200, 1.5), (300, 2.0), (900, 2.0)):
        batch = lsp.collect(step)
        B, N = len(batch.samples), len(challengers(batch))
        assert batch.metrics["lsp/alpha_ch"] == pytest.approx(alpha)
        assert all(c.weight == pytest.approx(alpha * B / N) for c in challengers(batch))
        assert all(s.weight == pytest.approx(B / (B - N)) for s in solvers(batch))  # L_sol is not scaled
    constant = build(policy, tmp_path, ["recipe.alpha_ch=0.5"]).collect(900)
    assert constant.metrics["lsp/alpha_ch"] == 0.5
    # alpha_ch_from delays the ramp: 0.5 until step 100, then 0.005 a step, 2 from step 400 on
    delayed = build(policy, tmp_path, ["recipe.alpha_ch=0.5", "recipe.alpha_ch_final=2",
                                       "recipe.alpha_ch_steps=300", "recipe.alpha_ch_from=100"])
    assert [delayed.collect(step).metrics["lsp/alpha_ch"] for step in (0, 100, 200, 399, 400, 900)] == \
        pytest.approx([0.5, 0.5, 1.0, 1.995, 2.0, 2.0])


def test_the_novelty_bonus_and_its_faded_counts_by_hand():
    assert novelty_bonus(0.5, 0.0) == 0.5  # never asked: the whole bonus
    assert novelty_bonus(0.5, 3.0) == pytest.approx(0.25)  # 0.5 / sqrt(1 + 3)
    # decay 0.5: step 0 asks 1+2 twice and 4+5 once; step 1 asks 4+5 once
    after_0 = faded_counts({}, ["1+2", "1+2", "4+5"], 0.5)
    assert after_0 == {"1+2": 2.0, "4+5": 1.0}
    assert faded_counts(after_0, ["4+5"], 0.5) == {"1+2": 1.0, "4+5": 1.5}  # 2/2; 1/2 + 1
    assert faded_counts({"1+2": 2.0}, ["1+2"], 1.0) == {"1+2": 3.0}  # decay 1: counts never fade
    assert faded_counts({"1+2": 0.0015}, [], 0.5) == {}  # faded to 0.00075 < 1e-3: dropped


def test_the_novelty_bonus_pays_each_valid_query_by_its_count_and_survives_a_checkpoint(policy, tmp_path):
    plain = build(policy, tmp_path)
    options = ["recipe.novelty_bonus=1", "recipe.novelty_decay=0.5"]
    novel = build(policy, tmp_path, options)
    step, a = mixed_step(plain, range(400), lambda batch: len({c.info["text"] for c in challengers(batch)
                                                               if c.info["valid"]}) >= 2)
    texts = [c.info["text"] for c in challengers(a)]
    asked_before = next(c.info["text"] for c in challengers(a) if c.info["valid"])
    novel.asked = {asked_before: 3.0, "zz": 0.5}  # as if earlier steps had asked them
    b = novel.collect(step)
    bonuses = []
    for before, after in zip(challengers(a), challengers(b)):
        n = 3.0 if before.info["text"] == asked_before else 0.0
        bonuses.append(1 / math.sqrt(1 + n) if before.info["valid"] else 0.0)  # 0.5 or 1; none if invalid
        assert after.reward == pytest.approx(before.reward + bonuses[-1])
    assert 0.5 in bonuses and 1.0 in bonuses and 0.0 in bonuses
    assert [s.reward for s in solvers(a)] == [s.reward for s in solvers(b)]  # the Solver is not paid it
    assert b.metrics["lsp/novelty_bonus"] == pytest.approx(sum(bonuses) / len(bonuses))
    assert a.metrics["lsp/novelty_bonus"] == 0.0 and plain.asked == {}  # off: no bonus, no counts
    later = build(policy, tmp_path, [*options, f"recipe.novelty_from={step + 1}"])
    later.asked = {asked_before: 3.0, "zz": 0.5}
    not_yet = later.collect(step)  # before novelty_from: no bonus, but the step is counted
    assert [c.reward for c in challengers(not_yet)] == [c.reward for c in challengers(a)]
    # the counts after the step: the earlier ones halved, plus every query this step wrote
    expected = {asked_before: 1.5, "zz": 0.25}
    for text in texts:
        expected[text] = expected.get(text, 0.0) + 1.0
    assert novel.asked == pytest.approx(expected) and later.asked == pytest.approx(expected)

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    novel.save(folder)
    resumed = build(new_policy(), tmp_path, options)
    resumed.load(folder)
    assert resumed.asked == novel.asked
    c, d = novel.collect(step + 1), resumed.collect(step + 1)
    assert [s.reward for s in c.samples] == [s.reward for s in d.samples]
    assert novel.asked == resumed.asked


# ---------------------------------------------------------------- 10. the win rate against the initial model

WIN_RATE = ["recipe.eval_instructions=3", "recipe.judge_readout=tag", "eval.temperature=0"]


def test_the_initial_model_ties_with_itself_and_a_changed_one_is_judged(tmp_path):
    own = new_policy()
    lsp = build(own, tmp_path, WIN_RATE)
    result = lsp.evaluate(step=0)
    # identical answers: the judge sees the same prompt in both orders, so whichever letter it
    # names, the pair scores 1/2; the tag readout always gives a verdict
    assert result.metrics["eval/lsp/win_rate"] == 0.5
    assert result.metrics["eval/lsp/win_rate_unparsed"] == 0.0
    rows = [t for t in result.transcripts if t["task"] == "instructions"]
    assert [r["prompt"] for r in rows] == instructions(3)
    assert all(r["response"] == r["initial"] and r["score"] == 0.5 for r in rows)

    initial = list(lsp.initial_answers)
    with torch.no_grad():  # a different policy: its greedy answers change, the initial ones do not
        for parameter in own.model.parameters():
            parameter.add_(torch.randn_like(parameter), alpha=0.5)
    changed = lsp.evaluate(step=1)
    rows = [t for t in changed.transcripts if t["task"] == "instructions"]
    assert lsp.initial_answers == initial and [r["initial"] for r in rows] == initial
    assert any(r["response"] != r["initial"] for r in rows)
    scores = [r["score"] for r in rows]
    assert changed.metrics["eval/lsp/win_rate"] == pytest.approx(sum(scores) / 3)
    assert all(s in (0.0, 0.25, 0.5, 0.75, 1.0) for s in scores)
    assert all(r["score"] == 0.5 for r in rows if r["response"] == r["initial"])


def test_the_text_readout_of_a_random_model_is_unparsed_and_a_tie(policy, tmp_path):
    lsp = build(policy, tmp_path, ["recipe.eval_instructions=2", "recipe.judge_max_new_tokens=4"])
    m = lsp.evaluate(step=0).metrics
    assert (m["eval/lsp/win_rate"], m["eval/lsp/win_rate_unparsed"]) == (0.5, 1.0)


def test_the_tag_readout_scores_the_expected_points_of_the_judges_first_token(policy):
    pairs = [("3+4", "7"), ("Write a poem.", "no"), ("<score>7</score>", "<score>7</score>")]
    tag = ModelJudge(policy.model, policy.tokenizer, readout="tag").score(pairs)
    tok = policy.tokenizer
    for (query, answer), score in zip(pairs, tag):  # by hand: one forward pass, softmax over "0".."7"
        ids = render_prompt(tok, quality_prompt(query, answer)) + tok("<score>", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = policy.model(torch.tensor([ids])).logits[0, -1]
        p = torch.softmax(logits[[tok.convert_tokens_to_ids(str(d)) for d in range(8)]], -1)
        assert score.parsed and score.value == pytest.approx(float((p * torch.arange(8)).sum()), abs=1e-5)
        assert score.reason.endswith("of 7 points (expected)")
    assert len({round(s.value, 6) for s in tag}) == 3  # graded: each answer its own score
    text = ModelJudge(policy.model, policy.tokenizer, sampling=SamplingParams(0.0, 1.0, 8)).score(pairs)
    assert not any(s.parsed for s in text)  # a random model writes no score tag
    with pytest.raises(ValueError, match="one token"):  # "10" is two characters of the char tokenizer
        ModelChat(policy.model, policy.tokenizer, tag_choice=("score", ("0", "10")))
    with pytest.raises(ValueError, match="unknown judge readout 'digits'"):
        ModelJudge(policy.model, policy.tokenizer, readout="digits")


# ---------------------------------------------------------------- 11. the presets of the paper's comparison

CONFIGS = PRESET.parent


def test_the_smollm2_and_llama_presets_load_as_the_comparison_they_name():
    lsp, zero, rlvr = (load_config(CONFIGS / f"{name}.yaml") for name in ("lsp_smollm2", "lsp_zero_smollm2",
                                                                         "rlvr_smollm2"))
    assert (lsp.recipe.quality, zero.recipe.quality, rlvr.recipe.name) == (True, False, "rlvr")
    for cfg in (lsp, zero, rlvr):  # the same model, task and budget: only the method differs
        assert cfg.model.name == "smollm2-135m-instruct" and cfg.model.lora is not None
        assert (cfg.recipe.task, cfg.recipe.task_options, cfg.recipe.style) == ("arithmetic", lsp.recipe.task_options, "chat")
        assert (cfg.optim.lr, cfg.optim.kl_coef, cfg.time_limit_minutes) == (lsp.optim.lr, 0.05, 30)
    assert lsp.recipe.queries_per_step * lsp.recipe.answers_per_query == \
           rlvr.recipe.prompts_per_step * rlvr.recipe.answers_per_prompt
    llama = load_config(CONFIGS / "lsp_llama3.2_3b.yaml")
    assert (llama.model.name, llama.recipe.reward) == ("meta-llama/Llama-3.2-3B-Instruct",
                                                      "reward_model:Skywork/Skywork-Reward-V2-Llama-3.2-3B")
    assert (llama.optim.kl_coef, llama.optim.lr, llama.recipe.queries_per_step, llama.eval.temperature) == \
           (0.05, 3e-6, 8, 0.01)


def test_the_tiny_rlvr_baseline_is_measured_on_lsp_tinys_held_out_sums():
    lsp, rlvr = load_config(PRESET), load_config(CONFIGS / "rlvr_sums3_tiny.yaml")
    assert rlvr.recipe.name == "rlvr"
    held_out = [make_task(c.recipe.task, style=c.recipe.style, **c.recipe.task_options).held_out(c.recipe.eval_size)
                for c in (lsp, rlvr)]
    assert held_out[0] == held_out[1] and len(held_out[0]) == 196  # every held-out sum of three one-digit numbers
    for key in ("lr", "epochs", "entropy_coef", "weight_decay"):  # the same optimiser: only the method differs
        assert getattr(rlvr.optim, key) == getattr(lsp.optim, key), key
    assert (rlvr.time_limit_minutes, rlvr.model.name, rlvr.sampling) == (lsp.time_limit_minutes, "tiny", lsp.sampling)
    assert lsp.recipe.queries_per_step * lsp.recipe.answers_per_query == \
           rlvr.recipe.prompts_per_step * rlvr.recipe.answers_per_prompt


@pytest.mark.real_model
def test_smollm2_plays_both_roles_with_a_boxed_challenger_and_a_graded_self_judge(tmp_path):
    """The lsp_smollm2 preset on the real model, one small step: the Challenger writes only the
    alphabet inside \\boxed{, and the frozen copy's tag readout grades every answer."""
    cfg = load_config(CONFIGS / "lsp_smollm2.yaml", ["recipe.queries_per_step=4", "recipe.answers_per_query=2",
                                                     "sampling.max_new_tokens=16", "recipe.eval_instructions=2"])
    own = Policy(cfg.model, cfg.optim, cfg.sampling, cfg.seed)
    s = cfg.sampling
    context = RecipeContext(seed=0, run_dir=tmp_path, sampling=SamplingParams(s.temperature, s.top_p, s.max_new_tokens),
                            eval_sampling=SamplingParams(0.0, s.top_p, s.max_new_tokens))
    lsp = LSPRecipe(cfg.recipe, own, context)
    assert own.tokenizer.decode(lsp.challenger_prompt).endswith("assistant\n\\boxed{")
    batch = lsp.collect(0)
    for q in challengers(batch):
        assert set(q.info["text"]) <= set("0123456789+"), q.info["text"]
    answers = solvers(batch)
    assert answers and all(a.info["judge_parsed"] for a in answers)
    assert all(0 < a.info["R_Q"] < 1 for a in answers) and len({a.info["R_Q"] for a in answers}) > 1
    assert lsp.evaluate(0).metrics["eval/lsp/win_rate"] == 0.5  # the adapter starts as a no-op: a tie
    split = cfg.recipe.model_copy(update={"query_alphabet": "0123456789+\u6f22"})  # 漢: three byte tokens here
    with pytest.raises(ConfigError, match=r"recipe.query_alphabet: .*must be one token of this model's tokenizer"):
        LSPRecipe(split, own, context)
