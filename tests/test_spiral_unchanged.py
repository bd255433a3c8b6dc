"""SPIRAL's training is pinned: every CPU preset, 30 steps with evaluations, gives exactly the
metrics of one of the recorded runs in tests/golden/ (every figure except timings): one set
per kind of CPU, whose float kernels round differently. See tests/golden/README.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
COMMON = ["steps=30", "eval.every=10", "time_limit_minutes=null", "threads=1", "save_every=1000"]
CASES = {
    "tictactoe": ("spiral_tictactoe_tiny", ["recipe.eval_games=50"]),
    "kuhn": ("spiral_kuhn_tiny", ["recipe.eval_games=50"]),
    "multigame": ("spiral_multigame_tiny", ["recipe.eval_games=20"]),
    "tictactoe_past_opponents": ("spiral_tictactoe_tiny", [
        "recipe.eval_games=20", "recipe.past_opponents.fraction=0.25", "recipe.past_opponents.every=5",
        "recipe.past_opponents.keep=2"]),
    "tictactoe_frozen": ("spiral_tictactoe_tiny", ["recipe.eval_games=20", "recipe.opponent=frozen",
                                                   "recipe.advantage=none"]),
    "multigame_token": ("spiral_multigame_tiny", ["recipe.eval_games=20", "recipe.scheduling=token",
                                                  "optim.average_decay=0.9"]),
}


def run(case: str, folder: Path) -> list[dict]:
    from selfplay.config import load_config
    from selfplay.metrics import read_metrics
    from selfplay.trainer import Trainer

    preset, extra = CASES[case]
    Trainer(load_config(f"selfplay/configs/{preset}.yaml", COMMON + extra), folder).train()
    return read_metrics(folder)


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith(("time/", "throughput/"))} for row in rows]


@pytest.mark.slow
@pytest.mark.golden
@pytest.mark.parametrize("case", list(CASES))
def test_spiral_metrics_are_unchanged(case, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFPLAY_NO_PROGRESS", "1")
    recorded = [[json.loads(line) for line in path.read_text().splitlines()]
                for path in sorted(GOLDEN.glob(f"**/{case}.jsonl"))]
    assert len(recorded) >= 2 and all(len(rows) == 30 for rows in recorded)
    got = comparable(run(case, tmp_path))
    assert len(got) == 30
    if any(comparable(rows) == got for rows in recorded):
        return
    for want, have in zip(comparable(recorded[0]), got):  # the first difference from the first set
        assert have == want, {k: (want.get(k), have.get(k)) for k in set(want) | set(have) if want.get(k) != have.get(k)}


if __name__ == "__main__" and sys.argv[1:2] == ["--write"]:  # --write [FOLDER under golden/]
    import os
    import tempfile

    os.environ["SELFPLAY_NO_PROGRESS"] = "1"
    for name in CASES:
        with tempfile.TemporaryDirectory() as folder:
            rows = run(name, Path(folder))
        out = GOLDEN.joinpath(*sys.argv[2:3]) / f"{name}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print("wrote", out)
