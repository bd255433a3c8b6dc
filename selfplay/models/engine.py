"""Token-level continuous batching on one KV cache: requests join and leave at every step.

    engine = generator.engine(params)                      # an HFGenerator's
    done = engine.step([(key, prompt_ids, max_new_tokens), ...], seed=s)   # -> [(key, Generation)]

Each `step` prefills the new requests (one forward pass), merges them into the running
batch, samples one token for every row, hands back the rows that stopped (on a stop token
or at their own `max_new_tokens`) and runs one decode forward pass for the others. So a
caller (the rollout scheduler) can move a game on as soon as its own answer ends while
longer answers keep generating, instead of every round lasting as long as its longest
answer. vLLM's engine schedules requests the same way; this is the plain-PyTorch version.

Rows are right-aligned in the cache (left padding, masked out): a request whose prompt is
longer than the cache pads the running rows on the left, and columns that are padding in
every row are trimmed. Tokens and log-probs are those `HFGenerator.generate` would give
(the same sampler, log pi_theta at temperature 1); a step whose rows are all new is
exactly a `generate` call of one token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from selfplay.models.generation import Generation, SamplingParams, sample_next, token_logprobs


class HFEngine:
    def __init__(self, generator, params: SamplingParams):
        self.model, self.tokenizer, self.pad_id = generator.model, generator.tokenizer, generator.pad_id
        self.params = params
        self.device = generator.device
        self.stop_ids = torch.tensor(params.stop_token_ids or generator.stop_token_ids, device=self.device)
        # per running row, in batch order
        self.keys: list = []
        self.prompts: list[list[int]] = []
        self.tokens: list[list[int]] = []
        self.logprobs: list[list[float]] = []
        self.limits = torch.zeros(0, dtype=torch.long, device=self.device)
        # the batch: KV cache, attention mask (rows x cache columns), last positions, next-token logits
        self.cache: DynamicCache | None = None
        self.attention = self.position = self.logits = None

    @property
    def running(self) -> int:
        return len(self.keys)

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
            for row, (t, lp) in enumerate(zip(token.tolist(), logprob.tolist())):
                self.tokens[row].append(t)
                self.logprobs[row].append(lp)
            counts = torch.tensor([len(t) for t in self.tokens], device=self.device)
            done = stopped | (counts >= self.limits)
            finished = [(self.keys[row], self._generation(row, bool(stopped[row])))
                        for row in done.nonzero().squeeze(1).tolist()]
            if finished:
                self._keep((~done).nonzero().squeeze(1), token)
            else:
                self._decode(token)
            return finished
        finally:
            self.model.train(was_training)

    # ---- the batch -----------------------------------------------------------------------
    def _join(self, requests) -> None:
        if any(len(prompt) == 0 for _, prompt, _ in requests):
            raise ValueError("every prompt needs at least one token")
        prompts = [list(prompt) for _, prompt, _ in requests]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        pads = torch.tensor([width - len(p) for p in prompts], device=self.device)
        attention = (torch.arange(width, device=self.device)[None, :] >= pads[:, None]).long()
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(input_ids=ids, attention_mask=attention, position_ids=positions,
                            past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        limits = torch.tensor([limit for _, _, limit in requests], device=self.device)
        self.keys += [key for key, _, _ in requests]
        self.prompts += prompts
        self.tokens += [[] for _ in requests]
        self.logprobs += [[] for _ in requests]
        if self.cache is None:
            self.cache, self.attention, self.position, self.logits = cache, attention, positions[:, -1:], logits
            self.limits = limits
            return
        # right-align both batches to the longer cache, then stack them
        columns = max(self.attention.shape[1], width)
        for old, new in zip(self.cache.layers, cache.layers):
            old.keys = torch.cat([_left_pad(old.keys, columns), _left_pad(new.keys, columns)])
            old.values = torch.cat([_left_pad(old.values, columns), _left_pad(new.values, columns)])
        self.attention = torch.cat([F.pad(self.attention, (columns - self.attention.shape[1], 0)),
                                    F.pad(attention, (columns - width, 0))])
        self.position = torch.cat([self.position, positions[:, -1:]])
        self.logits = torch.cat([self.logits, logits])
        self.limits = torch.cat([self.limits, limits])

    def _keep(self, rows: torch.Tensor, token: torch.Tensor) -> None:
        """Let the finished rows go; decode the others."""
        if len(rows) == 0:
            self.cache, self.attention, self.position, self.logits = None, None, None, None
            self.keys, self.prompts, self.tokens, self.logprobs = [], [], [], []
            self.limits = self.limits[:0]
            return
        kept = rows.tolist()
        self.keys = [self.keys[r] for r in kept]
        self.prompts = [self.prompts[r] for r in kept]
        self.tokens = [self.tokens[r] for r in kept]
        self.logprobs = [self.logprobs[r] for r in kept]
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
                                 past_key_values=self.cache, use_cache=True).logits[:, -1]

    def _generation(self, row: int, stopped: bool) -> Generation:
        ids = self.tokens[row]
        return Generation(prompt_ids=self.prompts[row], response_ids=ids, logprobs=self.logprobs[row],
                          text=self.tokenizer.decode(ids, skip_special_tokens=True), truncated=not stopped)


def _left_pad(states: torch.Tensor, columns: int) -> torch.Tensor:
    """Pad (batch, heads, seq, dim) cache states with zeros on the left of seq to `columns`."""
    return F.pad(states, (0, 0, columns - states.shape[-2], 0))
