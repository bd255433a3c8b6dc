"""What `selfplay` prints: results, not library noise a user cannot act on.

transformers 5.x warns `past_key_values is deprecated ... Use cache instead` (a
FutureWarning attributed to torch.nn.modules.module) on every forward, and draws a
"Loading weights" bar for every model it loads; `selfplay.cli.quiet_libraries` hides both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
QUIET_VARS = ("TRANSFORMERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS", "HF_HUB_DISABLE_PROGRESS_BARS")


def selfplay(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in QUIET_VARS and k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-m", "selfplay.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**base, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_eval_without_models_prints_no_deprecations():
    proc = selfplay("eval", "--agent", "random", "--opponent", "random", "--game", "tictactoe", "--games", "4",
                    "--no-progress")
    assert "FutureWarning" not in proc.stderr and "DeprecationWarning" not in proc.stderr, proc.stderr
    assert "tictactoe: random vs random" in proc.stdout


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny model saved to disk, so that `llm:` loads weights (`llm:tiny` only builds one)."""
    path = tmp_path_factory.mktemp("model") / "tiny"
    code = "import sys; from selfplay.models import load_model, save_checkpoint; save_checkpoint(*load_model('tiny'), sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, check=True, capture_output=True, timeout=300)
    return path


def test_eval_with_a_model_prints_no_warnings_or_load_bars(tiny_model_dir):
    args = ("eval", "--agent", f"llm:{tiny_model_dir}", "--opponent", "random", "--game", "tictactoe", "--games", "2",
            "--no-progress")
    quiet = selfplay(*args)
    noise = [line for line in quiet.stderr.replace("\r", "\n").splitlines()
             if "Warning" in line or "Loading weights" in line or "Writing model shards" in line]
    assert noise == [], quiet.stderr
    assert "llm:" in quiet.stdout and "2 games" in quiet.stdout


def test_user_settings_win(monkeypatch):
    from selfplay.cli import quiet_libraries

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # the user wants the bars
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    monkeypatch.setenv("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # restored after the test
    monkeypatch.setattr(sys, "warnoptions", [])  # as with no -W / PYTHONWARNINGS
    with warnings.catch_warnings():
        quiet_libraries()
        ignored = [f for f in warnings.filters if f[0] == "ignore" and f[3] is not None and f[3].pattern.startswith("(torch")]
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0" and os.environ["TRANSFORMERS_VERBOSITY"] == "info"
    assert {f[2] for f in ignored} == {FutureWarning, DeprecationWarning}
    assert all(f[3].match("torch.nn.modules.module") and f[3].match("transformers") and not f[3].match("selfplay.cli")
               and not f[3].match("torchvision") for f in ignored)
