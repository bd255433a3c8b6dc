"""`selfplay report`: figures from a synthetic run folder, the HTML page, run comparison."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pytest

from selfplay.cli import main
from selfplay.report import build_report, compare_lines, compare_runs, load_series, plan_figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL_TEXT = "<script>alert('x')</script> & [4]"


def write_run(path, steps=12, eval_every=4, invalid_start=0.8):
    path.mkdir(parents=True)
    rows = []
    for step in range(1, steps + 1):
        row = {
            "step": step, "invalid_rate": invalid_start / step, "response_length": 10.0 + step,
            "truncation_rate": 0.0, "game_length": 5.0, "advantage_abs": 0.4,
            "throughput/samples_per_s": 30.0, "throughput/tokens_per_s": 500.0,
            "loss/policy": 0.1, "loss/grad_norm": float("nan") if step == 5 else 1.0,
            "rae_baseline/tictactoe/0": 0.1, "rae_baseline/tictactoe/1": -0.1,
            "selfplay/tictactoe/seat0_return": 0.2, "samples": 16,
        }
        if step % eval_every == 0:
            row.update({"eval/tictactoe/vs_random/win": step / steps, "eval/tictactoe/vs_random/loss": 1 - step / steps,
                        "eval/tictactoe/vs_minimax/draw": 0.5, "eval/kuhn_poker/exploitability": 1 / step})
        rows.append(row)
    # json.dumps writes NaN as a bare word, as the trainer's logger does; the truncated
    # last line is what a crash mid-write leaves.
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 99, "inv')
    (path / "config.yaml").write_text("recipe:\n  name: spiral\n  style: compact\n  games:\n  - name: tictactoe\n")
    transcript = {"step": 4, "game": "tictactoe", "opponent": "random", "returns": [1.0, -1.0],
                  "moves": [{"player": 0, "text": EVIL_TEXT, "action": "[4]", "invalid": None},
                            {"player": 1, "text": "3", "action": "[3]", "invalid": None}]}
    (path / "transcripts.jsonl").write_text(json.dumps(transcript) + "\n")
    return path


def test_series_keep_eval_points_and_nan_gaps(tmp_path):
    series = load_series(write_run(tmp_path / "run"))
    win = series["eval/tictactoe/vs_random/win"]
    assert win.steps.tolist() == [4, 8, 12]  # only the evaluation steps, so the curve joins them
    assert win.values.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    grad = series["loss/grad_norm"]
    assert len(grad.steps) == 12 and math.isnan(grad.values[4])  # logged NaN: a gap at step 5
    assert 99 not in series["invalid_rate"].steps  # the truncated line is skipped


def test_series_read_arena_rate_records(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    row = {"step": 3, "eval/tictactoe/vs_random/win": {"rate": 0.25, "ci95": [0.1, 0.5], "count": 2, "n": 8},
           "eval/tictactoe/vs_random/games": 8, "note": "text is not a curve"}
    (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    series = load_series(run)
    win = series["eval/tictactoe/vs_random/win"]
    assert (win.values[0], win.low[0], win.high[0]) == (0.25, 0.1, 0.5)
    assert "note" not in series
    # `games` is not a rate: it must not be drawn on a 0..1 rate axis
    names = {f.name: f.keys for f in plan_figures(list(series))}
    assert names["eval_tictactoe"] == ["eval/tictactoe/vs_random/win"]
    assert "eval/tictactoe/vs_random/games" in names["other"]


def test_plan_groups_every_key_once_and_skips_absent_groups():
    keys = ["invalid_rate", "response_length", "eval/tictactoe/vs_random/win", "eval/tictactoe/vs_minimax/loss",
            "eval/kuhn_poker/exploitability", "loss/kl", "my_new_metric", "past_opponents/tictactoe/learner_return"]
    figures = plan_figures(keys)
    by_name = {f.name: f for f in figures}
    assert sorted(k for f in figures for k in f.keys) == sorted(keys)
    assert set(by_name) == {"eval_tictactoe", "exploitability", "collapse", "loss", "past_opponents", "other"}
    assert [p.title for p in by_name["eval_tictactoe"].panels] == ["vs minimax", "vs random"]
    assert by_name["collapse"].keys == ["response_length", "invalid_rate"]  # no truncation_rate logged
    assert by_name["other"].keys == ["my_new_metric"]


def test_report_writes_pngs_and_escaped_html(tmp_path):
    run = write_run(tmp_path / "run")
    page = build_report(run, tmp_path / "out")
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == sorted(f"{n}.png" for n in ["eval_tictactoe", "exploitability", "collapse", "rae_baselines",
                                                 "selfplay", "loss", "throughput", "other"])
    for png in (tmp_path / "out").glob("*.png"):
        assert png.read_bytes().startswith(PNG_MAGIC)
    html = page.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(pngs) and all(base64.b64decode(d).startswith(PNG_MAGIC) for d in embedded)
    for key in ["eval/tictactoe/vs_random/win", "eval/kuhn_poker/exploitability", "response_length",
                "truncation_rate", "invalid_rate", "rae_baseline/tictactoe/1", "loss/grad_norm",
                "throughput/tokens_per_s"]:
        assert key in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; [4]" in html
    assert "<script>" not in html
    assert "style: compact" in html  # the config
    assert "step 4 · tictactoe · vs random" in html


def test_report_cli_default_output_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "invalid_rate": 0.5}\n')  # no config, no transcripts
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "collapse.png").read_bytes().startswith(PNG_MAGIC)
    assert "No transcripts recorded" in (run / "report" / "report.html").read_text()
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_compare_runs_plots_each_run(tmp_path):
    a = write_run(tmp_path / "rae", invalid_start=0.8)
    b = write_run(tmp_path / "no_rae", invalid_start=0.2)
    out = compare_runs([a, b], ["RAE", "no RAE"], "invalid_rate", tmp_path / "cmp.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="one label per run"):
        compare_runs([a, b], ["only one"], "invalid_rate", tmp_path / "x.png")
    with pytest.raises(ValueError, match="invalid_rate"):  # a typo gets the close matches
        compare_runs([a, b], None, "invalid_rat", tmp_path / "x.png")
    assert main(["report", str(a), str(b), "--compare", "eval/tictactoe/vs_random/win", "--labels", "A,B",
                 "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare_eval_tictactoe_vs_random_win.png").read_bytes().startswith(PNG_MAGIC)


def test_compare_lines_plots_several_metrics_of_one_run(tmp_path):
    from matplotlib.image import imread

    a = write_run(tmp_path / "a")
    win = imread(compare_lines([(a, "eval/tictactoe/vs_random/win", "win")], "eval", tmp_path / "one.png"))
    both = imread(compare_lines([(a, "eval/tictactoe/vs_random/win", "win"),
                                 (a, "eval/tictactoe/vs_random/loss", "loss")], "eval", tmp_path / "two.png"))
    assert win.shape == both.shape and not np.array_equal(win, both)
    with pytest.raises(ValueError, match="no run has metric 'eval/tictactoe/vs_random/wins'; close matches: "
                                         "eval/tictactoe/vs_random/win"):
        compare_lines([(a, "eval/tictactoe/vs_random/wins", "win")], "eval", tmp_path / "x.png")


def test_compare_draws_one_line_per_run(tmp_path):
    # The figure, not just the file: both runs' curves, with their labels, in the legend.
    from matplotlib.image import imread

    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", invalid_start=0.1)
    one = imread(compare_runs([a], ["A"], "invalid_rate", tmp_path / "one.png"))
    two = imread(compare_runs([a, b], ["A", "B"], "invalid_rate", tmp_path / "two.png"))
    assert one.shape == two.shape and not np.array_equal(one, two)
