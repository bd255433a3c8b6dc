"""`selfplay export`: a run's model as a full Hugging Face folder that loads anywhere.

    selfplay export runs/spiral-tictactoe-20261202-101500 exported/
    selfplay export runs/x/checkpoints/step-000050 exported/

A LoRA checkpoint holds only the adapter; export merges it into the base model's weights,
so `AutoModelForCausalLM.from_pretrained("exported/")` needs neither selfplay nor peft.
A full checkpoint is copied as it is.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a run folder (its latest checkpoint) or a checkpoint folder")
    parser.add_argument("output", help="the folder to write (replaced if it exists)")


def run(args) -> int:
    from selfplay.runs import resolve_model

    try:
        source = resolve_model(args.model)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from selfplay.models import load_model, save_checkpoint

    # a tiny base model is rebuilt from the run's seed; pretrained bases ignore it
    model, tokenizer = load_model(source.path, seed=int(source.config.get("seed", 0)))
    save_checkpoint(model, tokenizer, args.output)
    print(f"exported {source.path} -> {args.output}", file=sys.stderr)
    return 0
