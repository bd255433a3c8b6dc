"""The `selfplay` command: train | eval | play | report | export | sandbox.

Each subcommand lives beside the code it drives and registers its own arguments here;
heavy imports (torch, transformers) happen only inside the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# subcommand -> module with `add_arguments(parser)` and `run(args) -> int`
COMMANDS = {
    "train": ("selfplay.trainer_cli", "train a model by self-play (default: the CPU TicTacToe demo)"),
    "eval": ("selfplay.evals.cli", "play agents against each other (rates, CIs, exploitability), or score a "
             "model on a reasoning suite (humaneval, math)"),
    "play": ("selfplay.play_cli", "play a game against a model or agent in the terminal"),
    "report": ("selfplay.report", "plots and an HTML page for a run folder"),
    "export": ("selfplay.export_cli", "write a run's model as a full Hugging Face folder (LoRA merged in)"),
    "sandbox": ("selfplay.sandbox.cli", "inspect and attack-test the code sandbox"),
}


# Libraries whose deprecation notices speak to their callers' authors, not to a user of `selfplay`.
NOISY_MODULES = r"(torch|transformers|huggingface_hub|safetensors|accelerate)(\.|$)"


def quiet_libraries() -> None:
    """Silence library output a user cannot act on, before any subcommand imports torch or
    transformers: their FutureWarning / DeprecationWarning notices, transformers' log lines
    below ERROR and advisory warnings, huggingface_hub's (an offline machine's failed lookups
    before a model-loading error of our own), and the per-load "Loading weights" / "Writing model
    shards" bars (transformers reads huggingface_hub's switch at import). Set with
    setdefault, so e.g. `HF_HUB_DISABLE_PROGRESS_BARS=0 selfplay ...` brings the bars back
    (hub download bars share that switch); `-W` / PYTHONWARNINGS keep the warnings as asked.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    if not sys.warnoptions:  # the user chose no warning filters of their own
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=NOISY_MODULES)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_libraries()
    parser = argparse.ArgumentParser(prog="selfplay", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only import the module of the command being run, so `selfplay eval` never loads torch.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from selfplay.checkpoints import CheckpointError  # light: no torch
    from selfplay.models.gguf import ModelLoadError  # light: no torch
    from selfplay.sandbox import SandboxUnavailable  # light: the standard library only

    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except CheckpointError as err:  # a full disk is the user's to fix: one line says how, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ModelLoadError, SandboxUnavailable) as err:  # a bad model; a sandbox layer missing here
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
