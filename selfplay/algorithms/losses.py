"""Policy losses on token tensors. Shapes: (batch, tokens); `mask` is 1 on response tokens.

PPO clipped surrogate, per token t of sample i, with ratio r = exp(logp - old_logp):

    loss_it = max(-A_i * r_it, -A_i * clip(r_it, 1 - eps, 1 + eps))

reduced over the batch by `aggregate`:

    token_mean:  sum_it w_i * loss_it * mask_it / sum_it mask_it
    constant:    sum_it w_i * loss_it * mask_it / (C * batch)     Dr. GRPO, SPIRAL's choice (C = max generation length)

"constant" makes every token weigh the same no matter how long its response is, so
long responses are not favoured or penalised by the normalisation itself. w_i is the
sample's weight in the loss (`Sample.weight`; 1 when no weights are given); it scales
the sample's terms and leaves the denominators alone.
"""

from __future__ import annotations

import torch

NORMS = ("constant", "token_mean")


def aggregate(values: torch.Tensor, mask: torch.Tensor, norm: str = "constant", norm_constant: float | None = None,
              weights: torch.Tensor | None = None):
    """Reduce per-token values to a scalar: `token_mean`, or sum / (norm_constant * batch size).

    `weights` (batch,) multiplies each sample's values; the denominator does not change.
    """
    total = (values * mask).sum() if weights is None else (values * mask * weights[:, None]).sum()
    if norm == "token_mean":
        return total / mask.sum().clamp(min=1)
    if norm == "constant":
        if not norm_constant:
            raise ValueError("norm='constant' needs norm_constant (e.g. the maximum number of generated tokens)")
        return total / (norm_constant * values.shape[0])
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    norm: str = "constant",
    norm_constant: float | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate. `advantages` is per sample (batch,) or per token (batch, tokens);
    `weights` (batch,) are the samples' weights in the loss (see `aggregate`).

    Returns the loss and stats over response tokens: `clip_fraction` (share of tokens
    whose clipped term is the one in force, i.e. gets no gradient) and `approx_kl`
    (mean of (r - 1) - log r, the k3 estimate of KL(old || new)).
    """
    mask = mask.to(logprobs.dtype)
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    loss = aggregate(torch.maximum(unclipped, clipped), mask, norm, norm_constant, weights)
    with torch.no_grad():
        tokens = mask.sum().clamp(min=1)
        stats = {
            "clip_fraction": ((clipped > unclipped).to(mask.dtype) * mask).sum().item() / tokens.item(),
            "approx_kl": (((ratio - 1) - log_ratio) * mask).sum().item() / tokens.item(),
            "ratio_max": ratio.masked_fill(mask == 0, float("-inf")).max().item() if mask.any() else 1.0,
        }
    return loss, stats


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, kind: str = "k3",
               per: str = "token") -> torch.Tensor:
    """Estimate of KL(pi_theta || pi_ref) from sampled tokens, with d = log pi - log pi_ref:

        k1 = d                      unbiased, can be negative
        k2 = d^2 / 2
        k3 = exp(-d) + d - 1        = pi_ref / pi - log(pi_ref / pi) - 1: unbiased, always >= 0 (GRPO's choice)

    per="token": at every response token, (batch, tokens), zero off the mask; reduce it with
    `aggregate` like the policy loss and add `beta *` it to the loss. per="sequence": the
    estimator of each response's summed log-ratio d_i = sum_t d_it, one value per sample,
    (batch,). Differentiated in the loss (on-policy), per sequence: k1's expected gradient is
    E[grad log pi(y)] = 0, so LSP's literal form (the sequence log-ratio in the loss) is
    offered but inert; k2's is grad KL(pi || pi_ref); k3's is grad KL(pi_ref || pi).
    """
    if per not in ("token", "sequence"):
        raise ValueError(f"kl per must be 'token' or 'sequence', got {per!r}")
    diff = logprobs - ref_logprobs
    if per == "sequence":
        diff = diff.masked_fill(mask == 0, 0.0).sum(-1)
    if kind == "k1":
        kl = diff
    elif kind == "k2":
        kl = 0.5 * diff**2
    elif kind == "k3":
        kl = torch.exp(-diff) + diff - 1
    else:
        raise ValueError(f"kl kind must be k1, k2 or k3, got {kind!r}")
    return kl if per == "sequence" else kl * mask.to(kl.dtype)
