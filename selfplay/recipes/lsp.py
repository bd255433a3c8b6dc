"""LSP, Language Self-Play: one model challenges itself and answers (ALGORITHMS.md section 2).

Each step the Challenger (the policy given the challenger prompt) writes N queries q_i; the
Solver (the same policy, the query as an ordinary user turn) writes G answers a_i^j to each;
a reward source scores every answer: R(q, a).

    V(q)  = mean_j R(q, a^j)                 the query's value (low: hard)
    A_sol = R(q, a) - V(q)                   no division by a std
    r_ch  = -V(q)                            the Challenger is paid for queries the Solver fails
    A_ch  = r_ch - mean_i r_ch = Vbar - V(q)
    L     = L_sol + alpha_ch * L_ch          L_sol averaged over the N*G answers, L_ch over the N queries

With the quality self-reward (LSP; `quality: false` is LSP-Zero) the frozen reference model
grades every answer with the 7-point rubric: R_Q(q, a) in [0, 7], scaled by `quality_scale`.
The Solver's reward is R + R_Q and the Challenger's -V(q) + V_Q(q), V_Q(q) = mean_j R_Q(q, a^j):
the game is no longer zero-sum, which keeps the Challenger's queries meaningful. Both roles
are regularised by the trainer's KL to the reference (`optim.kl_coef`, 0.05 in the paper).

Deviations from the paper, each an option:
- The KL term: the paper writes the sequence log-ratio inside the loss, whose gradient is
  zero in expectation (it does not regularise). Default: a per-token k3 estimate
  (`optim.kl_estimator: k3`, `optim.kl_per: token`); the literal form is
  `optim.kl_estimator: k1`, `optim.kl_per: sequence`, kept to show it is inert.
- A query that is not a problem of the task family (verifiable rewards), or is one of the
  family's held-out problems (kept for evaluation: no Challenger may train on them), gets no
  answers and the Challenger reward `invalid_query_reward` (-2: below any valid query's -V(q));
  a held-out problem may be paid `held_out_query_reward` instead. In compact style a malformed
  query may earn back `invalid_slot_credit` times the share of the template's slots it filled
  with a character some training problem has there: a dense signal towards the form, where a
  random model's batch of malformed queries is otherwise all paid the same and teaches nothing.
- `challenger_reward`: `lsp` (-V(q), the paper's, the only monotone one) or the follow-ups'
  `rzero` (1 - 2|p - 1/2|, p the agreement of the answers with their majority), `uncertainty`
  (the same of the solve rate s: R-Zero's majority agreement estimates s where no verifier
  exists) and `learnability` (AZR's 1 - s iff 0 < s < 1), or `greedy` (-R of one more answer,
  the Solver's greedy one: paid for what the Solver does not know, not for its sampling noise);
  `challenger_reward_late` replaces it from step `challenger_reward_late_from` on.
- `challenger_probes`, `challenger_candidates`, `solver_replay` (0 by default): more for the
  Challenger to learn from each step (training problems drawn uniformly, paid -V(q); more of its
  own queries, paid by the Solver's greedy answer), more for the Solver (its earlier queries).
- `repetition_penalty` (0 by default): R-Zero's penalty on a Challenger that writes the same
  query many times in one step; `repetition_penalty_final` and `repetition_penalty_steps` move
  it linearly to another value over the first steps; `alpha_ch_final`, `alpha_ch_steps` and
  `alpha_ch_from` (the step it starts moving) do the same for alpha_ch (constant in the paper).
- `novelty_bonus` (0 by default): an exploration bonus across steps, novelty_bonus / sqrt(1 + n(q))
  on a valid query asked n(q) times before (counts fading by `novelty_decay` a step), paid from
  step `novelty_from`.
- The scales of R and R_Q (`reward_scale`, `quality_scale`) are options: the paper does
  not say how its reward model's unbounded score is weighed against the 0-7 quality score.
- `style: compact` lets a tiny model on a CPU play: a few-character challenger prompt, and a
  `compact_template` whose `{}` slots the Challenger fills one character each (`{}+{}`: it
  writes `34` and asks `3+4`), so that a randomly initialised model writes a valid query
  about once in 150 tries instead of once in ten thousand; `compact_alphabet` keeps its
  characters to a set (e.g. the digits), for templates of more slots than a random model fills
  by chance, and the learner trains it as the policy over that set; `compact_min_slots` lets it
  stop early (a shorter query: with the arithmetic family's `min_terms`, fewer operands).
  `chat` is the paper's form: the Challenger writes the whole request.
- `format_reward` (0 by default): R of a wrong answer of the right form, as in RLVR, for a
  model that must first learn to answer with a number.

Sections: config, collect (challenge, solve, rewards), advantages, evaluate, state.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from selfplay.algorithms.advantages import learnability_reward, lsp_advantages, rzero_reward
from selfplay.models.generation import alphabet_token_ids
from selfplay.models.loading import style_prompt_ids
from selfplay.recipes import Batch, Evaluation, Recipe, RecipeSection
from selfplay.evals.instructions import instructions
from selfplay.rewards import Score, make_reward
from selfplay.rewards.chat import EndpointChat, ModelChat
from selfplay.rewards.judge import readout_tag
from selfplay.rewards.pairwise import PairwiseJudge
from selfplay.rollout.sample import Sample
from selfplay.seeding import derive_seed
from selfplay.tasks import make as make_task
from selfplay.tasks.evaluation import held_out_accuracy

SOLVER, CHALLENGER = "solver", "challenger"
HELD_OUT = "a held-out problem (kept for evaluation)"  # the reason check gives a held-out query
TOO_SHORT = "too short to fill the template"  # the reason read_query gives a text short of the slots
ChallengerReward = Literal["lsp", "rzero", "uncertainty", "learnability", "greedy"]
BOXED = "\\boxed{"  # the start of a Challenger's turn with `query_from: boxed`

# The Challenger's prompt in chat style: what the paper's prompt asks, in our own words.
CHALLENGER_PROMPT = (
    "You are writing a task for another assistant, to test how well it can do {task_kind}.\n"
    "Write exactly one request, the way a user would ask it, following this template: {template}\n"
    "Make it hard enough that a careless answer would be wrong. Do not include the answer, "
    "any hints, or anything but the request itself."
)


# ---- config ---------------------------------------------------------------------------------
class Config(RecipeSection):
    name: Literal["lsp"] = "lsp"
    task: str = "arithmetic"  # the task family the queries belong to (selfplay.tasks); its grader is R
    task_options: dict[str, Any] = {}  # the family's template, e.g. {digits: 1, terms: 2, operators: "+-"}
    style: Literal["compact", "chat"] = "compact"  # compact: tiny models on a CPU; chat: the paper's prompts
    task_kind: str = "arithmetic"  # chat: what the Challenger is told the task is about
    template: str = "an arithmetic expression over whole numbers, such as 37+5*2"  # chat: the form of a query
    compact_prompt: str = "Q:"  # compact: the Challenger's whole prompt (a few characters)
    # compact: the query's form; the Challenger's characters fill the `{}` slots one each ("": its
    # text is the query as written)
    compact_template: str = "{}+{}"
    # compact: the Challenger may stop after this many slots, the template then cut after the last
    # slot it filled (`{}+{}+{}+{}` and `357`: `3+5+7`); None: it must fill every slot. With a
    # family of 2-4 operands (`task_options.min_terms`) the Challenger chooses how many to ask
    compact_min_slots: int | None = Field(None, gt=0)
    # compact: the characters the Challenger may write, its sampling restricted to them and the stop
    # tokens ("": any token). A random model fills four slots with digits about once in 10^4 tries
    # unrestricted: a bigger family than three one-digit operands is out of its reach without this
    compact_alphabet: str = ""
    # chat: where the query is read from. text: the Challenger's whole answer (the paper's). boxed:
    # its turn starts with `\boxed{`, it may write only `query_alphabet` characters and `}`, and the
    # query is what it writes before `}`: for a model too small to write a problem of the family unaided
    query_from: Literal["text", "boxed"] = "text"
    query_alphabet: str = "0123456789+-*"
    queries_per_step: int = Field(8, gt=0)  # N (paper: 8)
    answers_per_query: int = Field(8, ge=2)  # G (the paper does not say)
    query_max_new_tokens: int | None = Field(None, gt=0)  # the Challenger's length limit (None: sampling's)
    alpha_ch: float = Field(1.0, ge=0)  # L = L_sol + alpha_ch * L_ch
    # alpha_ch moves linearly to this value over `alpha_ch_steps` steps from step `alpha_ch_from`,
    # then stays (None: constant): a slow Challenger while the Solver learns the family, a fast one
    # once it knows most of it and the Challenger must move faster than the Solver learns to stay ahead
    alpha_ch_final: float | None = Field(None, ge=0)
    alpha_ch_steps: int = Field(0, ge=0)
    alpha_ch_from: int = Field(0, ge=0)
    reward: str = "verifiable"  # R: verifiable | reward_model:PATH_OR_ID | judge | judge:openai:MODEL
    reward_scale: float = Field(1.0, gt=0)
    format_reward: float = Field(0.0, ge=0, lt=1)  # verifiable R of a wrong answer of the right form
    quality: bool = True  # LSP (the quality self-reward R_Q) or LSP-Zero (False)
    quality_judge: str = "judge"  # who gives R_Q: judge (the frozen reference) | judge:openai:MODEL
    quality_scale: float = Field(1 / 7, ge=0)  # R_Q = scale * rubric points (0-7)
    judge_max_new_tokens: int = Field(512, gt=0)  # the local judge's answer: a justification, then the score
    judge_temperature: float = Field(0.0, ge=0)  # 0: greedy
    challenger_reward: ChallengerReward = "lsp"
    # the Challenger's reward from step `challenger_reward_late_from` on (None: challenger_reward
    # throughout): -V(q) while the Solver learns to answer at all, then one that pays for what it
    # answers half the time, not for what it never answers
    challenger_reward_late: ChallengerReward | None = None
    challenger_reward_late_from: int = Field(0, ge=0)
    invalid_query_reward: float = -2.0  # r_ch of a query that is not a (training) problem of the family
    # r_ch of a held-out problem of the family (None: invalid_query_reward). At -2 a Challenger
    # learns that any sum it has not asked before may cost it dearly and keeps to the ones it knows;
    # at -1 (a query the Solver always answers) it may roam the family
    held_out_query_reward: float | None = None
    # compact style: a malformed query is also paid this times the share of the template's slots it
    # filled with a character some training problem has in that slot (a random model fills all
    # three slots of `{}+{}+{}` with digits about once in 27 steps; each slot it gets right is a
    # step towards a valid query). Below 1, so a malformed query stays below any valid one; 0: off
    invalid_slot_credit: float = Field(0.0, ge=0, lt=1)
    # R-Zero's repetition penalty: r_ch -= penalty * (share of this step's queries equal to this
    # one), so a Challenger that repeats itself is paid less (0: off, the paper's)
    repetition_penalty: float = Field(0.0, ge=0)
    # the penalty moves linearly to this value over the first `repetition_penalty_steps` steps, then
    # stays (None: constant): spread while the Solver learns the family, free to press on what it
    # still fails once it knows most of it
    repetition_penalty_final: float | None = Field(None, ge=0)
    repetition_penalty_steps: int = Field(0, ge=0)
    # an exploration bonus across steps (0: off, the paper's): a valid query earns
    # r_ch += novelty_bonus / sqrt(1 + n(q)), n(q) the times q was asked in earlier steps, each
    # step's count fading by `novelty_decay` a step (1: never). A policy-gradient Challenger learns
    # only from what it writes; this pays it to write the problems it has not (lately) asked, which
    # are the ones the Solver has not trained on. Paid from step `novelty_from` (counted from the
    # start): spread from the first step, the Challenger leaves the Solver no corner to learn first
    novelty_bonus: float = Field(0.0, ge=0)
    novelty_decay: float = Field(1.0, gt=0, le=1)
    novelty_from: int = Field(0, ge=0)
    # local judges (quality_judge, pairwise_judge = judge): text, the paper's (a justification, then
    # the score tag), or tag (one forced token after the opening tag: for models too small to keep
    # the rubric's format)
    judge_readout: Literal["text", "tag"] = "text"
    # the Challenger also learns from this many training problems of the family drawn uniformly each
    # step, as if it had written them (0: off, the paper's): the Solver answers each G times (not
    # trained on), and a problem pays -V(q) against the mean of the step's drawn problems. A
    # policy-gradient Challenger learns only from what it writes; these show it what it does not
    # write. Each weighs as one of its own queries. Compact style with a template only (the problem
    # is written back into its slots)
    challenger_probes: int = Field(0, ge=0)
    # the Challenger also writes this many more queries each step, each paid -R of the Solver's greedy
    # answer (one short generation) against their mean, less the repetition penalty among them (0:
    # off, the paper's); the Solver does not train on them. An on-policy screen: cheap answers show
    # the Challenger far more of what its Solver fails than its N queries do. Together they weigh as
    # its N own queries, or `candidate_weight` times as much (lighter: a steadier Solver, a smaller
    # lead: docs/lsp.md); from step `candidates_from` (counted from 0) on
    challenger_candidates: int = Field(0, ge=0)
    candidate_weight: float = Field(1.0, gt=0)
    candidates_from: int = Field(0, ge=0)
    # the Solver also answers this many of the Challenger's valid queries of the last `replay_window`
    # steps each step, drawn uniformly, and trains on them (0: off, the paper's): what it learned
    # stays in its batch while the Challenger moves on (self-written queries only: still data-free)
    solver_replay: int = Field(0, ge=0)
    replay_window: int = Field(100, gt=0)
    eval_size: int = Field(256, gt=0)  # held-out problems per evaluation (verifiable tasks)
    # also answer the fresh queries, the held-out problems and the uniform ones G times each,
    # sampled as in training (eval/lsp/*_sampled_accuracy): G times the evaluation's generation
    eval_sampled: bool = False
    # the win rate against the initial model on the first N shipped requests (selfplay.evals.
    # instructions), judged pairwise in both orders by `pairwise_judge` (0: not measured)
    eval_instructions: int = Field(0, ge=0)
    pairwise_judge: str = "judge"  # judge (the frozen reference) | judge:openai:MODEL
    eval_transcripts: int = Field(4, ge=0)

    @model_validator(mode="after")
    def _known_task_and_sources(self):
        make_task(self.task, style=self.style, **self.task_options)  # unknown names and options list the choices
        for key, spec in (("reward", self.reward), ("quality_judge", self.quality_judge)):
            kind = spec.split(":", 1)[0]
            if kind not in ("verifiable", "reward_model", "judge"):
                raise ValueError(f"recipe.{key}: unknown reward source {spec!r}; "
                                 "available: verifiable, reward_model:PATH_OR_ID, judge, judge:openai:MODEL")
        if self.pairwise_judge != "judge" and not self.pairwise_judge.startswith("judge:openai:"):
            raise ValueError(f"recipe.pairwise_judge: unknown judge {self.pairwise_judge!r}; "
                             "available: judge, judge:openai:MODEL")
        if self.repetition_penalty_final is not None and not self.repetition_penalty_steps:
            raise ValueError("recipe.repetition_penalty_final needs recipe.repetition_penalty_steps > 0")
        if self.compact_min_slots is not None and self.compact_min_slots > self.compact_template.count("{}"):
            raise ValueError(f"recipe.compact_min_slots ({self.compact_min_slots}) is more than the "
                             f"{self.compact_template.count('{}')} slots of recipe.compact_template")
        if self.challenger_probes and not (self.style == "compact" and "{}" in self.compact_template
                                           and self.reward == "verifiable"):
            raise ValueError("recipe.challenger_probes needs style=compact, a compact_template with slots "
                             "and reward=verifiable")
        if self.alpha_ch_final is not None and not self.alpha_ch_steps:
            raise ValueError("recipe.alpha_ch_final needs recipe.alpha_ch_steps > 0")
        for key in ("challenger_reward", "challenger_reward_late"):
            if getattr(self, key) in ("uncertainty", "learnability") and self.reward != "verifiable":
                raise ValueError(f"recipe.{key}={getattr(self, key)} needs a solve rate: use recipe.reward=verifiable")
        return self


# ---- the recipe -------------------------------------------------------------------------------
class LSPRecipe(Recipe):
    name = "lsp"
    Config = Config

    def __init__(self, cfg: Config, policy, context):
        super().__init__(cfg, policy, context)
        self.task = make_task(cfg.task, style=cfg.style, **cfg.task_options)
        self.held_out = self.task.held_out(cfg.eval_size)
        self.verifiable = cfg.reward == "verifiable"
        self.reward_source = self._source(cfg.reward)
        self.judge = self._source(cfg.quality_judge) if cfg.quality else None
        if self.verifiable and not self.held_out:
            raise ValueError(f"task {cfg.task!r} with options {cfg.task_options} has no held-out problems")
        self.initial_answers: list[str] | None = None  # the initial model's answers to the shipped requests
        self.recent: list[dict] = []  # a few of the last step's queries with their answers, for transcripts
        self.asked: dict[str, float] = {}  # n(q) of the novelty bonus: the (faded) times q was asked
        self.replayable: list[list[str]] = []  # the valid queries of the last replay_window steps
        self.pairwise: PairwiseJudge | None = None  # built on first use: it may load the reference
        self.boxed = cfg.style == "chat" and cfg.query_from == "boxed"
        self.challenger_prompt = self.prompt_ids(
            cfg.compact_prompt if cfg.style == "compact"
            else CHALLENGER_PROMPT.format(task_kind=cfg.task_kind, template=cfg.template)
            + ("\nWrite the request inside \\boxed{}." if self.boxed else ""))
        self.query_sampling = replace(context.sampling,
                                      max_new_tokens=cfg.query_max_new_tokens or context.sampling.max_new_tokens)
        if self.boxed:  # the turn starts inside \boxed{ and may only write the alphabet and the }
            self.challenger_prompt += policy.tokenizer(BOXED, add_special_tokens=False)["input_ids"]
            self.query_sampling = replace(self.query_sampling,
                                          allowed_token_ids=self.alphabet_ids("query_alphabet", cfg.query_alphabet + "}"))
        elif cfg.style == "compact" and cfg.compact_alphabet:
            self.query_sampling = replace(self.query_sampling,
                                          allowed_token_ids=self.alphabet_ids("compact_alphabet", cfg.compact_alphabet))
        # Sample.allowed_token_ids of a Challenger turn: it is trained as the policy it samples from,
        # over its alphabet (see the learner)
        self.trained_alphabet: tuple[int, ...] | None = self.query_sampling.allowed_token_ids
        # per slot of the compact template: the characters training problems have there
        self.slot_characters: list[set[str]] = []
        if cfg.invalid_slot_credit and cfg.style == "compact" and "{}" in cfg.compact_template:
            self.slot_characters = [set() for _ in range(cfg.compact_template.count("{}"))]
            for written in self.training_fillings("invalid_slot_credit", 1000, "a malformed query is credited by its slots"):
                for slot, char in enumerate(written):
                    self.slot_characters[slot].add(char)
        if cfg.challenger_probes:  # every problem of the family must fit the template's slots
            self.training_fillings("challenger_probes", 100, "a probe is written into the slots")

    def training_fillings(self, key: str, count: int, why: str) -> list[str]:
        """The characters that fill the compact template's slots to write `count` training problems
        (drawn with a fixed seed); a family whose problems do not fit it is a config error of `key`."""
        from selfplay.config import ConfigError  # selfplay.config imports the recipes

        rng = random.Random(0)
        try:
            return [_unfill(self.cfg.compact_template, self.task.sample(rng).text) for _ in range(count)]
        except ValueError as error:
            raise ConfigError(f"recipe.{key}: {error}; {why}") from None

    def alphabet_ids(self, key: str, alphabet: str) -> tuple[int, ...]:
        """The token ids of `alphabet`'s characters and the stop tokens: each character one token."""
        from selfplay.config import ConfigError  # selfplay.config imports the recipes

        ids = alphabet_token_ids(self.policy.model, self.policy.tokenizer, alphabet)
        if ids is None:
            raise ConfigError(f"recipe.{key}: every character of {alphabet!r} must be one token of this "
                              "model's tokenizer")
        return ids

    def _source(self, spec: str):
        """A reward source; a judge runs on the frozen reference model (no second copy of the policy)."""
        if spec == "verifiable":
            return make_reward(spec, task=self.task, format_reward=self.cfg.format_reward)
        if spec == "judge":
            reference = self.policy.reference
            sampling = replace(self.context.sampling, temperature=self.cfg.judge_temperature,
                               max_new_tokens=self.cfg.judge_max_new_tokens)
            return make_reward(spec, model=reference, tokenizer=self.policy.tokenizer,
                               generator=self.policy.generator_for(reference), sampling=sampling,
                               seed=derive_seed(self.context.seed, 2, "offset"), readout=self.cfg.judge_readout)
        return make_reward(spec)

    def _pairwise(self) -> PairwiseJudge:
        """The evaluation's pairwise judge: the frozen reference (greedy) or an endpoint."""
        if self.cfg.pairwise_judge == "judge":
            reference = self.policy.reference
            sampling = replace(self.context.sampling, temperature=0.0, max_new_tokens=self.cfg.judge_max_new_tokens)
            chat = ModelChat(reference, self.policy.tokenizer, self.policy.generator_for(reference), sampling,
                             tag_choice=readout_tag(self.cfg.judge_readout, "preference"))
        else:
            chat = EndpointChat(self.cfg.pairwise_judge[len("judge:openai:"):])
        return PairwiseJudge(chat)

    def prompt_ids(self, text: str) -> list[int]:
        return style_prompt_ids(self.policy.tokenizer, text, self.cfg.style, self.policy.use_chat_template)

    def solver_prompt(self, query: str, problem) -> str:
        """The query as the Solver sees it: a verifiable family asks its problems its own way
        (`3+4=` in compact style); any other query is the user's message as written."""
        return self.task.prompt(problem) if problem is not None else query

    # ---- collect: the Challenger writes N queries, the Solver answers each G times ------------
    def collect(self, step: int) -> Batch:
        cfg, seed = self.cfg, self.context.seed
        queries = self.policy.generator.generate([self.challenger_prompt] * cfg.queries_per_step, self.query_sampling,
                                                 seed=derive_seed(seed, 2 * step, "generation"))
        texts, checks = map(list, zip(*(self.read_query(q.text) for q in queries)))
        valid = [i for i, (ok, _, _) in enumerate(checks) if ok]

        greedy = self.greedy_rewards(step, [texts[i] for i in valid],
                                     [self.prompt_ids(self.solver_prompt(texts[i], checks[i][2])) for i in valid])
        samples = self.answer([(f"{step}:{i}", step * cfg.queries_per_step + i, texts[i], checks[i][2]) for i in valid],
                              seed=derive_seed(seed, 2 * step + 1, "generation"))
        n_own = len(samples)
        samples += self.replay(step, [texts[i] for i in valid])
        n_solver = len(samples)
        n_candidates = cfg.challenger_candidates if step >= cfg.candidates_from else 0
        batch_size = n_solver + len(queries) + cfg.challenger_probes + n_candidates
        repeats = {text: count / len(texts) for text, count in Counter(texts).items()}
        penalty = self.repetition_penalty(step)
        alpha_ch = _linear(cfg.alpha_ch, cfg.alpha_ch_final, cfg.alpha_ch_steps, step - cfg.alpha_ch_from)
        scale = cfg.novelty_bonus if step >= cfg.novelty_from else 0.0
        bonuses = [novelty_bonus(scale, self.asked.get(text, 0.0)) if ok else 0.0
                   for text, (ok, _, _) in zip(texts, checks)]
        if cfg.novelty_bonus:
            self.asked = faded_counts(self.asked, texts, cfg.novelty_decay)
        for i, query in enumerate(queries):
            own = [s for s in samples if s.group == f"{step}:{i}"]
            samples.append(Sample(
                prompt_ids=query.prompt_ids, response_ids=query.response_ids, logprobs=query.logprobs,
                task=cfg.task, role=CHALLENGER, episode_id=step * cfg.queries_per_step + i,
                reward=(self.challenger_reward(own, True, step=step, greedy=greedy.get(texts[i])) if checks[i][0]
                        else self.refused_reward(query.text, checks[i][1]))
                - penalty * repeats[texts[i]] + bonuses[i],
                group=f"{step}:{i}", truncated=query.truncated, allowed_token_ids=self.trained_alphabet,
                # the learner averages over the whole batch: these weights make it L_sol (mean over the
                # N*G answers) + alpha_ch * L_ch (mean over the N queries)
                weight=alpha_ch * batch_size / len(queries),
                info={"text": texts[i], "valid": checks[i][0], "reason": checks[i][1]},
            ))
        for s in samples[:n_solver]:
            s.weight = batch_size / n_solver
        probes, probe_reward = self.probe_samples(step, alpha_ch * batch_size / len(queries))
        candidates, candidate_metrics = self.candidate_samples(
            step, n_candidates, cfg.candidate_weight * alpha_ch * batch_size / max(n_candidates, 1), penalty)
        self.recent = [{"step": step + 1, "task": cfg.task, "role": CHALLENGER, "query": c.info["text"],
                        "reason": c.info["reason"], "challenger_reward": round(c.reward, 4),
                        "answers": [{"answer": a.info["text"], "R": round(a.info["R"], 4), "R_Q": round(a.info["R_Q"], 4),
                                     "reason": a.info["reason"]} for a in samples[:n_solver] if a.group == c.group]}
                       for c in samples[n_solver:][:cfg.eval_transcripts]]
        metrics = self.step_metrics(samples[:n_own] + samples[n_solver:], texts, checks) | {
            "lsp/repetition_penalty": penalty, "lsp/alpha_ch": alpha_ch, "lsp/novelty_bonus": sum(bonuses) / len(bonuses)}
        if probes:
            metrics["lsp/probe_solver_reward"] = probe_reward
        return Batch(samples + probes + candidates, metrics | candidate_metrics)

    def answer(self, asked: list[tuple[str, int, str, Any]], seed: int) -> list[Sample]:
        """The Solver's G sampled answers to each (group, episode, query, problem), scored: R from
        the reward source, R_Q from the judge, each in one batched call."""
        cfg = self.cfg
        owners = [a for a in asked for _ in range(cfg.answers_per_query)]  # what each answer answers
        prompts = {group: self.prompt_ids(self.solver_prompt(query, problem)) for group, _, query, problem in asked}
        answers = self.policy.generator.generate([prompts[group] for group, *_ in owners], self.context.sampling,
                                                 seed=seed) if owners else []
        pairs = [(query, a.text) for (_, _, query, _), a in zip(owners, answers)]
        R = self.reward_source.score(pairs) if pairs else []
        R_Q = self.judge.score(pairs) if self.judge and pairs else [Score(0.0, "LSP-Zero")] * len(pairs)
        return [Sample(
            prompt_ids=answer.prompt_ids, response_ids=answer.response_ids, logprobs=answer.logprobs,
            task=cfg.task, role=SOLVER, episode_id=episode, reward=r.value * cfg.reward_scale + q.value * cfg.quality_scale,
            group=group, truncated=answer.truncated,
            info={"text": answer.text, "solved": r.value >= 1.0, "R": r.value * cfg.reward_scale,
                  "R_Q": q.value * cfg.quality_scale, "reason": r.reason, "judge_parsed": q.parsed},
        ) for (group, episode, _, _), answer, r, q in zip(owners, answers, R, R_Q)]

    def replay(self, step: int, asked: list[str]) -> list[Sample]:
        """The Solver's answers to `solver_replay` of the Challenger's valid queries of the last
        `replay_window` steps, drawn uniformly (before this step's `asked` join them)."""
        cfg = self.cfg
        if not cfg.solver_replay:
            return []
        earlier = [query for queries in self.replayable for query in queries]
        rng = random.Random(derive_seed(self.context.seed, step, "replay"))
        drawn = [rng.choice(earlier) for _ in range(cfg.solver_replay)] if earlier else []
        self.replayable = (self.replayable + [asked])[-cfg.replay_window:]
        return self.answer([(f"{step}:replay{j}", -1, query, self.check(query)[2]) for j, query in enumerate(drawn)],
                           seed=rng.randrange(2**31))

    def probe_samples(self, step: int, weight: float) -> tuple[list[Sample], float]:
        """`challenger_probes` training problems drawn uniformly, written into the template's slots as
        Challenger samples (no sampler log-probs: the learner's own), each paid -V(q) from G sampled
        answers of the Solver, which does not train on them; and the Solver's mean R on them."""
        cfg = self.cfg
        if not cfg.challenger_probes:
            return [], 0.0
        rng = random.Random(derive_seed(self.context.seed, step, "prompts"))
        problems = [self.task.sample(rng) for _ in range(cfg.challenger_probes)]
        answers = self.answer([(f"{step}:probe{j}", -1, p.text, p) for j, p in enumerate(problems)],
                              seed=rng.randrange(2**31))
        samples = []
        for j, problem in enumerate(problems):
            V = sum(a.info["R"] for a in answers if a.group == f"{step}:probe{j}") / cfg.answers_per_query
            written = _unfill(cfg.compact_template, problem.text)
            samples.append(Sample(
                prompt_ids=self.challenger_prompt,
                response_ids=self.policy.tokenizer(written, add_special_tokens=False)["input_ids"],
                logprobs=[], task=cfg.task, role=CHALLENGER, episode_id=-1, reward=-V, group=f"{step}:probe{j}",
                allowed_token_ids=self.trained_alphabet, weight=weight,
                info={"text": problem.text, "valid": True, "reason": "probe", "probe": True}))
        return samples, -sum(s.reward for s in samples) / len(samples)

    def candidate_samples(self, step: int, n: int, weight: float, penalty: float) -> tuple[list[Sample], dict[str, float]]:
        """`n` more queries of the Challenger, sampled as its own, each paid -R of the Solver's
        greedy answer (a malformed or held-out one as its own would be) less the repetition penalty
        among them; the Solver does not train on them."""
        cfg = self.cfg
        if not n:
            return [], {}
        rng = random.Random(derive_seed(self.context.seed, step, "candidates"))
        queries = self.policy.generator.generate([self.challenger_prompt] * n,
                                                 self.query_sampling, seed=rng.randrange(2**31))
        read = [self.read_query(q.text) for q in queries]
        valid = [(text, check[2]) for text, check in read if check[0]]
        greedy = self.greedy_scores([text for text, _ in valid],
                                    [self.prompt_ids(self.solver_prompt(text, problem)) for text, problem in valid],
                                    seed=rng.randrange(2**31))
        repeats = Counter(text for text, _ in read)
        samples = [Sample(
            prompt_ids=query.prompt_ids, response_ids=query.response_ids, logprobs=query.logprobs, task=cfg.task,
            role=CHALLENGER, episode_id=-1, group=f"{step}:candidate{j}", truncated=query.truncated,
            reward=(-greedy[text] if ok else self.refused_reward(query.text, reason)) - penalty * repeats[text] / len(read),
            allowed_token_ids=self.trained_alphabet, weight=weight,
            info={"text": text, "valid": ok, "reason": reason, "candidate": True},
        ) for j, (query, (text, (ok, reason, _))) in enumerate(zip(queries, read))]
        metrics = {"lsp/candidate_valid": len(valid) / len(read)}
        if valid:  # the Solver's greedy accuracy on them: R of 1 (a format reward is below it)
            metrics["lsp/candidate_solver_accuracy"] = sum(greedy[text] >= cfg.reward_scale
                                                           for text, _ in valid) / len(valid)
        return samples, metrics

    def read_query(self, written: str) -> tuple[str, tuple]:
        """The query the Challenger's text makes, and its check: a text too short for the compact
        template is refused before it is checked (the family reads a bare `7` as a problem)."""
        text = self.query_text(written)
        return text, self.check(text) if self.fills_template(written) else (False, TOO_SHORT, None)

    def query_text(self, written: str) -> str:
        """The query the Challenger's text makes: in compact style with a template, its first
        characters fill the template's slots; read from `\boxed{`, what comes before `}`;
        otherwise the text itself."""
        if self.boxed:
            return written.split("}", 1)[0].strip()
        template = self.cfg.compact_template if self.cfg.style == "compact" else ""
        slots = template.count("{}")
        if not slots:
            return written.strip()
        if not self.fills_template(written):
            return written
        return _fill(template, written[:slots])

    def fills_template(self, written: str) -> bool:
        """Whether the Challenger wrote a character for every slot of the compact template (or for
        `compact_min_slots` of them)."""
        slots = self.cfg.compact_template.count("{}") if self.cfg.style == "compact" else 0
        return len(written) >= (self.cfg.compact_min_slots or slots)

    def check(self, query: str):
        """(valid, reason, problem): a verifiable reward needs a training problem of the family
        (held-out problems are kept for evaluation); any other reward takes any non-empty text."""
        if self.verifiable:
            check = self.task.check_query(query)
            if check.problem is not None and self.task.is_held_out(check.problem):
                return False, HELD_OUT, None
            return check.problem is not None, check.reason, check.problem
        return bool(query), "ok" if query else "empty query", None

    # ---- rewards ---------------------------------------------------------------------------------
    def challenger_kind(self, step: int) -> ChallengerReward:
        """The Challenger's reward at `step` (counted from 0)."""
        late = self.cfg.challenger_reward_late
        return late if late is not None and step >= self.cfg.challenger_reward_late_from else self.cfg.challenger_reward

    def greedy_rewards(self, step: int, queries: list[str], prompts: list[list[int]]) -> dict[str, float]:
        """R of the Solver's greedy answer to each query, when the step's Challenger reward is
        `greedy` (else empty: no extra generation)."""
        if self.challenger_kind(step) != "greedy" or not queries:
            return {}
        return self.greedy_scores(queries, prompts, derive_seed(self.context.seed, 2 * step + 1, "generation"))

    def greedy_scores(self, queries: list[str], prompts: list[list[int]], seed: int) -> dict[str, float]:
        """R of the Solver's answer to each query (`prompts`: the Solver's prompt of each), answered
        as evaluations answer (greedy in the presets)."""
        distinct = dict(zip(queries, prompts))  # a query asked twice has one answer
        if not distinct:
            return {}
        answers = self.policy.generator.generate(list(distinct.values()), self.context.eval_sampling, seed=seed)
        scores = self.reward_source.score([(q, a.text) for q, a in zip(distinct, answers)])
        return {q: score.value * self.cfg.reward_scale for q, score in zip(distinct, scores)}

    def challenger_reward(self, answers: list[Sample], valid: bool, held_out: bool = False, step: int = 0,
                          greedy: float | None = None) -> float:
        """r_ch = -V(q) + V_Q(q) (LSP), -V(q) (LSP-Zero), or a follow-up's reward of the answers,
        at `step` (counted from 0); `greedy`: R of the Solver's greedy answer to the query."""
        if held_out and self.cfg.held_out_query_reward is not None:
            return self.cfg.held_out_query_reward
        if not valid:
            return self.cfg.invalid_query_reward
        V = sum(s.info["R"] for s in answers) / len(answers)
        V_Q = sum(s.info["R_Q"] for s in answers) / len(answers)
        kind = self.challenger_kind(step)
        if kind == "greedy":
            return -greedy + V_Q
        if kind == "rzero":  # p: agreement with the majority answer
            p = Counter(s.info["text"].strip() for s in answers).most_common(1)[0][1] / len(answers)
            return rzero_reward(p) + V_Q
        solve_rate = sum(s.info["solved"] for s in answers) / len(answers)  # a format reward is no solve
        if kind == "uncertainty":
            return rzero_reward(solve_rate) + V_Q
        if kind == "learnability":
            return learnability_reward(solve_rate) + V_Q
        return -V + V_Q

    def refused_reward(self, written: str, reason: str) -> float:
        """r_ch of a query refused before any answer (`reason`: why): a held-out problem's price, or
        a malformed query's, credited by the slots `written` filled."""
        held_out = reason == HELD_OUT
        return self.challenger_reward([], False, held_out) + (0.0 if held_out else self.slot_credit(written))

    def slot_credit(self, written: str) -> float:
        """`invalid_slot_credit` times the share of the template's slots that `written` fills with a
        character a training problem has in that slot (0 when off)."""
        if not self.slot_characters:
            return 0.0
        right = sum(char in allowed for char, allowed in zip(written, self.slot_characters))
        return self.cfg.invalid_slot_credit * right / len(self.slot_characters)

    def repetition_penalty(self, step: int) -> float:
        """R-Zero's penalty at `step` (counted from 0): constant, or on its linear schedule."""
        cfg = self.cfg
        return _linear(cfg.repetition_penalty, cfg.repetition_penalty_final, cfg.repetition_penalty_steps, step)

    def step_metrics(self, samples: list[Sample], queries: list[str], checks) -> dict[str, float]:
        """The degeneration signals: query length and variety, code answers, R and R_Q apart,
        judge parse failures."""
        solver = [s for s in samples if s.role == SOLVER]
        challenger = [s for s in samples if s.role == CHALLENGER]
        n = max(len(solver), 1)
        return {
            "lsp/valid_queries": sum(ok for ok, _, _ in checks) / len(checks),
            "lsp/held_out_queries": sum(reason == HELD_OUT for _, reason, _ in checks) / len(checks),
            "lsp/query_length": sum(len(q) for q in queries) / len(queries),
            "lsp/distinct_queries": len(set(queries)) / len(queries),
            "lsp/solver_reward": sum(s.info["R"] for s in solver) / n,  # R on fresh queries
            "lsp/solver_accuracy": sum(s.info["solved"] for s in solver) / n,  # R = 1 (no format reward)
            "lsp/quality_reward": sum(s.info["R_Q"] for s in solver) / n,
            "lsp/judge_parse_failures": sum(not s.info["judge_parsed"] for s in solver) / n if self.judge else 0.0,
            "lsp/code_answers": sum(looks_like_code(s.info["text"]) for s in solver) / n,
            "lsp/challenger_reward": sum(s.reward for s in challenger) / len(challenger),
            "lsp/answer_length": sum(len(s.response_ids) for s in solver) / n,
        }

    # ---- advantages ------------------------------------------------------------------------------
    def advantages(self, batch: Batch) -> list[Sample]:
        """A_sol = R - V(q); A_ch = r_ch - mean(r_ch) (Vbar - V(q) with r_ch = -V(q))."""
        own = [s for s in batch.samples if not (s.info.get("probe") or s.info.get("candidate"))]
        probes = [s for s in batch.samples if s.info.get("probe")]
        candidates = [s for s in batch.samples if s.info.get("candidate")]
        lsp_advantages(own, SOLVER, CHALLENGER)
        # each against its own mean: probes harder than the family's average, candidates than the
        # Challenger's
        for group in (probes, candidates):
            mean = sum(s.reward for s in group) / max(len(group), 1)
            for s in group:
                s.advantage = s.reward - mean
        return own + probes + candidates

    # ---- evaluate: the Solver on held-out problems no Challenger wrote ---------------------------
    def evaluate(self, step: int) -> Evaluation:
        metrics, transcripts = {}, list(self.recent)  # the last step's queries, answers and rewards
        if self.verifiable:
            metrics, rows = held_out_accuracy(
                self.task, self.held_out, self.task_prompt_ids, self.policy.eval_generator,
                self.context.eval_sampling, derive_seed(self.context.seed, step, "evaluation"), step,
                self.cfg.eval_transcripts)
            metrics |= self.fresh_query_accuracy(step)
            transcripts += rows
        if self.cfg.eval_instructions:
            more, rows = self.win_rate(step)
            metrics, transcripts = metrics | more, transcripts + rows
        return Evaluation(metrics, transcripts)

    def fresh_query_accuracy(self, step: int) -> dict[str, float]:
        """Do the queries get harder? The Challenger writes N fresh queries (sampled as in
        training) and the Solver answers each greedily, as on the held-out set. Two yardsticks:
        its held-out accuracy (problems it never trains on), and its accuracy on N training
        problems drawn uniformly from the family (`uniform_accuracy`): the Challenger's queries
        below the latter means it picks what the Solver gets wrong among what it could ask."""
        seed = derive_seed(self.context.seed, step, "evaluation")
        queries = self.policy.eval_generator.generate([self.challenger_prompt] * self.cfg.queries_per_step,
                                                      self.query_sampling, seed=seed)
        problems = [check[2] for _, check in (self.read_query(q.text) for q in queries) if check[0]]
        rng = random.Random(seed)
        uniform = [self.task.sample(rng) for _ in range(self.cfg.queries_per_step)]
        metrics = {"eval/lsp/fresh_valid": len(problems) / len(queries),
                   "eval/lsp/uniform_accuracy": self.accuracy(uniform, seed)}
        if problems:
            metrics["eval/lsp/fresh_accuracy"] = self.accuracy(problems, seed)
        if self.cfg.eval_sampled:
            for name, group in (("fresh", problems), ("held_out", self.held_out), ("uniform", uniform)):
                if group:
                    metrics[f"eval/lsp/{name}_sampled_accuracy"] = self.sampled_accuracy(group, seed)
        return metrics

    def accuracy(self, problems: list, seed: int, sampling=None) -> float:
        """The Solver's accuracy on `problems`, answered and graded as the held-out set is: greedy,
        or with `sampling`."""
        metrics, _ = held_out_accuracy(self.task, problems, self.task_prompt_ids, self.policy.eval_generator,
                                       sampling or self.context.eval_sampling, seed, step=0, transcripts=0)
        return metrics[f"eval/{self.task.name}/accuracy"]

    def sampled_accuracy(self, problems: list, seed: int) -> float:
        """The Solver's mean accuracy on `problems` answered as in training, `answers_per_query`
        sampled answers each: V(q), what the Challenger is paid by, averaged over the problems."""
        repeated = [p for p in problems for _ in range(self.cfg.answers_per_query)]
        return self.accuracy(repeated, seed, self.context.sampling)

    def task_prompt_ids(self, problem) -> list[int]:
        """A problem of the family as the Solver sees it in evaluations."""
        return self.prompt_ids(self.task.prompt(problem))

    def win_rate(self, step: int) -> tuple[dict[str, float], list[dict]]:
        """AlpacaEval-style: the Solver's greedy answers to the shipped requests against the initial
        model's (the reference, greedy), judged in both orders; and their mean R when the reward
        source can score any text."""
        requests = instructions(self.cfg.eval_instructions)
        prompts = [self.prompt_ids(r) for r in requests]
        sampling = self.context.eval_sampling
        if self.initial_answers is None:  # greedy and fixed: the same after a resume
            reference = self.policy.reference
            self.initial_answers = [g.text for g in self.policy.generator_for(reference).generate(prompts, sampling)]
        answers = [g.text for g in self.policy.eval_generator.generate(prompts, sampling)]
        if self.pairwise is None:
            self.pairwise = self._pairwise()
        result = self.pairwise.compare(requests, answers, self.initial_answers)
        metrics = {"eval/lsp/win_rate": result.win_rate, "eval/lsp/win_rate_unparsed": result.unparsed / (2 * len(requests))}
        if not self.verifiable:
            scores = self.reward_source.score(list(zip(requests, answers)))
            metrics["eval/lsp/instruction_reward"] = sum(s.value for s in scores) / len(scores) * self.cfg.reward_scale
        rows = [{"step": step, "task": "instructions", "prompt": request, "response": answer, "initial": initial,
                 "score": score, "verdicts": list(verdicts)}
                for request, answer, initial, score, verdicts in list(zip(
                    requests, answers, self.initial_answers, result.pair_scores, result.verdicts))[:self.cfg.eval_transcripts]]
        return metrics, rows

    # ---- state -----------------------------------------------------------------------------------
    # A step's sampling seeds are functions of (seed, step) and the held-out set is fixed; a judge
    # that samples keeps a call count, the novelty bonus its counts (exact in JSON: floats are
    # written as their shortest exact repr) and the replay its window of queries.
    def save(self, folder: Path) -> None:
        state = {"reward": self.reward_source.state_dict(), "judge": self.judge.state_dict() if self.judge else None,
                 "asked": self.asked, "replayable": self.replayable}
        (folder / "lsp.json").write_text(json.dumps(state))

    def load(self, folder: Path) -> None:
        state = json.loads((folder / "lsp.json").read_text())
        self.reward_source.load_state_dict(state["reward"])
        self.asked = state.get("asked", {})
        self.replayable = state.get("replayable", [])
        if self.judge:
            self.judge.load_state_dict(state["judge"])


def novelty_bonus(scale: float, asked: float) -> float:
    """The exploration bonus of a query asked `asked` times before (faded): scale / sqrt(1 + n)."""
    return scale / math.sqrt(1.0 + asked)


def faded_counts(asked: dict[str, float], queries: list[str], decay: float) -> dict[str, float]:
    """n(q) after a step: the earlier counts times `decay`, plus this step's; a count faded below
    1e-3 is dropped (its bonus is within 0.05% of a never-asked query's), which bounds the table
    when the Challenger writes free text."""
    counts = {q: n * decay for q, n in asked.items() if n * decay >= 1e-3}
    for q in queries:
        counts[q] = counts.get(q, 0.0) + 1.0
    return counts


def _linear(start: float, final: float | None, steps: int, step: int) -> float:
    """A value that moves linearly from `start` to `final` over the first `steps` steps (step
    counted from 0; `start` before it), then stays; constant when `final` is None."""
    if final is None:
        return start
    return start + min(max(step / steps, 0.0), 1.0) * (final - start)


def _fill(template: str, characters: str) -> str:
    """`_fill("{}+{}", "34")` -> "3+4": each `{}` takes the next character, literally; fewer
    characters than slots cut the template after the last one filled (`_fill("{}+{}+{}=", "34")`
    -> "3+4=")."""
    parts = template.split("{}")
    return "".join(part + char for part, char in zip(parts, characters)) + parts[-1]


def _unfill(template: str, text: str) -> str:
    """The characters that fill `template`'s slots to make `text`, as `_fill` writes it:
    `_unfill("{}+{}", "3+4")` -> "34"; `_unfill("{}+{}+{}=", "3+4=")` -> "34" (the template cut)."""
    parts = template.split("{}")
    for slots in range(len(parts) - 1, 0, -1):
        pattern = "".join(re.escape(part) + "(.)" for part in parts[:slots]) + re.escape(parts[-1])
        match = re.fullmatch(pattern, text)
        if match:
            return "".join(match.groups())
    raise ValueError(f"{text!r} does not fit the template {template!r}")


def looks_like_code(text: str) -> bool:
    """An answer written as code (LSP-Zero's reward hack: ordinary questions answered in Python)."""
    return "```" in text or "def " in text or "import " in text
