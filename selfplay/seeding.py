"""Every seed of a run is derived here, so that the code that saves a state and the code
that restores it cannot disagree about which random stream was used.

    derive_seed(cfg.seed, episode, "game")        the deal / starting position of episode N
    derive_seed(cfg.seed, calls, "generation")    the sampling of the rollout's N-th generation call
    derive_seed(agent_seed, calls, "agent")       the sampling of an agent's N-th call
    derive_seed(cfg.seed, 1, "offset")            a fixed companion stream (an opponent's RNG)
    derive_seed(cfg.seed, step, "prompts")        which problems step N trains on (RLVR)
    derive_seed(cfg.seed, step, "evaluation")     the sampling of the evaluation at step N
    derive_seed(cfg.seed, step, "replay")         which earlier queries step N replays (LSP)
    derive_seed(cfg.seed, step, "candidates")     the Challenger's extra queries of step N (LSP)
"""

from __future__ import annotations

import random

# Each stream is `base * multiplier + index`: distinct large primes keep the streams of
# one base apart for any realistic index (an offset stream is plain `base + index`).
STREAMS = {"game": 1_000_003, "agent": 1_000_003, "generation": 7_919, "offset": 1,
           "prompts": 1_000_033, "evaluation": 7_927, "replay": 1_000_037,
           "candidates": 1_000_039}


def derive_seed(base: int, index: int, stream: str) -> int:
    """The seed of item `index` of `stream` in a run seeded with `base`."""
    if stream not in STREAMS:
        raise ValueError(f"unknown seed stream {stream!r}; streams: {', '.join(STREAMS)}")
    return base * STREAMS[stream] + index


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    import numpy as np  # here, not at the top: agents import this module and `selfplay eval` needs no torch
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state_to_list(state) -> list:
    """`random.Random.getstate()` as JSON-able lists."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def rng_state_from_list(state) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
