"""Token-level continuous batching on one KV cache: requests join and leave at every step.

    engine = generator.engine(params)                      # an HFGenerator's
    done = engine.step([(key, prompt_ids, max_new_tokens), ...], seed=s)   # -> [(key, Generation)]

Each `step` prefills the new requests (one forward pass), merges them into the running
batch, samples one token for every row, hands back the rows that stopped (on a stop token
or at their own `max_new_tokens`) and runs one decode forward pass for the others. So a
caller (the rollout scheduler) can move a game on as soon as its own answer ends while
longer answers keep generating, instead of every round lasting as long as its longest
answer. vLLM's engine schedules requests the same way; this is the plain-PyTorch version.

The prompt prefix that joining requests share is run once (`PrefixCache`) and kept while
requests are in flight, so later requests that start with it (a game's next turn) run only
their own tokens. It is dropped whenever the engine runs empty and whenever the generator's
weights change: a cache is only valid for the weights that computed it.

Rows are right-aligned in the cache (left padding, masked out): a request whose prompt is
longer than the cache pads the running rows on the left, and columns that are padding in
every row are trimmed. Tokens and log-probs are those `HFGenerator.generate` would give
(the same sampler, log pi_theta at temperature 1); a step whose rows are all new is
exactly a `generate` call of one token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from selfplay.models.generation import (Generation, PrefixCache, SamplingParams, prefill, sample_next, token_logprobs,
                                       with_cache)


@dataclass
class _Row:
    key: object
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


class HFEngine:
    def __init__(self, generator, params: SamplingParams):
        self.generator = generator
        self.model, self.tokenizer, self.pad_id = generator.model, generator.tokenizer, generator.pad_id
        self.params = params
        self.device = generator.device
        self.stop_ids = torch.tensor(params.stop_token_ids or generator.stop_token_ids, device=self.device)
        self._clear()

    def _clear(self) -> None:
        self.rows: list[_Row] = []  # the running rows, in batch order
        self.limits = torch.zeros(0, dtype=torch.long, device=self.device)  # each row's max new tokens
        # the batch: KV cache, attention mask (rows x cache columns), last positions, next-token logits
        self.cache = self.attention = self.position = self.logits = None
        self.prefix: PrefixCache | None = None  # the shared prompt prefix, at the weights of prefix_version
        self.prefix_version = None

    @property
    def running(self) -> int:
        return len(self.rows)

    def running_keys(self) -> list:
        return [row.key for row in self.rows]

    @torch.inference_mode()
    def step(self, requests, seed: int | None = None) -> list[tuple[object, Generation]]:
        """Add `requests` (key, prompt ids, max new tokens), generate one token for every row,
        return the rows that finished."""
        rng = None if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        try:
            if requests:
                self._join(requests)
            if not self.running:
                return []
            token = sample_next(self.logits, self.params, rng)
            logprob = token_logprobs(self.logits, token)
            stopped = torch.isin(token, self.stop_ids)
            for row, t, lp in zip(self.rows, token.tolist(), logprob.tolist()):
                row.tokens.append(t)
                row.logprobs.append(lp)
            counts = torch.tensor([len(row.tokens) for row in self.rows], device=self.device)
            done = stopped | (counts >= self.limits)
            finished = [(self.rows[r].key, self._generation(self.rows[r], bool(stopped[r])))
                        for r in done.nonzero().squeeze(1).tolist()]
            if finished:
                self._keep((~done).nonzero().squeeze(1), token)
            else:
                self._decode(token)
            return finished
        finally:
            self.model.train(was_training)

    # ---- the batch -----------------------------------------------------------------------
    def _join(self, requests) -> None:
        prompts = [list(prompt) for _, prompt, _ in requests]
        cache, attention, position, logits = prefill(self.model, prompts, self.pad_id, self._prefix_for(prompts))
        limits = torch.tensor([limit for _, _, limit in requests], device=self.device)
        self.rows += [_Row(key, prompt) for (key, _, _), prompt in zip(requests, prompts)]
        if self.cache is None:
            self.cache, self.attention, self.position, self.logits, self.limits = (
                cache, attention, position, logits, limits)
            return
        # right-align both batches to the longer cache, then stack them
        columns = max(self.attention.shape[1], attention.shape[1])
        for old, new in zip(self.cache.layers, cache.layers):
            old.keys = torch.cat([_left_pad(old.keys, columns), _left_pad(new.keys, columns)])
            old.values = torch.cat([_left_pad(old.values, columns), _left_pad(new.values, columns)])
        self.attention = torch.cat([F.pad(self.attention, (columns - self.attention.shape[1], 0)),
                                    F.pad(attention, (columns - attention.shape[1], 0))])
        self.position = torch.cat([self.position, position])
        self.logits = torch.cat([self.logits, logits])
        self.limits = torch.cat([self.limits, limits])

    def _prefix_for(self, prompts) -> PrefixCache | None:
        """The kept prefix when it covers every prompt and the weights are those that computed it;
        else the prefix these prompts share (kept in its place when there is one)."""
        version = self.generator.weights_version
        if self.prefix is not None and self.prefix_version == version and self.prefix.covers(prompts):
            return self.prefix
        prefix = self.generator.shared_prefix(prompts)
        if prefix is not None or self.prefix_version != version:
            self.prefix, self.prefix_version = prefix, version
        return prefix

    def _keep(self, rows: torch.Tensor, token: torch.Tensor) -> None:
        """Let the finished rows go; decode the others."""
        if len(rows) == 0:
            self._clear()
            return
        self.rows = [self.rows[r] for r in rows.tolist()]
        self.cache.batch_select_indices(rows)
        self.attention, self.position, self.limits = self.attention[rows], self.position[rows], self.limits[rows]
        # columns that are padding in every remaining row
        first = int(self.attention.any(0).long().argmax())
        if first:
            self.attention = self.attention[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]
        self._decode(token[rows])

    def _decode(self, token: torch.Tensor) -> None:
        self.attention = F.pad(self.attention, (0, 1), value=1)
        self.position = self.position + 1
        self.logits = self.model(input_ids=token[:, None], attention_mask=self.attention, position_ids=self.position,
                                 **with_cache(self.model, self.cache)).logits[:, -1]

    def _generation(self, row: _Row, stopped: bool) -> Generation:
        return Generation(prompt_ids=row.prompt, response_ids=row.tokens, logprobs=row.logprobs,
                          text=self.tokenizer.decode(row.tokens, skip_special_tokens=True), truncated=not stopped)


def _left_pad(states: torch.Tensor, columns: int) -> torch.Tensor:
    """Pad (batch, heads, seq, dim) cache states with zeros on the left of seq to `columns`."""
    return F.pad(states, (0, 0, columns - states.shape[-2], 0))
