"""The language model as a player: SPIRAL's prompt, batched moves, action probabilities.

`GamePrompter` turns a game's observation into prompt token ids (the rollout uses it
for the learner's turns); `LLMAgent` is the same policy as an arena agent, so a model
can be evaluated against `random`, `minimax` or `nash`, or played by a person.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from selfplay.agents.base import Agent
from selfplay.agents.prompt import game_messages
from selfplay.games.base import Game
from selfplay.models.loading import render_messages
from selfplay.seeding import derive_seed


class GamePrompter:
    """Observation -> prompt ids. `chat` games get SPIRAL's template, or the `brief` prompt
    (through the tokenizer's chat template when asked); `compact` games are fed raw, a
    handful of tokens for tiny models."""

    def __init__(self, tokenizer, use_chat_template: bool | None = None, cache_size: int = 65536,
                 prompt: str = "paper"):
        self.tokenizer = tokenizer
        self.use_chat_template = use_chat_template  # None: the template if the tokenizer has one
        self.prompt = prompt  # paper | brief (see agents/prompt.py)
        self._cache: OrderedDict[tuple[str, str], list[int]] = OrderedDict()
        self.cache_size = cache_size

    def ids(self, game: Game) -> list[int]:
        key = (game.style, game.observation())  # the observation fixes the prompt
        ids = self._cache.get(key)
        if ids is None:  # compact observations repeat a lot: tokenise each once
            ids = (self.tokenizer(key[1], add_special_tokens=False)["input_ids"] if game.style == "compact" else
                   render_messages(self.tokenizer, game_messages(game, self.prompt),
                                   use_chat_template=self.use_chat_template))
            self._cache[key] = ids
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return list(ids)


class LLMAgent(Agent):
    """A causal LM playing through `generator` (batched), sampling at `temperature`
    (0 = greedy)."""

    name = "llm"
    style: str | None = None  # the observation style the model was trained on, when known

    def __init__(self, model, tokenizer, generator, sampling, seed: int | None = None,
                 use_chat_template: bool | None = None, prompt: str = "paper"):
        super().__init__(seed)
        self.model, self.tokenizer, self.generator, self.sampling = model, tokenizer, generator, sampling
        self.prompter = GamePrompter(tokenizer, use_chat_template, prompt=prompt)
        self._calls = 0
        self._seed = 0 if seed is None else seed

    def seed(self, seed: int | None) -> None:
        super().seed(seed)
        self._seed, self._calls = (0 if seed is None else seed), 0

    def state_dict(self) -> dict:
        # each generation call is seeded from the call count, so the count is the state
        return {**super().state_dict(), "calls": self._calls}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._calls = state["calls"]

    def act(self, game: Game) -> str:
        return self.act_batch([game])[0]

    def act_batch(self, games: list[Game]) -> list[str]:
        self._calls += 1
        gens = self.generator.generate(
            [self.prompter.ids(g) for g in games], self.sampling, seed=derive_seed(self._seed, self._calls, "agent")
        )
        return [g.text for g in gens]

    def action_probabilities(self, game: Game) -> dict[str, float]:
        return self.action_probabilities_batch([game])[0]

    @torch.no_grad()
    def action_probabilities_batch(self, games: list[Game]) -> list[dict[str, float]]:
        """P(action) proportional to the model's probability of answering with exactly
        that action's text then end-of-sequence, renormalised over the legal actions;
        every candidate of every game is scored in one forward pass.
        (In `chat` style this scores the boxed answer given with no reasoning.) An answer
        that fills `max_new_tokens` ends there whatever comes next, so it gets no
        end-of-sequence factor: with one-token moves the policy is the next-token softmax."""
        eos = self.tokenizer.eos_token_id
        limit = self.sampling.max_new_tokens if self.sampling is not None else None
        rows, owners = [], []  # (prompt, answer) per candidate; (game index, action)
        for i, game in enumerate(games):
            prompt = self.prompter.ids(game)
            for action in game.legal_actions():
                answer = self.tokenizer(game.format_action(action), add_special_tokens=False)["input_ids"]
                if limit is None or len(answer) < limit:
                    answer = answer + [eos]
                rows.append((prompt, answer))
                owners.append((i, action))
        width = max(len(p) + len(a) for p, a in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (prompt, answer) in enumerate(rows):  # right padding: positions start at 0
            ids[r, : len(prompt) + len(answer)] = torch.tensor(prompt + answer)
            mask[r, : len(prompt) + len(answer)] = 1
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        scores: list[dict[str, float]] = [{} for _ in games]
        for r, ((prompt, answer), (i, action)) in enumerate(zip(rows, owners)):
            start = len(prompt) - 1  # the logits at position t predict token t + 1
            tokens = torch.tensor(answer, device=device)
            scores[i][action] = logp[r, start : start + len(answer)].gather(1, tokens[:, None]).sum()
        out = []
        for per_game in scores:
            probs = torch.softmax(torch.stack(list(per_game.values())), dim=0).tolist()
            out.append(dict(zip(per_game, probs)))
        return out

def load_llm_agent(argument: str | None, **options) -> LLMAgent:
    """`llm:RUN_DIR_OR_MODEL`: the latest checkpoint of a run folder (its config gives the
    style and sampling settings), a checkpoint folder, a tiny preset or any Hugging Face id."""
    from selfplay.runs import resolve_model

    if not argument:
        raise ValueError("the llm agent needs a model: llm:RUN_DIR, llm:CHECKPOINT_DIR or llm:MODEL_ID")
    return llm_agent_from(resolve_model(argument), **options)


def llm_agent_from(source, *, temperature: float | None = None, top_p: float = 1.0,
                   max_new_tokens: int | None = None, seed: int | None = None, device: str = "auto",
                   use_chat_template: bool | None = None) -> LLMAgent:
    """An LLMAgent for a resolved `selfplay.runs.ModelSource`; settings not given come from
    the run's config (how it was evaluated), else defaults."""
    from selfplay.models import HFGenerator, SamplingParams, load_model

    config = source.config
    model_cfg = config.get("model") or {}
    if temperature is None:
        temperature = (config.get("eval") or {}).get("temperature", 1.0)
    if max_new_tokens is None:
        max_new_tokens = (config.get("sampling") or {}).get("max_new_tokens", 4096)
    if use_chat_template is None:
        use_chat_template = model_cfg.get("use_chat_template")
    model, tokenizer = load_model(source.path, dtype=model_cfg.get("dtype", "auto"), device=device,
                                  seed=int(config.get("seed", 0)))  # a tiny LoRA base: the run's seed
    sampling = SamplingParams(float(temperature), top_p, int(max_new_tokens))  # stop: EOS and <|im_end|>
    recipe = config.get("recipe") or {}
    agent = LLMAgent(model, tokenizer, HFGenerator(model, tokenizer), sampling, seed, use_chat_template,
                     prompt=recipe.get("prompt", "paper"))  # the prompt it was trained with
    agent.style = recipe.get("style")  # the style it was trained on (None: unknown)
    return agent
