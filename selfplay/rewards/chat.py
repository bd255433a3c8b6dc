"""Text backends for judges: a batch of prompts in, one reply per prompt out, never an exception.

    chat = ModelChat(model, tokenizer, generator, SamplingParams(temperature=0, max_new_tokens=512))
    chat = EndpointChat("gpt-4o-mini", base_url="http://localhost:8000/v1", api_key_env="")
    replies = chat.complete(["prompt 1", "prompt 2"])      # list[Reply], in order

A judge (selfplay.rewards.judge, selfplay.rewards.pairwise) builds its prompts, asks a
backend, and parses the replies. Whatever goes wrong with one prompt (an HTTP error, a
prompt longer than the model's context) comes back as that prompt's `Reply.error`, so one
bad request never costs the batch.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, Sequence
from urllib.parse import urlparse

from selfplay.models.generation import HFGenerator, SamplingParams, single_token_ids
from selfplay.models.loading import render_prompt
from selfplay.seeding import derive_seed

MAX_ERROR_CHARS = 300  # an error goes into a one-line reason; an HTML error page would drown it


@dataclass(frozen=True)
class Reply:
    text: str  # the judge's answer; "" when there is none
    error: str | None = None  # why there is no answer, one line (None: the call succeeded)
    truncated: bool = False  # the answer hit the token limit before it ended
    # a tag readout's probabilities of its choices, in order (None: the judge wrote its answer)
    weights: tuple[float, ...] | None = None


class Chat(Protocol):
    def complete(self, prompts: list[str]) -> list[Reply]: ...


def one_line(error: BaseException | str) -> str:
    """`error` as one short line: its type and message, newlines folded, long text cut."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


class ModelChat:
    """A local causal LM (e.g. LSP's frozen reference model), all prompts in one `generate` call.

    Prompts go through the chat template when the tokenizer has one (render_prompt). A prompt
    whose tokens plus `sampling.max_new_tokens` exceed the model's context gets an error reply
    instead of being generated past the positions the model was trained on.

    `seed`: generation call k samples with derive_seed(seed, k, "agent"), so a judge that
    samples (temperature > 0) is reproducible and resumable (`state_dict` keeps k); None
    leaves sampling to the global RNG. Greedy judging (temperature 0) needs no seed.

    `tag_choice=(tag, choices)`, e.g. ("score", ("0", "1", ..., "7")): for a model too small to write a
    justification that ends in the verdict's tags. The judge's turn is prefilled with `<tag>`
    and nothing is sampled: the reply is `<tag>X</tag>` with X the most likely of the one-token
    `choices` (so the same parser reads it), and `Reply.weights` holds the choices'
    probabilities renormalised over them (a score's expected value is then a graded reward
    rather than one point that is the same for every answer). The verdict is always readable,
    but it is the model's first token, with no reasoning before it.
    """

    def __init__(self, model, tokenizer, generator=None, sampling: SamplingParams | None = None, *,
                 seed: int | None = None, use_chat_template: bool | None = None,
                 tag_choice: tuple[str, Sequence[str]] | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.generator = generator if generator is not None else HFGenerator(model, tokenizer)
        self.sampling = sampling if sampling is not None else SamplingParams(temperature=0.0, max_new_tokens=512)
        self.prefill: list[int] = []
        self.tag = None
        if tag_choice is not None:
            self.tag, choices = tag_choice
            ids = single_token_ids(tokenizer, choices)
            if ids is None:
                raise ValueError(f"tag_choice {tag_choice}: each choice must be one token of this tokenizer")
            self.prefill = tokenizer(f"<{self.tag}>", add_special_tokens=False)["input_ids"]
            self.choices, self.choice_ids = tuple(choices), ids
        self.seed = seed
        self.use_chat_template = use_chat_template
        self.calls = 0  # generate calls made; the index of the next call's seed
        config = getattr(model, "config", None)
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.context = getattr(text_config, "max_position_embeddings", None)  # None: no check

    def complete(self, prompts: list[str]) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(prompts)
        todo, ids = [], []
        for i, prompt in enumerate(prompts):
            tokens = render_prompt(self.tokenizer, prompt, use_chat_template=self.use_chat_template) + self.prefill
            new_tokens = 0 if self.tag is not None else self.sampling.max_new_tokens
            if self.context is not None and len(tokens) + new_tokens > self.context:
                replies[i] = Reply("", f"the judge prompt has {len(tokens)} tokens; with max_new_tokens "
                                       f"{new_tokens} it exceeds the model's context of "
                                       f"{self.context} (lower max_chars)")
            elif not tokens:
                replies[i] = Reply("", "the judge prompt is empty")
            else:
                todo.append(i)
                ids.append(tokens)
        if ids and self.tag is not None:  # the verdict is the first token: read, not sampled
            for i, logprobs in zip(todo, self.generator.next_token_logprobs(ids, self.choice_ids)):
                top = max(logprobs)
                weights = [math.exp(lp - top) for lp in logprobs]
                total = sum(weights)
                weights = tuple(w / total for w in weights)
                best = self.choices[weights.index(max(weights))]
                replies[i] = Reply(f"<{self.tag}>{best}</{self.tag}>", weights=weights)
        elif ids:
            seed = None if self.seed is None else derive_seed(self.seed, self.calls, "agent")
            self.calls += 1
            for i, generation in zip(todo, self.generator.generate(ids, self.sampling, seed)):
                replies[i] = Reply(generation.text, None, generation.truncated)
        return replies

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state.get("calls", 0))


class EndpointChat:
    """An OpenAI-compatible chat endpoint: one user message per prompt, `concurrency` at a time.

    The API key is read from the environment variable `api_key_env` ("" or None: an endpoint
    that needs no key, e.g. a local vLLM server). Every failure of a request (HTTP status,
    connection, timeout after `max_retries`, a reply of the wrong shape) becomes that prompt's
    error reply; only a bad configuration raises, at construction.
    """

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str | None = "OPENAI_API_KEY", *,
                 temperature: float = 0.0, max_tokens: int = 1024, timeout: float = 60.0,
                 max_retries: int = 2, concurrency: int = 8):
        try:
            import openai
        except ImportError as e:  # optional dependency
            raise ImportError("an endpoint judge needs the openai package: pip install 'selfplay[openai]'") from e
        self._openai = openai
        if not model:
            raise ValueError("an endpoint judge needs a model name, e.g. judge:openai:gpt-4o-mini")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if base_url is not None:
            parsed = urlparse(base_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"base_url {base_url!r} is not an http(s) URL, e.g. http://localhost:8000/v1")
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ValueError(f"environment variable {api_key_env} (the API key) is not set; set it, or "
                                 "pass api_key_env='' for an endpoint that needs no key")
        else:
            api_key = "none"  # the client insists on a key; keyless local servers ignore it
        self.model = model
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self.concurrency = max(1, int(concurrency))
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)

    def _complete_one(self, prompt: str) -> Reply:
        try:
            reply = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}],
                temperature=self.temperature, max_tokens=self.max_tokens,
            )
            choice = reply.choices[0]
            return Reply(choice.message.content or "", None, choice.finish_reason == "length")
        # an endpoint error, or a reply without choices/message: both are this prompt's failure
        except (self._openai.OpenAIError, AttributeError, IndexError, KeyError, TypeError, ValueError) as error:
            return Reply("", f"endpoint error: {one_line(error)}")

    def complete(self, prompts: list[str]) -> list[Reply]:
        if len(prompts) <= 1 or self.concurrency == 1:
            return [self._complete_one(p) for p in prompts]
        with ThreadPoolExecutor(min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(self._complete_one, prompts))
