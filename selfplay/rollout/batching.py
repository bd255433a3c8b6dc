"""Turns many pending prompts into generation calls, whatever produced the prompts.

Two schedulings:
- `round`: every pending request in one `generate` call per generation limit (a round
  lasts as long as its longest answer).
- `token`: a token-level engine (`generator.engine`): each call adds the new requests and
  generates one token for every request in flight; an answer comes back as soon as it
  ends, while longer answers keep generating.

Every call's sampling seed is derived from the call count, so the count is the whole state.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Hashable

from selfplay.models.generation import Generation, Generator, SamplingParams
from selfplay.seeding import derive_seed

SCHEDULINGS = ("round", "token")

Request = tuple[Hashable, list[int], int]  # (key, prompt ids, max_new_tokens)


class Batcher:
    def __init__(self, generator: Generator, sampling: SamplingParams, scheduling: str = "round", seed: int = 0):
        if scheduling not in SCHEDULINGS:
            raise ValueError(f"scheduling must be one of {SCHEDULINGS}, got {scheduling!r}")
        self.generator, self.sampling, self.scheduling, self.seed = generator, sampling, scheduling, seed
        self._engine = None  # token scheduling: made on first use
        self.in_flight: dict[Hashable, list[int]] = {}  # token scheduling: key -> prompt of its answer
        self.calls = 0
        self.generated_tokens = 0

    def _next_seed(self) -> int:
        self.calls += 1
        return derive_seed(self.seed, self.calls, "generation")

    def generate(self, requests: list[Request]) -> list[tuple[Hashable, list[int], Generation]]:
        """Round scheduling: answer every request, one call per generation limit."""
        groups: dict[int, list[tuple[Hashable, list[int]]]] = {}
        for key, prompt, limit in requests:
            groups.setdefault(limit, []).append((key, prompt))
        out = []
        for limit, group in sorted(groups.items()):
            gens = self.generator.generate([p for _, p in group], replace(self.sampling, max_new_tokens=limit),
                                           seed=self._next_seed())
            out += [(key, prompt, gen) for (key, prompt), gen in zip(group, gens)]
        self.generated_tokens += sum(len(gen.response_ids) for _, _, gen in out)
        return out

    def step(self, requests: list[Request]) -> list[tuple[Hashable, list[int], Generation]]:
        """Token scheduling: add `requests` (as many as `generator.max_batch_size` leaves room
        for; the caller offers the rest again), generate one token for every request in
        flight, and return the answers that ended."""
        if self._engine is None:
            self._engine = self.generator.engine(self.sampling)
        cap = self.generator.max_batch_size  # the most requests in flight at once
        if cap:
            requests = requests[:max(cap - len(self.in_flight), 0)]
        for key, prompt, _ in requests:
            self.in_flight[key] = prompt
        if not self.in_flight:
            return []
        out = [(key, self.in_flight.pop(key), gen) for key, gen in self._engine.step(requests, seed=self._next_seed())]
        self.generated_tokens += sum(len(gen.response_ids) for _, _, gen in out)
        return out

    def state_dict(self) -> dict:
        return {"calls": self.calls, "generated_tokens": self.generated_tokens}

    def load_state_dict(self, state: dict) -> None:
        self.calls, self.generated_tokens = state["calls"], state["generated_tokens"]
