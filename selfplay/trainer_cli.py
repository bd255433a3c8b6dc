"""`selfplay train [CONFIG.yaml] [key=value ...]` and `selfplay train --resume RUN_DIR`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "spiral_tictactoe_tiny.yaml"


def add_arguments(parser) -> None:
    parser.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value",
                        help="a YAML preset (default: the CPU TicTacToe demo) and overrides, e.g. steps=100 optim.lr=1e-4")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its latest checkpoint")


def run(args) -> int:
    from selfplay.config import ConfigError, load_config

    config_files = [i for i in args.items if "=" not in i]
    overrides = [i for i in args.items if "=" in i]
    if len(config_files) > 1:
        print(f"error: one config file at most, got {config_files}", file=sys.stderr)
        return 2
    try:
        if args.resume:
            from selfplay.runs import latest_checkpoint

            run_dir = Path(args.resume)
            if not (run_dir / "config.yaml").is_file():
                raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
            if config_files:
                raise ConfigError("--resume takes the run's own config; give only key=value overrides")
            cfg = load_config(run_dir / "config.yaml", overrides)
            ckpt = latest_checkpoint(run_dir)
            if ckpt is None:
                print(f"{run_dir} has no checkpoint yet: starting it from the beginning", file=sys.stderr)
        else:
            cfg = load_config(resolve_preset(config_files[0] if config_files else None), overrides)
            run_dir = Path(cfg.output_dir or f"runs/{run_name(cfg)}-{time.strftime('%Y%m%d-%H%M%S')}")
            ckpt = None
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2

    import os

    from selfplay import distributed
    from selfplay.trainer import SamplerMismatch, Trainer

    try:
        if cfg.distributed.learners > 1 and "WORLD_SIZE" not in os.environ:  # launch them on Ray, then wait
            from selfplay.ray_learners import launch

            items = overrides if args.resume else [*args.items, f"output_dir={run_dir}"]
            return launch(cfg, items, str(run_dir) if args.resume else None, run_dir)
        world = distributed.init_from_env()  # under torchrun: process 0 names the run folder for all
        run_dir = Path(distributed.agree(str(run_dir))) if world.active else run_dir
        trainer = Trainer(cfg, run_dir, resume_from=ckpt)
    except ConfigError as err:  # what only the model or the Ray cluster can tell (a split alphabet, no room)
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except ConnectionError as err:  # a Ray cluster address that does not answer
        print(f"error: {err}", file=sys.stderr)
        return 2
    if world.is_main:
        print(f"run folder: {run_dir}  (resume with: selfplay train --resume {run_dir})"
              + (f"; {world.size} learner processes" if world.active else ""), file=sys.stderr)
    try:
        trainer.train()
    except SamplerMismatch as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        distributed.close()
    if world.is_main:
        print(f"done: {run_dir}  (plots: selfplay report {run_dir})", file=sys.stderr)
    return 0


def run_name(cfg) -> str:
    """`spiral-tictactoe`, `rlvr-arithmetic`: the recipe and what it trains on."""
    recipe = cfg.recipe
    subject = recipe.games[0].name if hasattr(recipe, "games") else getattr(recipe, "task", "")
    return f"{recipe.name}-{subject}".rstrip("-").replace(":", "_")


def resolve_preset(name: str | None) -> Path:
    """A config path, or the name of a preset shipped in the package (`spiral_kuhn_tiny`),
    so that `selfplay train` works from any folder."""
    if name is None:
        return DEFAULT_CONFIG
    path = Path(name)
    if path.exists():
        return path
    shipped = DEFAULT_CONFIG.parent / f"{path.stem}.yaml"
    return shipped if shipped.exists() else path
