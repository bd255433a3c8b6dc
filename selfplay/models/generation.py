"""Generation backends: a batch of prompts in, responses with token ids and log-probs out.

Every backend implements `Generator`:

    generate(prompts: list[list[int]], params: SamplingParams, seed: int | None) -> list[Generation]
    engine(params) -> an engine whose step(requests, seed) lets requests join and leave at
                      every token (token scheduling; see selfplay.models.engine)
    load_weights(state_dict) -> None      # push the learner's new weights into the backend
                                          # (None: the backend shares the learner's model)
    max_batch_size: int | None            # the most prompts in one batch (None: no cap)

`HFGenerator` is the plain-PyTorch backend (CPU, tests, single GPU); `VLLMGenerator`
(selfplay.models.vllm_generator, `backend: vllm`) implements the same interface on vLLM.

Which log-probs: `Generation.logprobs[t]` is `log softmax(logits)[token_t]` of the *raw*
logits, i.e. log pi_theta(token) of the policy itself at temperature 1 -- the same
quantity the learner computes (see `token_logprobs`), whatever temperature and top-p
the token was sampled with. The learner trains pi_theta, so its PPO ratio needs pi_theta's
own probabilities; with temperature 1 and top-p 1 (SPIRAL's setting) these are also
exactly the sampling probabilities. With other settings they are not the behaviour
probabilities, which is the usual convention (and what the learner's old log-probs
are either way).
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop_token_ids: tuple[int, ...] | None = None  # None: the backend's defaults (EOS, <|im_end|>)
    # Sample only these ids (a constrained alphabet, e.g. AZR's compact programs); None: any.
    # Generation.logprobs stay log pi_theta over the whole vocabulary, what the learner computes.
    allowed_token_ids: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.allowed_token_ids is not None and not self.allowed_token_ids:
            raise ValueError("allowed_token_ids must hold at least one id (or be None)")


@dataclass
class Generation:
    prompt_ids: list[int]
    response_ids: list[int]  # includes the stop token when one was generated (the policy must learn to stop)
    logprobs: list[float]  # one per response id: log pi_theta(token) at temperature 1
    text: str  # the response decoded without special tokens
    truncated: bool  # hit max_new_tokens before a stop token


class Generator(Protocol):
    max_batch_size: int | None

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                 seed: int | None = None) -> list[Generation]: ...

    def engine(self, params: SamplingParams): ...

    def load_weights(self, state_dict: Mapping[str, torch.Tensor] | None) -> None: ...


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] in fp32, without materialising the full log-softmax.

    logits: (..., vocab), token_ids: (...) -> (...). Shared by the generator and the learner
    so both compute the same quantity the same way.
    """
    logits = logits.float()
    picked = torch.gather(logits, -1, token_ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def default_stop_token_ids(model, tokenizer) -> tuple[int, ...]:
    """EOS of the tokenizer and of the model's generation config, plus <|im_end|> if the vocab has it."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        ids.update(config_eos if isinstance(config_eos, (list, tuple)) else [config_eos])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return tuple(sorted(ids))


def single_token_ids(tokenizer, texts: Sequence[str]) -> list[int] | None:
    """The id of each text when every one is a single token of `tokenizer`; None when any is not
    (a character the tokenizer does not know is one token too, its unknown token: not a match)."""
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    unknown = tokenizer.unk_token_id
    return [i[0] for i in ids] if all(len(i) == 1 and i[0] != unknown for i in ids) else None


def alphabet_token_ids(model, tokenizer, alphabet: str) -> tuple[int, ...] | None:
    """`SamplingParams.allowed_token_ids` for writing only `alphabet`'s characters: their ids and
    the stop tokens (an answer sampled without them could not end itself, and would push the
    stop token down everywhere through the shared weights). None when a character is not one token."""
    ids = single_token_ids(tokenizer, alphabet)
    return None if ids is None else tuple(sorted(set(ids) | set(default_stop_token_ids(model, tokenizer))))


def sample_next(logits: torch.Tensor, params: SamplingParams, rng: torch.Generator | None) -> torch.Tensor:
    """Draw one token per row from softmax(logits / T), restricted to the top-p nucleus (and to
    `params.allowed_token_ids`, when set)."""
    if params.allowed_token_ids is not None:
        keep = torch.full_like(logits, float("-inf"))
        index = torch.tensor(params.allowed_token_ids, device=logits.device)
        logits = keep.index_copy_(-1, index, logits.index_select(-1, index))
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # keep a token if the mass strictly before it is < top_p (the top token is always kept)
        outside = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    # argmax(p / E) with E ~ Exp(1) draws from p / sum(p) (the exponential race); one
    # kernel, no normalisation needed, and it works row-wise on any device.
    race = torch.empty_like(probs).exponential_(1.0, generator=rng)
    return (probs / race).argmax(dim=-1)


@functools.cache
def _cache_argument(forward_class: type) -> str:
    """The name a model's forward takes its KV cache by: `cache` in transformers >= 5.24
    (which warns on the old name), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(forward_class.forward).parameters else "past_key_values"


def with_cache(model, cache) -> dict:
    """Keyword arguments that hand `cache` to `model`'s forward and ask it to extend it
    (a LoRA-wrapped model passes them on to the transformers model inside)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_cache_argument(type(inner)): cache, "use_cache": True}


class PrefixCache:
    """The KV cache of a prompt prefix that many prompts share (a game's rules, a judge's rubric):
    computed once, for one row, and copied into every batch whose prompts all start with it."""

    def __init__(self, model, ids: Sequence[int]):
        self.ids = tuple(ids)
        self.cache = DynamicCache()
        device = next(model.parameters()).device
        positions = torch.arange(len(self.ids), device=device)[None]
        model(input_ids=torch.tensor([self.ids], device=device), position_ids=positions, logits_to_keep=1,
              **with_cache(model, self.cache))

    def covers(self, prompts: Sequence[Sequence[int]]) -> bool:
        """Every prompt starts with the prefix and has at least one token after it."""
        n = len(self.ids)
        return all(len(p) > n and tuple(p[:n]) == self.ids for p in prompts)

    def rows(self, batch: int) -> DynamicCache:
        """A fresh cache holding the prefix in each of `batch` rows (copies that autograd follows:
        in a training forward the rows' gradients add up in the prefix)."""
        cache = DynamicCache()
        for index, layer in enumerate(self.cache.layers):
            cache.update(layer.keys.repeat_interleave(batch, 0), layer.values.repeat_interleave(batch, 0), index)
        return cache


# Below this many shared tokens a separate forward pass for the prefix saves less than it costs.
MIN_SHARED_PREFIX = 16


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """How many tokens all `prompts` start with, leaving each at least one token of its own; 0 when
    that is fewer than MIN_SHARED_PREFIX or there are fewer than two prompts."""
    if len(prompts) < 2:
        return 0
    common = os.path.commonprefix([list(p) for p in prompts])  # element-wise: works on lists of ids
    length = min(len(common), min(len(p) for p in prompts) - 1)
    return length if length >= MIN_SHARED_PREFIX else 0


def shared_prefix(model, prompts: Sequence[Sequence[int]]) -> PrefixCache | None:
    """The prefix cache of the tokens all `prompts` share (`shared_prefix_length`), or None."""
    length = shared_prefix_length(prompts)
    return PrefixCache(model, prompts[0][:length]) if length else None


def prefill(model, prompts: Sequence[Sequence[int]], pad_id: int, prefix: PrefixCache | None = None):
    """Left-pad `prompts` into one batch (every prompt ends at the last column, so new tokens
    line up; padding is masked out) and run it through `model` into a fresh KV cache.

    With a `prefix` that covers every prompt, only the tokens after it are run: the cache
    starts with the prefix's columns in every row, then the left-padded rest (padding in the
    middle, masked out; positions continue from the prefix).

    Returns (cache, attention mask of rows x cache columns, each row's last position,
    each row's next-token logits).
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = next(model.parameters()).device
    start = len(prefix.ids) if prefix is not None else 0
    rest = [p[start:] for p in prompts]
    width = max(len(p) for p in rest)
    # One tensor from one padded list (a tensor per row costs more than the tiny model).
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in rest], dtype=torch.long)
    pads = torch.tensor([width - len(p) for p in rest])
    attention = (torch.arange(width)[None, :] >= pads[:, None]).long()
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = start + (attention.cumsum(-1) - 1).clamp(min=0)
    if prefix is not None:
        cache = prefix.rows(len(prompts))
        attention = torch.cat([torch.ones(len(prompts), start, dtype=torch.long, device=device), attention], 1)
    else:
        cache = DynamicCache()
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                   logits_to_keep=1, **with_cache(model, cache)).logits[:, -1]
    return cache, attention, positions[:, -1:], logits


class HFGenerator:
    """Batched sampling with any Hugging Face causal LM, written as a plain decode loop.

    Prompts are left-padded into one batch; one forward pass fills the KV cache, then
    each step feeds only the new token of every running row. Once a quarter of the
    running rows have stopped, they leave the batch (their KV-cache rows are dropped):
    a stopped row would otherwise cost a full row of every later step, and with answers
    of different lengths most steps would be spent on rows that are done. The only
    host sync per step is the count of stopped rows. With `reuse_prefix`, the prompt prefix
    a batch shares (a game's rules, a rubric) is run once, not once per row (`PrefixCache`).

    On the CPU the generator usually shares the learner's model object, so the learner's
    updates are already visible and `load_weights` copies nothing. Given a separate
    model (e.g. a bf16 copy on a GPU), `load_weights` copies the tensors in place.
    """

    def __init__(self, model, tokenizer, *, max_batch_size: int | None = None, drop_stopped_rows: bool = True,
                 reuse_prefix: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.drop_stopped_rows = drop_stopped_rows  # False: step them to the end, as model.generate does
        self.reuse_prefix = reuse_prefix
        self.weights_version = 0  # counts load_weights calls: a token engine's prefix cache is stale after one
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_token_ids = default_stop_token_ids(model, tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def load_weights(self, state_dict: Mapping[str, torch.Tensor] | None) -> None:
        """Copy new weights in; `None` (or tensors this model already holds) copies nothing."""
        self.weights_version += 1
        if state_dict is None:  # the caller knows the generator shares its model
            return
        own = self.model.state_dict()
        with torch.no_grad():
            for name, tensor in state_dict.items():
                if own[name].data_ptr() != tensor.data_ptr():  # shared storage: nothing to copy
                    own[name].copy_(tensor)

    def shared_prefix(self, prompts: Sequence[Sequence[int]]) -> PrefixCache | None:
        return shared_prefix(self.model, prompts) if self.reuse_prefix else None

    @torch.inference_mode()
    def next_token_logprobs(self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]) -> list[list[float]]:
        """log p(token | prompt) of each of `token_ids` as the next token after each prompt (the
        full vocabulary's log-softmax): a judge's first token, read without sampling it."""
        index = torch.tensor(list(token_ids), device=self.device)
        size = self.max_batch_size or max(len(prompts), 1)
        out: list[list[float]] = []
        for start in range(0, len(prompts), size):
            batch = prompts[start:start + size]
            logits = prefill(self.model, batch, self.pad_id, self.shared_prefix(batch))[3].float()
            out.extend(torch.log_softmax(logits, -1)[:, index].tolist())
        return out

    def engine(self, params: SamplingParams):
        """A token-level engine on this model: requests join and leave at every step
        (`selfplay.models.engine.HFEngine`)."""
        from selfplay.models.engine import HFEngine

        return HFEngine(self, params)

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                 seed: int | None = None) -> list[Generation]:
        rng = None
        if seed is not None:
            rng = torch.Generator(device=self.device).manual_seed(seed)
        size = self.max_batch_size or max(len(prompts), 1)
        out: list[Generation] = []
        for start in range(0, len(prompts), size):
            out.extend(self._generate_batch(prompts[start:start + size], params, rng))
        return out

    @torch.inference_mode()
    def _generate_batch(self, prompts, params: SamplingParams, rng) -> list[Generation]:
        device, batch, steps = self.device, len(prompts), params.max_new_tokens
        stop_ids = torch.tensor(params.stop_token_ids or self.stop_token_ids, device=device)

        tokens = torch.full((batch, steps), self.pad_id, dtype=torch.long, device=device)
        logprobs = torch.zeros((batch, steps), dtype=torch.float32, device=device)
        lengths = torch.full((batch,), steps, dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)  # stopped on a stop token
        rows = torch.arange(batch, device=device)  # the running rows, as indices into the batch
        done = torch.zeros(batch, dtype=torch.bool, device=device)  # per running row

        was_training = self.model.training
        self.model.eval()
        cache, attention, position, logits = prefill(self.model, prompts, self.pad_id, self.shared_prefix(prompts))
        # a step reads columns :width+t+1 (the new tokens' columns are never padding)
        width = attention.shape[1]
        attention = F.pad(attention, (0, steps), value=1)
        for t in range(steps):
            token = sample_next(logits, params, rng)
            token = torch.where(done, self.pad_id, token)
            tokens[rows, t] = token
            logprobs[rows, t] = token_logprobs(logits, token)
            stopped = ~done & torch.isin(token, stop_ids)
            lengths[rows] = torch.where(stopped, t + 1, lengths[rows])
            done = done | stopped
            finished[rows] = done
            n_done = int(done.sum())
            if t == steps - 1 or n_done == len(rows):
                break
            if self.drop_stopped_rows and 4 * n_done >= len(rows):  # drop them from the batch and the cache
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, token, done, position, attention = rows[keep], token[keep], done[keep], position[keep], attention[keep]
            position = position + 1
            logits = self.model(input_ids=token[:, None], attention_mask=attention[:, :width + t + 1],
                                position_ids=position, **with_cache(self.model, cache)).logits[:, -1]
        self.model.train(was_training)
        done = finished

        tokens, logprobs, lengths, done = tokens.tolist(), logprobs.tolist(), lengths.tolist(), done.tolist()
        results = []
        for row, prompt in enumerate(prompts):
            ids = tokens[row][:lengths[row]]
            results.append(Generation(
                prompt_ids=list(prompt),
                response_ids=ids,
                logprobs=logprobs[row][:lengths[row]],
                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                truncated=not done[row],
            ))
        return results
