"""AZR, Absolute Zero: one model proposes Python tasks and solves them (ALGORITHMS.md section 3).

Three task types over a program f (selfplay.tasks.programs): deduction (f, x -> y), abduction
(f, y -> x) and induction (pairs -> f), each with two roles. Every step:

    propose   for each type, N proposals; a deduction or abduction proposer sees K references
              drawn without replacement from its type's buffer, an induction proposer one
              program from the deduction and abduction buffers, and writes inputs and a message
    validate  in the sandbox only: parses, defines f, no banned module by any route, runs
              within the timeout, the same output in two fresh processes with different hash
              seeds, the output a literal of built-in types within the size limit
    learn     n solver attempts at temperature 1 on each valid proposal (not trained on):
              solve rate s, r_propose = 1 - s if 0 < s < 1 else 0
    solve     N tasks per type, from the previous step's valid proposals filled up from the
              buffers (the original's timing); r_solve = 1 if correct
    buffers   every valid proposal joins its type's buffer (deduplicated, the newest kept)
    TRR++     A = (r - mean) / (std + eps) per (task type, role): six baselines

Choices, each an option (the original's in brackets):
- `penalties: paper` (default): an invalid or badly formatted response gets -1, a well
  formatted wrong answer -0.5, a valid proposal with s in {0, 1} gets 0 (the paper's
  equation). `code` [the authors' code] gives that proposal -0.5; `none` gives 0 to all three.
- `solver_tasks: previous` [the original] or `same` (this step's proposals).
- `token_weighted: false` (the paper's per-sequence TRR++) or true [the code's token weighting].
- `solve_weight: 1` [the paper]: the solver samples' weight in the loss; above 1 it is a
  larger step for the solver alone.
- `train_attempts: false` [the paper]: the n learnability attempts only measure s. true: they
  are solver samples too (n answers per valid proposal, already generated and graded), which
  gives the solver n times the answers per step at no extra generation.
- `executor_answers` (none by default; not the paper's): per task type, this many solver
  tasks (the step's first, then from the buffer) also yield their right answer, as the
  sandbox computed it when the task was proposed, as a written solver sample with reward 1.
  Its advantage is `executor_advantage` (1: a cross-entropy step on the right answer), apart
  from TRR++, whose solver baseline stays the sampled answers' own; `executor_in_group: true`
  puts them in the solver's TRR++ group instead, as LUFFY (Yan et al., 2025) mixes a
  teacher's traces into GRPO's groups, where many right answers beside few sampled ones turn
  the baseline into theirs (each gets a small advantage, each wrong sampled answer a large
  negative one). The teacher is the executor, so the run stays data-free. Compact style only.
- The validity checks of the original are replaced (ALGORITHMS.md lists its quirks): banned
  modules by any route (AST), determinism across processes, outputs whole up to
  `output_max_chars`, helper functions allowed, buffers deduplicated, keeping the newest.
  A proposed f must also take an argument and read it, and must not print: the paper's
  prompt asks for both and the original checks neither (a constant f makes abduction trivial).
- `novelty_reward`, `complexity_reward` (0 by default, as in the paper's runs; the authors' code
  has both, off): added to a valid deduction or abduction proposal's reward, capped together at
  `intrinsic_max`. Novelty is the text distance to the nearest reference (so a copy earns 0),
  complexity the AST nodes beyond the seed program's.
- `repeat_penalty` (0 by default; not the paper's): subtracted from a valid proposal's reward
  when its task (program and inputs) is already in its type's buffer or is proposed more than
  once in the step, as R-Zero's repetition penalty (and LSP's here) pays a Challenger less for
  the queries it repeats. A proposer whose solver has learned its tasks otherwise narrows onto
  a few and proposes them again (docs/azr.md).
- `seed_programs` (0 by default; the authors use 256): before the first step, grow the
  deduction and abduction buffers to this many valid programs with the untrained model.
- `templates` (compact style; none by default): each deduction or abduction proposal is
  given a program with `{}` slots, drawn uniformly, and writes only digits, the constants
  and the input. A random model cannot write the whole expression often enough to learn
  from it, and one that can write `a|1` settles on the identity program (docs/azr.md).
- Held-out evaluation programs (selfplay.evals.program_bank) are rejected as proposals,
  so no training run proposes them.

Sections: config, collect (propose, validate, learnability, solve), rewards, advantages,
evaluate, state.
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field, model_validator

from selfplay.algorithms.advantages import learnability_reward, trr_plus_plus_advantages
from selfplay.models.generation import alphabet_token_ids
from selfplay.models.loading import render_messages, style_prompt_ids
from selfplay.recipes import Batch, Evaluation, Recipe, RecipeSection
from selfplay.rollout.sample import Sample
from selfplay.sandbox import LAYERS, Sandbox, SandboxConfig
from selfplay.seeding import derive_seed
from selfplay.tasks.programs import (PROPOSE, SOLVE, TASK_TYPES, Checker, CompactStyle, ProgramTask, ast_size,
                                     held_out_tasks, make_style, program_distance)

CHAT_OUTPUTS = 200  # the longest output of a held-out chat program (selfplay.evals.program_bank)
PER_TYPE = {"deduction": 64, "abduction": 64, "induction": 64}  # the paper's batch: 64 per (type, role)


class Given(NamedTuple):
    """What one proposer sees (the arguments of `Style.propose_prompt` after the task type)."""

    references: list[ProgramTask]  # K tasks from its type's buffer (deduction, abduction)
    program: ProgramTask | None  # induction: the program to write inputs for
    template: str  # compact `templates`: the program with `{}` slots to fill; "" for none


def finished(generation) -> str | None:
    """The response's text, or None (badly formatted) if it ran into the length limit: it never
    said it was done. A compact answer `13` cut at two tokens would otherwise be graded as 13,
    and nothing would keep the stop token in a model that shares it between roles."""
    return None if generation.truncated else generation.text


def by_type(kinds: list[str], run) -> list:
    """`run(kind, indices)` once per task type (the checker's calls are per type), its results
    put back in the order of `kinds`."""
    out = [None] * len(kinds)
    for kind in TASK_TYPES:
        mine = [i for i, k in enumerate(kinds) if k == kind]
        for i, result in zip(mine, run(kind, mine) if mine else []):
            out[i] = result
    return out


# ---- config ---------------------------------------------------------------------------------
class SandboxSection(RecipeSection):
    workers: int = Field(2, ge=1)
    timeout_s: float = Field(10.0, gt=0)  # per program run (the paper: 10 s)
    memory_mb: int = Field(256, gt=0)
    # a longer output makes the proposal invalid (the original cuts outputs at 400 characters,
    # which leaves them unsolvable); outputs go into abduction prompts, so keep it modest
    output_max_chars: int = Field(1_000, gt=0)
    require: list[str] = ["all"]  # isolation layers without which the run refuses to start


class Config(RecipeSection):
    name: Literal["azr"] = "azr"
    style: Literal["compact", "chat"] = "compact"  # compact: tiny models on a CPU; chat: the paper's format
    propose: dict[str, int] = dict(PER_TYPE)  # proposals per step, per task type
    solve: dict[str, int] = dict(PER_TYPE)  # solver tasks per step, per task type
    references: int = Field(6, ge=0)  # K: reference tasks shown to a deduction/abduction proposer
    attempts: int = Field(8, ge=1)  # n: solver attempts per valid proposal for its learnability
    induction_inputs: int = Field(10, ge=2)  # inputs an induction proposer writes
    induction_shown: int = Field(5, ge=1)  # of which the solver sees the first; scored on the rest
    penalties: Literal["paper", "code", "none"] = "paper"
    solver_tasks: Literal["previous", "same"] = "previous"
    token_weighted: bool = False  # TRR++ weighted by response tokens (the authors' code)
    train_attempts: bool = False  # the learnability attempts are solver samples too (not the paper's)
    # the solver samples' weight in the loss (1: the paper's): above 1, a larger step for the
    # solver alone, while the proposer keeps the learning rate its validity tolerates
    solve_weight: float = Field(1.0, gt=0)
    # per task type: solver tasks whose right answer (the sandbox's, from when the task was
    # proposed) is also a solver sample with reward 1 (not the paper's; compact style)
    executor_answers: dict[str, int] = {}
    executor_advantage: float = Field(1.0, ge=0)  # their advantage, apart from TRR++
    executor_in_group: bool = False  # true: reward 1 in the solver's TRR++ group instead
    # chat style: `paper` asks the question alone; `example` shows one worked exchange in the
    # exact format first (for small chat models, which follow an example, not a description)
    prompt: Literal["paper", "example"] = "paper"
    # Intrinsic rewards (the authors' code has them, off in the paper's runs), added to a valid
    # deduction or abduction proposal's reward, the sum capped at intrinsic_max:
    novelty_reward: float = Field(0.0, ge=0)  # x the text distance (0-1) to the nearest reference
    complexity_reward: float = Field(0.0, ge=0)  # x the AST nodes beyond the seed program's
    intrinsic_max: float = Field(0.5, ge=0)
    # x [the valid proposal's task is in its buffer already, or proposed twice in the step]
    repeat_penalty: float = Field(0.0, ge=0)
    buffer_size: int = Field(16_384, gt=0)  # per task type; the newest entries are kept
    seed_programs: int = Field(0, ge=0)  # grow the seed buffers to this many programs before training
    # compact style: each deduction or abduction proposal gets one of these programs, drawn
    # uniformly, and writes a digit for each `{}` slot and then the input (`a*{}+{}` and `315`:
    # `a*3+1` with input 5). Empty: the proposer writes the whole expression after `a`.
    templates: list[str] = []
    propose_max_new_tokens: int | None = Field(None, gt=0)  # None: sampling.max_new_tokens
    solve_max_new_tokens: int | None = Field(None, gt=0)
    sandbox: SandboxSection = SandboxSection()
    eval_size: int = Field(64, gt=0)  # held-out tasks per type
    eval_transcripts: int = Field(2, ge=0)  # per type, written to transcripts.jsonl

    @model_validator(mode="after")
    def _consistent(self):
        for name, table in (("propose", self.propose), ("solve", self.solve), ("executor_answers", self.executor_answers)):
            unknown = set(table) - set(TASK_TYPES)
            if unknown:
                raise ValueError(f"{name}: unknown task types {sorted(unknown)}; allowed: {', '.join(TASK_TYPES)}")
            if any(n < 0 for n in table.values()):
                raise ValueError(f"{name}: batch sizes must be >= 0")
        if self.induction_shown >= self.induction_inputs:
            raise ValueError("induction_shown must be less than induction_inputs (the rest score the solver)")
        if self.style == "chat" and self.sandbox.output_max_chars < CHAT_OUTPUTS:
            raise ValueError(f"sandbox.output_max_chars: the held-out chat programs return up to {CHAT_OUTPUTS} "
                             f"characters; use at least {CHAT_OUTPUTS} with style chat")
        if self.templates and self.style != "compact":
            raise ValueError("templates are for style compact (chat proposals write the whole program)")
        for template in self.templates:
            if "{}" not in template or set(template.replace("{}", "")) - set(CompactStyle.EXPRESSION):
                raise ValueError(f"templates: {template!r} is not a compact expression with {{}} slots "
                                 f"(characters {CompactStyle.EXPRESSION})")
        if any(self.executor_answers.values()) and self.style != "compact":
            raise ValueError("executor_answers is for style compact (a chat answer is reasoning, not only the value)")
        if self.prompt == "example" and self.style != "chat":
            raise ValueError("prompt: example is for style chat (compact prompts have no worked example)")
        for layer in self.sandbox.require:
            if layer != "all" and layer not in LAYERS:
                raise ValueError(f"sandbox.require: unknown layer {layer!r}; allowed: all, {', '.join(LAYERS)}")
        return self


class AZRRecipe(Recipe):
    name = "azr"
    Config = Config

    def __init__(self, cfg: Config, policy, context):
        super().__init__(cfg, policy, context)
        self.style = make_style(cfg.style, worked_example=cfg.prompt == "example", templated=bool(cfg.templates))
        box = cfg.sandbox
        # Starts the workers now: a missing isolation layer stops the run here, saying which.
        self.sandbox = Sandbox(SandboxConfig(workers=box.workers, timeout_s=box.timeout_s, memory_mb=box.memory_mb,
                                             value_max=box.output_max_chars, require=tuple(box.require)))
        self.sandbox.start()
        self.checker = Checker(self.sandbox, self.style, timeout_s=box.timeout_s,
                               induction_inputs=cfg.induction_inputs)
        self.held_out = held_out_tasks(self.checker, cfg.eval_size, cfg.induction_inputs)  # fixed in every run
        self.checker.held_out = frozenset(t.program.strip() for tasks in self.held_out.values() for t in tasks)
        self.buffers: dict[str, list[ProgramTask]] = {kind: [] for kind in TASK_TYPES}
        self.pending: dict[str, list[ProgramTask]] = {kind: [] for kind in TASK_TYPES}  # last step's proposals
        self.seeded = False
        self.recent: list[dict] = []  # a few of the last step's valid proposals, for transcripts.jsonl
        self._seed_buffers()

    # ---- sampling -------------------------------------------------------------------------------
    def sampling(self, kind: str, role: str, temperature: float | None = None):
        """The run's sampling, with this role's length, and the style's alphabet if it has one."""
        params = self.context.sampling
        length = self.cfg.propose_max_new_tokens if role == PROPOSE else self.cfg.solve_max_new_tokens
        return replace(params, max_new_tokens=length or params.max_new_tokens,
                       allowed_token_ids=self.allowed_ids(self.style.alphabet(kind, role)),
                       temperature=params.temperature if temperature is None else temperature)

    @functools.cache
    def allowed_ids(self, alphabet: str | None) -> tuple[int, ...] | None:
        """The token ids of the alphabet's characters, and the stop tokens."""
        if alphabet is None:
            return None
        ids = alphabet_token_ids(self.policy.model, self.policy.tokenizer, alphabet)
        if ids is None:
            raise ValueError(f"style {self.style.name!r} needs a character-level tokenizer (model: tiny)")
        return ids

    def prompt_ids(self, kind: str, role: str, text: str) -> list[int]:
        """The prompt's ids; in chat style they end with the opening `<think>`, as the paper's do,
        and `prompt: example` puts a worked exchange for (kind, role) before the question."""
        tokenizer = self.policy.tokenizer
        example = self.style.example(kind, role, self.cfg.induction_shown)
        if example:
            messages = [{"role": "user", "content": example[0]}, {"role": "assistant", "content": example[1]},
                        {"role": "user", "content": text}]
            ids = render_messages(tokenizer, messages, use_chat_template=self.policy.use_chat_template)
        else:
            ids = style_prompt_ids(tokenizer, text, self.cfg.style, self.policy.use_chat_template)
        if self.cfg.style == "chat":
            ids += tokenizer("<think>", add_special_tokens=False)["input_ids"]
        return ids

    def generate(self, jobs: list[tuple[str, str, str]], seed: int, generator=None, temperature=None):
        """Generations for (kind, role, prompt text) jobs, in order: one generate call per
        distinct sampling (a compact answer's alphabet depends on its kind and role)."""
        generator = generator or self.policy.generator
        params = [self.sampling(kind, role, temperature) for kind, role, _ in jobs]
        out = [None] * len(jobs)
        for k, p in enumerate(dict.fromkeys(params)):
            mine = [i for i, q in enumerate(params) if q == p]
            generations = generator.generate([self.prompt_ids(*jobs[i]) for i in mine], p, seed=seed + 1_000_003 * k)
            for i, g in zip(mine, generations):
                out[i] = g
        return out

    # ---- collect --------------------------------------------------------------------------------
    def collect(self, step: int) -> Batch:
        cfg, rng = self.cfg, random.Random(derive_seed(self.context.seed, step, "prompts"))
        if cfg.seed_programs and not self.seeded:
            self.grow_seed_buffers()
        sandbox_before, programs_before = self.checker.sandbox_seconds, self.checker.programs_run
        # Propose, for the three types at once; then validate in the sandbox.
        asks = [(kind, given) for kind in TASK_TYPES for given in self.givens(kind, cfg.propose.get(kind, 0), rng)]
        proposals = self.generate([(kind, PROPOSE, self.style.propose_prompt(kind, *given))
                                   for kind, given in asks], derive_seed(self.context.seed, 4 * step, "generation"))
        verdicts = by_type([kind for kind, _ in asks], lambda kind, mine: self.checker.check_proposals(
            kind, [finished(proposals[i]) for i in mine], [asks[i][1].program for i in mine],
            [asks[i][1].template for i in mine]))
        valid = {kind: [v.task for (k, _), v in zip(asks, verdicts) if k == kind and v.valid] for kind in TASK_TYPES}
        # Solve tasks: last step's proposals (or this step's), filled up from the buffers.
        source = self.pending if cfg.solver_tasks == "previous" else valid
        solve_tasks = {kind: self.fill(kind, source[kind], cfg.solve.get(kind, 0), rng) for kind in TASK_TYPES}
        # Learnability attempts (their owner is the proposal's index; trained on only with
        # `train_attempts`) and solver answers (owner None), generated together, then graded.
        jobs = [(asks[i][0], v.task, i) for i, v in enumerate(verdicts) if v.valid for _ in range(cfg.attempts)]
        jobs += [(kind, task, None) for kind in TASK_TYPES for task in solve_tasks[kind]]
        answers = self.generate([(kind, SOLVE, self.style.solve_prompt(kind, task, cfg.induction_shown))
                                 for kind, task, _ in jobs], derive_seed(self.context.seed, 4 * step + 1, "generation"))
        grades = by_type([kind for kind, _, _ in jobs], lambda kind, mine: self.checker.grade(
            kind, [jobs[i][1] for i in mine], [finished(answers[i]) for i in mine], cfg.induction_shown))
        solved = Counter(owner for (_, _, owner), grade in zip(jobs, grades) if owner is not None and grade.correct)
        repeats = self.repeats([kind for kind, _ in asks], verdicts)
        # Samples: proposals and solver answers, with their rewards.
        samples = []
        for n, ((kind, given), generation, verdict) in enumerate(zip(asks, proposals, verdicts)):
            s = solved[n] / cfg.attempts if verdict.valid else None
            intrinsic = self.intrinsic_reward(verdict, given.references)
            reward = self.propose_reward(verdict, s) + intrinsic - cfg.repeat_penalty * repeats[n]
            samples.append(self.sample(generation, kind, PROPOSE, reward, step, n, {
                "intrinsic": intrinsic, "repeat": repeats[n],
                "text": generation.text, "valid": verdict.valid, "reason": verdict.reason,
                "well_formatted": verdict.well_formatted, "solve_rate": s, "ast_nodes": verdict.ast_nodes,
                "task": verdict.task.to_dict() if verdict.valid else None}))
        for n, ((kind, task, owner), generation, grade) in enumerate(zip(jobs, answers, grades), start=len(asks)):
            if owner is None or cfg.train_attempts:
                samples.append(self.sample(generation, kind, SOLVE, self.solve_reward(grade), step, n, {
                    "text": generation.text, "correct": grade.correct, "reason": grade.reason,
                    "well_formatted": grade.well_formatted, "task": task.to_dict(), "attempt": owner is not None,
                    "executor": False}))
        if any(cfg.executor_answers.values()):
            told = {kind: self.fill(kind, solve_tasks[kind], cfg.executor_answers.get(kind, 0), rng) for kind in TASK_TYPES}
            samples += self.executor_samples(told, step, len(asks) + len(jobs))
        for kind in TASK_TYPES:
            self.add(kind, valid[kind])
        self.pending = valid
        self.recent = [{"step": step + 1, "task": s.task, "role": PROPOSE, "solve_rate": s.info["solve_rate"],
                        "reward": s.reward, **s.info["task"]} for kind in TASK_TYPES
                       for s in [s for s in samples if s.task == kind and s.role == PROPOSE and s.info["valid"]][:2]]
        metrics = self.step_metrics(samples, self.checker.sandbox_seconds - sandbox_before)
        metrics["azr/sandbox_programs"] = self.checker.programs_run - programs_before
        return Batch(samples, metrics)

    def givens(self, kind: str, count: int, rng: random.Random) -> list[Given]:
        """What each proposer of `kind` sees: K references and a program template if there are
        any (deduction, abduction), or the program to write inputs for (induction, from the
        deduction and abduction buffers)."""
        if kind == "induction":
            programs = self.buffers["deduction"] + self.buffers["abduction"]
            return [Given([], rng.choice(programs), "") for _ in range(count)]
        buffer, templates = self.buffers[kind], self.cfg.templates
        return [Given(rng.sample(buffer, min(self.cfg.references, len(buffer))), None,
                      rng.choice(templates) if templates else "") for _ in range(count)]

    def fill(self, kind: str, tasks: list[ProgramTask], count: int, rng: random.Random) -> list[ProgramTask]:
        """`count` solver tasks: the given ones first, then draws from the buffer."""
        tasks = list(tasks[:count])
        if len(tasks) < count and self.buffers[kind]:
            tasks += [rng.choice(self.buffers[kind]) for _ in range(count - len(tasks))]
        return tasks

    def executor_samples(self, tasks: dict[str, list[ProgramTask]], step: int, first: int) -> list[Sample]:
        """`executor_answers`: each task's right answer, written (not sampled) as the solver
        writes one, with reward 1; no sampler log-probs, so the learner uses its own. Answers
        longer than the solver's length limit are left out: it could not write them."""
        tokenizer, samples = self.policy.tokenizer, []
        for kind in TASK_TYPES:
            limit = self.sampling(kind, SOLVE).max_new_tokens
            for task in tasks[kind]:
                text = self.style.right_answer(kind, task)
                ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                if len(ids) > limit:
                    continue
                prompt = self.prompt_ids(kind, SOLVE, self.style.solve_prompt(kind, task, self.cfg.induction_shown))
                samples.append(Sample(prompt_ids=prompt, response_ids=ids, logprobs=[], task=kind, role=SOLVE,
                                      reward=1.0, episode_id=step * 1_000_000 + first + len(samples),
                                      weight=self.cfg.solve_weight,
                                      info={"text": text, "correct": True, "reason": "the executor's answer",
                                            "well_formatted": True, "task": task.to_dict(), "attempt": False,
                                            "executor": True}))
        return samples

    def sample(self, generation, kind: str, role: str, reward: float, step: int, n: int, info: dict) -> Sample:
        return Sample(prompt_ids=generation.prompt_ids, response_ids=generation.response_ids,
                      logprobs=generation.logprobs, task=kind, role=role, reward=reward,
                      episode_id=step * 1_000_000 + n, truncated=generation.truncated, info=info,
                      weight=self.cfg.solve_weight if role == SOLVE else 1.0)

    # ---- rewards --------------------------------------------------------------------------------
    def propose_reward(self, verdict, s: float | None) -> float:
        """Learnability 1 - s for 0 < s < 1; otherwise 0, or the penalties of `penalties`."""
        if not verdict.valid:
            return 0.0 if self.cfg.penalties == "none" else -1.0
        if self.cfg.penalties == "code" and s in (0.0, 1.0):
            return -0.5
        return learnability_reward(s)

    @functools.cached_property
    def seed_nodes(self) -> int:
        """AST nodes of the seed (identity) program: the complexity reward counts what a proposal adds."""
        return ast_size(self.style.source(self.style.seed_task()[0]))

    def intrinsic_reward(self, verdict, references: list[ProgramTask]) -> float:
        """Novelty (distance to the nearest reference, so a copy of one earns 0; the authors'
        code takes the mean distance, which pays a copy for differing from the other
        references) and size, for valid proposals that had references; 0 by default."""
        cfg = self.cfg
        if not verdict.valid or not references or not (cfg.novelty_reward or cfg.complexity_reward):
            return 0.0
        novelty = min(program_distance(verdict.task.program, ref.program) for ref in references)
        extra_nodes = max(0, verdict.ast_nodes - self.seed_nodes)
        return min(cfg.intrinsic_max, cfg.novelty_reward * novelty + cfg.complexity_reward * extra_nodes)

    def repeats(self, kinds: list[str], verdicts) -> list[bool]:
        """For each proposal: valid, and its task is in its type's buffer already (proposed at an
        earlier step, or a seed) or more than one of this step's proposals of the type."""
        keys = [(kind, v.task.key) if v.valid else None for kind, v in zip(kinds, verdicts)]
        count = Counter(keys)
        known = {kind: {t.key for t in self.buffers[kind]} for kind in set(kinds)}
        return [key is not None and (key[1] in known[key[0]] or count[key] > 1) for key in keys]

    def solve_reward(self, grade) -> float:
        if grade.correct:
            return 1.0
        if self.cfg.penalties == "none":
            return 0.0
        return -0.5 if grade.well_formatted else -1.0

    # ---- buffers --------------------------------------------------------------------------------
    def add(self, kind: str, tasks: list[ProgramTask]) -> None:
        """Append, deduplicated (a task seen again moves to the newest place), keep the newest."""
        if not tasks:
            return
        new = {t.key for t in tasks}
        kept = [t for t in self.buffers[kind] if t.key not in new] + list({t.key: t for t in tasks}.values())
        self.buffers[kind] = kept[-self.cfg.buffer_size:]

    def _seed_buffers(self) -> None:
        """Every buffer starts from the identity program, checked in the sandbox like any proposal."""
        program, inputs = self.style.seed_task()
        identity, identity_many = self.checker.run_tasks([(program, inputs),
                                                          (program, self.style.seed_inputs(self.cfg.induction_inputs))])
        self.add("deduction", [identity])
        self.add("abduction", [identity])
        self.add("induction", [identity_many])

    def grow_seed_buffers(self) -> None:
        """The authors' seeding: propose with the untrained model until the deduction and
        abduction buffers hold `seed_programs` tasks each (no training; at most 20 rounds)."""
        for round_ in range(20):
            short = [k for k in ("deduction", "abduction") if len(self.buffers[k]) < self.cfg.seed_programs]
            if not short:
                break
            rng = random.Random(derive_seed(self.context.seed, -1 - round_, "prompts"))
            asks = [(kind, given) for kind in short for given in self.givens(kind, self.cfg.propose.get(kind, 64) or 64, rng)]
            texts = [finished(g) for g in self.generate([(k, PROPOSE, self.style.propose_prompt(k, *given)) for k, given in asks],
                                                   derive_seed(self.context.seed, -1 - round_, "generation"))]
            for kind in short:
                mine = [i for i, (k, _) in enumerate(asks) if k == kind]
                verdicts = self.checker.check_proposals(kind, [texts[i] for i in mine], [None] * len(mine),
                                                        [asks[i][1].template for i in mine])
                self.add(kind, [v.task for v in verdicts if v.valid])
        self.seeded = True

    # ---- metrics --------------------------------------------------------------------------------
    def step_metrics(self, samples: list[Sample], sandbox_s: float) -> dict[str, float]:
        metrics: dict[str, float] = {"time/azr_sandbox_s": sandbox_s}  # under time/: not exact across runs
        for kind in TASK_TYPES:
            proposed = [s for s in samples if s.task == kind and s.role == PROPOSE]
            solved = [s for s in samples if s.task == kind and s.role == SOLVE
                      and not s.info["attempt"] and not s.info["executor"]]
            valid = [s for s in proposed if s.info["valid"]]
            prefix = f"azr/{kind}"
            if proposed:
                metrics[f"{prefix}/valid_proposals"] = len(valid) / len(proposed)
                metrics[f"{prefix}/format_errors"] = sum(not s.info["well_formatted"] for s in proposed) / len(proposed)
                metrics[f"{prefix}/reward_negative"] = sum(s.reward < 0 for s in proposed) / len(proposed)
            if valid:
                rates = [s.info["solve_rate"] for s in valid]
                metrics[f"{prefix}/learnability_positive"] = sum(0 < r < 1 for r in rates) / len(valid)
                metrics[f"{prefix}/learnability_zero"] = sum(r in (0, 1) for r in rates) / len(valid)
                metrics[f"{prefix}/proposer_solve_rate"] = sum(rates) / len(valid)
                metrics[f"{prefix}/distinct_programs"] = len({s.info["task"]["program"] for s in valid}) / len(valid)
                metrics[f"{prefix}/ast_nodes"] = sum(s.info["ast_nodes"] for s in valid) / len(valid)
                metrics[f"{prefix}/intrinsic_reward"] = sum(s.info["intrinsic"] for s in valid) / len(valid)
                metrics[f"{prefix}/repeated_proposals"] = sum(s.info["repeat"] for s in valid) / len(valid)
            if solved:
                metrics[f"{prefix}/solve_rate"] = sum(s.info["correct"] for s in solved) / len(solved)
                metrics[f"{prefix}/solve_format_errors"] = sum(not s.info["well_formatted"] for s in solved) / len(solved)
            metrics[f"{prefix}/buffer"] = len(self.buffers[kind])
            metrics[f"{prefix}/buffer_programs"] = len({t.program.strip() for t in self.buffers[kind]})
        return metrics

    # ---- advantages -----------------------------------------------------------------------------
    def advantages(self, batch: Batch) -> list[Sample]:
        """TRR++: one baseline per (task type, role) within the batch; `executor_answers` carry
        `executor_advantage` instead, unless `executor_in_group`."""
        apart = [not self.cfg.executor_in_group and s.info.get("executor", False) for s in batch.samples]
        trr_plus_plus_advantages([s for s, a in zip(batch.samples, apart) if not a], token_weighted=self.cfg.token_weighted)
        for s, a in zip(batch.samples, apart):
            if a:
                s.advantage = self.cfg.executor_advantage
        return batch.samples

    # ---- evaluate -------------------------------------------------------------------------------
    def evaluate(self, step: int) -> Evaluation:
        """The fixed held-out tasks (selfplay.evals.program_bank), one answer each at the
        evaluation temperature, graded in the sandbox: `eval/azr/<type>/solve_rate`, and the
        share of distinct answers `eval/azr/<type>/distinct_answers`. The
        transcripts hold a few answers and a few of the last step's proposals."""
        if not self.sandbox.started:  # evaluated again after the run closed it
            self.sandbox.start()
        metrics, rows = {}, list(self.recent)
        for kind, tasks in self.held_out.items():
            texts = [self.style.solve_prompt(kind, task, self.cfg.induction_shown) for task in tasks]
            generations = self.generate([(kind, SOLVE, text) for text in texts],
                                        derive_seed(self.context.seed, step, "evaluation"),
                                        generator=self.policy.eval_generator, temperature=self.context.eval_sampling.temperature)
            grades = self.checker.grade(kind, tasks, [finished(g) for g in generations], self.cfg.induction_shown)
            metrics[f"eval/azr/{kind}/solve_rate"] = sum(g.correct for g in grades) / len(grades)
            metrics[f"eval/azr/{kind}/format_errors"] = sum(not g.well_formatted for g in grades) / len(grades)
            # a solver that answers the same whatever the program scores what that constant is
            # right on: a few distinct answers say it learned the answers' marginal, not to read
            metrics[f"eval/azr/{kind}/distinct_answers"] = len({g.text for g in generations}) / len(generations)
            rows += [{"step": step, "task": kind, "prompt": text, "response": g.text, "correct": grade.correct,
                      "reason": grade.reason} for text, g, grade in
                     list(zip(texts, generations, grades))[: self.cfg.eval_transcripts]]
        return Evaluation(metrics, rows)

    # ---- state ----------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        state = {"buffers": {k: [t.to_dict() for t in v] for k, v in self.buffers.items()},
                 "pending": {k: [t.to_dict() for t in v] for k, v in self.pending.items()},
                 "seeded": self.seeded}
        (folder / "azr_state.json").write_text(json.dumps(state))

    def load(self, folder: Path) -> None:
        state = json.loads((folder / "azr_state.json").read_text())
        self.buffers = {k: [ProgramTask.from_dict(d) for d in v] for k, v in state["buffers"].items()}
        self.pending = {k: [ProgramTask.from_dict(d) for d in v] for k, v in state["pending"].items()}
        self.seeded = state["seeded"]

    def close(self) -> None:
        self.sandbox.close()
