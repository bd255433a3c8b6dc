"""The learner: PPO-clip updates of the policy from a batch of Samples.

One `update(samples)`, for each of `epochs` epochs (SPIRAL: 2):

    logp      = log pi_theta(response token | prompt, earlier tokens)     response tokens only
    old_logp  = logp of epoch 0, before any step (so epoch 0 has ratio exactly 1)
    loss      = PPO-clip(logp, old_logp, A) + kl_coef * KL(pi_theta || pi_ref) - entropy_coef * H
    KL        = kl_estimator (k1, k2, k3; see losses.kl_penalty) at each response token, or
                (kl_per="sequence") of each response's summed log-ratio, counted as the sum of
                its token terms so that kl_coef weighs it against the policy loss the same way
    H         = entropy of the next-token distribution at each response token (`vocab`), or,
                with one-token moves, of the policy over the legal moves only (`legal_moves`:
                the softmax of the logits restricted to the legal moves' tokens)
    one AdamW step on the whole batch, gradient norm clipped to grad_clip

Each sample's terms (policy loss, KL, entropy) are multiplied by its `Sample.weight`; the
normalisation's denominators do not change (see losses.aggregate). When every weight is 1
no multiplication happens at all.

The batch is cut into micro-batches of `micro_batch_size` samples; each micro-batch's
loss is weighted by its share of the batch (its tokens for `token_mean`, its samples
for `constant`) so the accumulated gradient equals the full batch's.

Identical (prompt, response) sequences in a micro-batch go through the model once and
their log-probs are shared out to every sample: the loss and its gradient are the same,
and with one-token moves on compact games most samples are repeats (every game's first
position is the same), so the update costs a fraction of the batch. With `share_prompts`,
each distinct prompt runs once too (the G answers to one prompt in GRPO, LSP, AZR): its last
position gives the first response token's logits, and the responses run alone, attending to
their prompt's keys and values; the gradient is the same up to float rounding.

Old log-probs: by default the learner's own epoch-0 log-probs (one forward pass saved,
and the ratio is exactly 1 when nothing has changed). `use_sampler_logprobs=True` takes
the generator's `Sample.logprobs` instead (true importance weights when the sampler
differs from the learner, e.g. vLLM in bf16); either way `sampler_logprob_gap` reports
mean |sampler - learner| log-prob on epoch 0, a check that the two agree. A sample without
sampler log-probs (`Sample.logprobs` empty: a response a recipe wrote rather than sampled) is
trained on with the learner's own and left out of that check.

Restricted samplers: a sample with `allowed_token_ids` was drawn from the policy's softmax over
those tokens only, and the learner trains that policy: its log-probs (and entropy, and the
reference's log-probs for the KL) are over the allowed tokens. Were they over the whole
vocabulary, a token the sampler drew while the rest of the vocabulary held nearly all the mass
would have a tiny log-prob whose ratio can explode in a second epoch. Its sampler log-probs are
the whole vocabulary's, so it is treated as a written sample in the two places above.

Precision and memory: `autocast_dtype` (e.g. bf16) runs the forward passes under autocast
while the optimizer updates the model's own (fp32) weights; `gradient_checkpointing`
recomputes each decoder layer's activations in the backward pass instead of keeping them.

Settings: `optim` is the config's `optim` section (`selfplay.config.OptimConfig`), or any
object with its attribute names, such as `LearnerSettings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from selfplay import distributed
from selfplay.algorithms.losses import NORMS, aggregate, kl_penalty, ppo_clip_loss
from selfplay.models.generation import PrefixCache, shared_prefix_length, token_logprobs, with_cache
from selfplay.rollout.sample import Sample

if TYPE_CHECKING:  # selfplay.config imports the recipes, which import this package
    from selfplay.config import OptimConfig

KL_ESTIMATORS = ("k1", "k2", "k3")
KL_PER = ("token", "sequence")


@dataclass(frozen=True)
class LearnerSettings:
    """The learner's settings under the names of the config's `optim` section (for tests and scripts)."""

    lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # None: no clipping
    epochs: int = 2
    micro_batch_size: int = 32
    clip: float = 0.2
    loss_norm: str = "constant"
    norm_constant: float | None = None  # None: the Learner's `norm_constant` keyword
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    kl_per: str = "token"
    entropy_coef: float = 0.0
    entropy_over: str = "vocab"
    gradient_checkpointing: bool = False
    share_prompt_prefix: bool = True
    share_prompts: bool = False


class Learner:
    def __init__(
        self,
        model,
        optim: OptimConfig | LearnerSettings,
        *,
        ref_model=None,
        norm_constant: float | None = None,
        autocast_dtype: torch.dtype | None = None,
        use_sampler_logprobs: bool = False,
        pad_token_id: int = 0,
    ):
        """`norm_constant` is C for `loss_norm='constant'` when `optim.norm_constant` is None
        (the trainer passes the maximum generation length)."""
        loss_norm, epochs, micro_batch_size = optim.loss_norm, optim.epochs, optim.micro_batch_size
        kl_coef, entropy_over = optim.kl_coef, optim.entropy_over
        if optim.norm_constant is not None:
            norm_constant = optim.norm_constant
        if loss_norm not in NORMS:
            raise ValueError(f"loss_norm must be one of {NORMS}, got {loss_norm!r}")
        if loss_norm == "constant" and not norm_constant:
            raise ValueError("loss_norm='constant' needs norm_constant (SPIRAL: the max generated tokens)")
        if kl_coef > 0 and ref_model is None:
            raise ValueError("kl_coef > 0 needs a ref_model (a frozen copy of the initial policy)")
        if optim.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {optim.kl_estimator!r}")
        if optim.kl_per not in KL_PER:
            raise ValueError(f"kl_per must be one of {KL_PER}, got {optim.kl_per!r}")
        if entropy_over not in ("vocab", "legal_moves"):
            raise ValueError(f"entropy_over must be 'vocab' or 'legal_moves', got {entropy_over!r}")
        if epochs < 1 or micro_batch_size < 1:
            raise ValueError("epochs and micro_batch_size must be >= 1")
        self.model = model
        self.ref_model = ref_model
        if ref_model is not None:
            ref_model.eval().requires_grad_(False)
        self.grad_clip, self.epochs, self.micro_batch_size = optim.grad_clip, epochs, micro_batch_size
        self.loss_norm, self.norm_constant, self.clip = loss_norm, norm_constant, optim.clip
        self.kl_coef, self.kl_estimator, self.kl_per = kl_coef, optim.kl_estimator, optim.kl_per
        self.entropy_coef, self.entropy_over = optim.entropy_coef, entropy_over
        self.use_sampler_logprobs = use_sampler_logprobs
        self.pad_token_id = pad_token_id
        # Mixed precision: fp32 weights, forward passes in autocast_dtype (e.g. bf16).
        self.autocast_dtype = autocast_dtype
        # Activation checkpointing: each decoder layer keeps only its input and recomputes the
        # rest in the backward pass (a 4B model on 4 x 4k-token sequences needs it to fit).
        self.checkpointed_layers = []
        if optim.gradient_checkpointing:
            kwargs = {"use_reentrant": False}
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
            self.checkpointed_layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
        # the prompt prefix shared by a micro-batch runs once (not with checkpointed layers, which
        # recompute their activations without a KV cache)
        self.share_prompt_prefix = optim.share_prompt_prefix and not self.checkpointed_layers
        self.share_prompts = optim.share_prompts and not self.checkpointed_layers
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=optim.lr, betas=tuple(optim.betas),
                                           weight_decay=optim.weight_decay)

    @property
    def needs_legal_token_ids(self) -> bool:
        """Whether samples must carry their legal moves' token ids (the legal-move entropy)."""
        return self.entropy_over == "legal_moves" and self.entropy_coef > 0

    # ------------------------------------------------------------------ batching

    def collate(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Pad samples into tensors: prompts left-padded, responses right-padded.

        Every response then starts in the same column, so logits are only computed from
        there on (`logits_to_keep`). Tensors over response columns are (batch, width).
        With `share_prompt_prefix`, the tokens every prompt starts with are `prefix_ids`
        (one row) and the rows hold the rest, their positions continuing after it.
        """
        device = next(self.model.parameters()).device
        # The model sees each distinct sequence once; `rows` maps every sample to its row.
        distinct: dict[tuple, int] = {}
        rows = [distinct.setdefault((tuple(s.prompt_ids), tuple(s.response_ids)), len(distinct)) for s in samples]
        width = max(len(s.response_ids) for s in samples)
        batch = len(samples)
        prompts: dict[tuple, int] = {}
        prompt_of_row = [prompts.setdefault(prompt, len(prompts)) for prompt, _ in distinct]
        extra = {}
        if self.share_prompts and len(prompts) < len(distinct):
            # each distinct prompt once (left-padded), each row its response only (right-padded)
            shared = 0
            extra = self._prompt_rows(list(prompts), prompt_of_row)
            input_ids = torch.full((len(distinct), width), self.pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(distinct), width), dtype=torch.long)
            for (prompt, response), r in distinct.items():
                input_ids[r, :len(response)] = torch.tensor(response)
                attention[r, :len(response)] = 1
            positions = torch.tensor([len(prompt) for prompt, _ in distinct])[:, None] + torch.arange(width)
        else:
            shared = self._shared_prefix(list(prompts))
            prompt_width = max(len(s.prompt_ids) for s in samples) - shared
            input_ids = torch.full((len(distinct), prompt_width + width), self.pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(distinct), prompt_width + width), dtype=torch.long)
            for (prompt, response), r in distinct.items():
                prompt = prompt[shared:]
                start, end = prompt_width - len(prompt), prompt_width + len(response)
                input_ids[r, start:end] = torch.tensor(prompt + response)
                attention[r, start:end] = 1
            positions = shared + (attention.cumsum(-1) - 1).clamp(min=0)
        mask = torch.zeros((batch, width))
        sampler_logprobs = torch.zeros((batch, width))
        sampled = torch.zeros((batch, width))  # tokens with the sampler's log-probs (not written ones)
        for i, s in enumerate(samples):
            n = len(s.response_ids)
            mask[i, :n] = 1
            if s.logprobs and len(s.logprobs) != n:  # empty is fine: a written response
                raise ValueError(f"sample {i} has {len(s.logprobs)} logprobs for {n} response tokens")
            # a written response, or a restricted one (its sampler log-probs are the whole vocabulary's),
            # is trained on with the learner's own log-probs
            if s.logprobs and s.allowed_token_ids is None:
                sampler_logprobs[i, :n] = torch.tensor(s.logprobs)
                sampled[i, :n] = 1
        weights = [s.weight for s in samples]
        if any(w != 1.0 for w in weights):  # else no weights: the unweighted sums, bit for bit
            bad = [(i, w) for i, w in enumerate(weights) if not (math.isfinite(w) and w >= 0)]
            if bad:
                raise ValueError(f"Sample.weight must be finite and >= 0; got (sample, weight) {bad}")
            extra["weights"] = torch.tensor(weights, dtype=torch.float32)
        if self.needs_legal_token_ids:
            # per distinct row: which tokens are legal moves (the same prompt, the same moves)
            vocab = self.model.get_output_embeddings().weight.shape[0]
            legal = torch.zeros((len(distinct), vocab), dtype=torch.bool)
            for i, s in enumerate(samples):
                if not s.legal_token_ids:
                    raise ValueError(f"sample {i} has no legal_token_ids, which entropy_over='legal_moves' needs")
                legal[rows[i], s.legal_token_ids] = True
            extra["legal"] = legal
        if any(s.allowed_token_ids is not None for s in samples):
            # per distinct row: the tokens its sampler could draw (all, for an unrestricted sample)
            vocab = self.model.get_output_embeddings().weight.shape[0]
            allowed = torch.ones((len(distinct), vocab), dtype=torch.bool)
            for i, s in enumerate(samples):
                if s.allowed_token_ids is not None:
                    allowed[rows[i]] = False
                    allowed[rows[i], list(s.allowed_token_ids)] = True
            extra["allowed"] = allowed
        if shared:
            extra["prefix_ids"] = torch.tensor([samples[0].prompt_ids[:shared]])
        tensors = dict(input_ids=input_ids, attention_mask=attention, position_ids=positions, mask=mask, sampled=sampled,
                       rows=torch.tensor(rows),
                       advantages=torch.tensor([s.advantage for s in samples], dtype=torch.float32),
                       sampler_logprobs=sampler_logprobs, **extra)
        return {k: v.to(device) for k, v in tensors.items()}

    def _prompt_rows(self, prompts: list[tuple[int, ...]], prompt_of_row: list[int]) -> dict[str, torch.Tensor]:
        """The distinct prompts of a micro-batch as rows of their own, left-padded, and which of
        them each sequence row answers (`share_prompts`)."""
        prompt_width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), prompt_width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), prompt_width), dtype=torch.long)
        for r, prompt in enumerate(prompts):
            ids[r, prompt_width - len(prompt):] = torch.tensor(prompt)
            attention[r, prompt_width - len(prompt):] = 1
        return dict(prompt_ids=ids, prompt_attention=attention, prompt_positions=(attention.cumsum(-1) - 1).clamp(min=0),
                    prompt_of_row=torch.tensor(prompt_of_row))

    def _shared_prefix(self, prompts: list[tuple[int, ...]]) -> int:
        """How many tokens all `prompts` start with, when worth running once (each keeps one of its own)."""
        return shared_prefix_length(prompts) if self.share_prompt_prefix else 0

    def response_logprobs(self, model, batch, with_entropy: bool = False):
        """log pi(response token) for every response column (and the policy's entropy there),
        one row per sample."""
        width = batch["mask"].shape[1]
        # logits at column j predict token j + 1: keep the width + 1 last columns, drop the final one
        device = batch["input_ids"].device
        with torch.autocast(device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            if "prompt_of_row" in batch:
                logits = self._shared_prompt_logits(model, batch)
            else:
                attention, cache = batch["attention_mask"], {}
                if "prefix_ids" in batch:  # the shared prefix once; every row attends to its keys and values
                    prefix = PrefixCache(model, batch["prefix_ids"][0].tolist())
                    cache = with_cache(model, prefix.rows(attention.shape[0]))
                    attention = torch.cat([attention.new_ones(attention.shape[0], len(prefix.ids)), attention], 1)
                logits = model(input_ids=batch["input_ids"], attention_mask=attention,
                               position_ids=batch["position_ids"], logits_to_keep=width + 1, **cache).logits[:, :-1]
        targets = batch["input_ids"][:, -width:]
        if "allowed" in batch:  # the policy its sampler drew from: softmax over the allowed tokens
            # a large finite fill, not -inf: 0 * -inf would make the entropy's gradient NaN
            logits = logits.float().masked_fill(~batch["allowed"][:, None], -1e9)
        logprobs = token_logprobs(logits, targets)
        entropy = None
        if with_entropy and "legal" in batch:  # one-token moves: the policy over the legal moves
            # a large finite fill, not -inf: 0 * -inf would make the gradient NaN
            legal_logits = logits[:, :1].float().masked_fill(~batch["legal"][:, None], -1e9)
            log_q = torch.log_softmax(legal_logits, dim=-1)
            entropy = torch.zeros(logprobs.shape, device=logprobs.device)
            entropy[:, :1] = -(log_q.exp() * log_q).sum(-1)
            entropy = entropy[batch["rows"]]
        elif with_entropy:
            log_p = torch.log_softmax(logits.float(), dim=-1)
            entropy = -(log_p.exp() * log_p).sum(-1)[batch["rows"]]
        return logprobs[batch["rows"]], entropy

    @staticmethod
    def _shared_prompt_logits(model, batch) -> torch.Tensor:
        """The response columns' logits with each distinct prompt run once: its last position
        predicts the first response token, and the responses, attending to their prompt's keys and
        values (copies autograd follows, so a prompt's gradient is its rows' sum), predict the rest."""
        prompts, of_row = DynamicCache(), batch["prompt_of_row"]
        first = model(input_ids=batch["prompt_ids"], attention_mask=batch["prompt_attention"],
                      position_ids=batch["prompt_positions"], logits_to_keep=1, **with_cache(model, prompts)).logits
        width = batch["input_ids"].shape[1]
        if width == 1:
            return first[of_row]
        cache = DynamicCache()
        for index, layer in enumerate(prompts.layers):
            cache.update(layer.keys[of_row], layer.values[of_row], index)
        attention = torch.cat([batch["prompt_attention"][of_row], batch["attention_mask"][:, :-1]], 1)
        rest = model(input_ids=batch["input_ids"][:, :-1], attention_mask=attention,
                     position_ids=batch["position_ids"][:, :-1], **with_cache(model, cache)).logits
        return torch.cat([first[of_row], rest], 1)

    # ------------------------------------------------------------------ the update

    def update(self, samples: list[Sample]) -> dict[str, float]:
        """PPO update on `samples` (advantages already set); returns stats averaged over epochs."""
        samples = [s for s in samples if s.response_ids]  # nothing to learn from an empty response
        if not samples:
            return {"num_samples": 0.0}
        chunks = [samples[i:i + self.micro_batch_size] for i in range(0, len(samples), self.micro_batch_size)]
        micro = [self.collate(chunk) for chunk in chunks]
        # the KL per role too (LSP's Challenger and Solver drift apart): per token, or per response
        role_sizes: dict[str, int] = {}
        if self.kl_coef > 0:
            for s in samples:
                role_sizes[s.role] = role_sizes.get(s.role, 0) + (len(s.response_ids) if self.kl_per == "token" else 1)
        total_tokens = sum(b["mask"].sum().item() for b in micro)
        sampled_tokens = sum(b["sampled"].sum().item() for b in micro)
        share = [b["mask"].sum().item() / total_tokens if self.loss_norm == "token_mean"
                 else b["mask"].shape[0] / len(samples) for b in micro]

        was_training = self.model.training
        self.model.eval()  # no dropout: old and new log-probs must come from the same function
        # Transformers checkpoints a layer only in training mode: flag the layers themselves (not
        # the attention and MLP modules inside them, whose dropout stays off) as training.
        for layer in self.checkpointed_layers:
            layer.training = True
        # with several learner processes, this one trains on its share of the micro-batches and
        # the gradients are summed over processes before the step (selfplay.distributed)
        world = distributed.world()
        mine = distributed.my_share(len(micro))
        ref_logprobs = [None] * len(micro)
        if self.kl_coef > 0:
            with torch.no_grad():
                for k in mine:
                    ref_logprobs[k] = self.response_logprobs(self.ref_model, micro[k])[0]
        old_logprobs = [None] * len(micro)  # set on epoch 0

        totals: dict[str, float] = {}
        grad_norm_total = 0.0

        def add(name, value, weight):
            totals[name] = totals.get(name, 0.0) + value * weight / self.epochs

        for epoch in range(self.epochs):
            self.optimizer.zero_grad(set_to_none=True)
            for k in mine:
                batch = micro[k]
                logprobs, entropy = self.response_logprobs(self.model, batch, with_entropy=self.entropy_coef > 0)
                mask = batch["mask"]
                if epoch == 0:
                    if sampled_tokens:
                        gap = ((logprobs.detach() - batch["sampler_logprobs"]).abs() * batch["sampled"]).sum().item()
                        totals["sampler_logprob_gap"] = totals.get("sampler_logprob_gap", 0.0) + gap / sampled_tokens
                    old_logprobs[k] = logprobs.detach()
                    if self.use_sampler_logprobs:  # the sampler's where it has them, else the learner's
                        old_logprobs[k] = torch.where(batch["sampled"].bool(), batch["sampler_logprobs"],
                                                      old_logprobs[k])
                weights = batch.get("weights")
                pg_loss, stats = ppo_clip_loss(logprobs, old_logprobs[k], batch["advantages"], mask,
                                               self.clip, self.loss_norm, self.norm_constant, weights)
                loss = pg_loss
                if self.kl_coef > 0:
                    kl = kl_penalty(logprobs, ref_logprobs[k], mask, self.kl_estimator, self.kl_per)
                    per_response = ((kl * mask).sum(-1) if self.kl_per == "token" else kl).detach()
                    for sample, value in zip(chunks[k], per_response.tolist()):
                        add(f"kl/{sample.role}", value / role_sizes[sample.role], 1.0)
                    if self.kl_per == "sequence":
                        add("kl", kl.sum().item() / len(samples), 1.0)  # stat: mean per response
                        # on the response's first token: reduced as the sum of its token terms is
                        kl = torch.cat([kl[:, None], torch.zeros_like(mask[:, 1:])], dim=1)
                    else:
                        add("kl", kl.sum().item() / total_tokens, 1.0)  # stat: mean per token
                    loss = loss + self.kl_coef * aggregate(kl, mask, self.loss_norm, self.norm_constant, weights)
                if self.entropy_coef > 0:
                    loss = loss - self.entropy_coef * aggregate(entropy, mask, self.loss_norm, self.norm_constant,
                                                                weights)
                    add("entropy", (entropy * mask).sum().item() / total_tokens, 1.0)
                (loss * share[k]).backward()  # shares sum to 1: the full-batch gradient
                add("loss", loss.item(), share[k])
                add("pg_loss", pg_loss.item(), share[k])
                token_share = mask.sum().item() / total_tokens
                for name, value in stats.items():
                    if name != "ratio_max":
                        add(name, value, token_share)
            if world.active:
                distributed.sum_gradients(self.params)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip or float("inf"))
            grad_norm_total = grad_norm_total + grad_norm.item() / self.epochs  # the same on every process
            self.optimizer.step()
        self.model.train(was_training)

        if world.active:  # every statistic above is a sum over micro-batches
            totals = distributed.sum_stats(totals)
        totals["grad_norm"] = grad_norm_total
        totals.update(num_samples=float(len(samples)), num_tokens=float(total_tokens),
                      response_length=total_tokens / len(samples))
        return totals

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
