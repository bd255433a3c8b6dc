"""`selfplay report RUN_DIR`: the training curves as PNGs and one self-contained HTML page.

    selfplay report runs/spiral-tictactoe              # -> runs/spiral-tictactoe/report/
    selfplay report runs/rae runs/no-rae --compare eval/tictactoe/vs_random/win --labels RAE,no-RAE

Reads what the trainer writes in a run folder (see selfplay/trainer.py): `metrics.jsonl`
(one object per step; keys vary by run), `config.yaml` and `transcripts.jsonl`. Metrics
are grouped into figures by key prefix (eval rates per game, exploitability, collapse
signals, RAE baselines, loss, throughput); whatever no group claims still gets plotted
under "other metrics", so a new metric is never silently dropped. The HTML page embeds
the PNGs as base64, so it can be mailed or attached as one file.

Matplotlib is used through `Figure` + the Agg canvas directly, never pyplot: no global
figure state, no backend switch, nothing that needs a display.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import html
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ---- reading a run folder ------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    """Objects of a JSONL file; unreadable lines are skipped with a warning, because a run
    that crashed mid-write leaves a truncated last line and its report is still wanted."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)  # the trainer writes NaN/Infinity as bare words; json reads them back
        except json.JSONDecodeError as error:
            print(f"warning: {path}:{number}: skipped unreadable line ({error.msg})", file=sys.stderr)
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


@dataclass
class Series:
    """One metric over training: values at the steps where it was logged, and a 95%
    interval where the logger gave one (NaN where not)."""

    steps: np.ndarray
    values: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.low).any())


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def _point(value) -> tuple[float, float, float] | None:
    """(value, low, high) of one logged value, or None if it is not a number.

    Numbers are taken as they are (bools as 0/1, null as NaN). The arena's records
    ({"rate": p, "ci95": [lo, hi], ...} or {"mean": m, ...}) give their number and
    interval, so the report reads eval rows whether the trainer logs plain rates or whole
    records."""
    if value is None or isinstance(value, (int, float)):
        return (_number(value), math.nan, math.nan)
    if isinstance(value, dict):
        centre = next((value[k] for k in ("rate", "mean", "value") if k in value), "absent")
        if centre is not None and not isinstance(centre, (int, float)):
            return None
        ci = value.get("ci95")
        low, high = ci if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
        return (_number(centre), _number(low), _number(high))
    return None


def load_series(run_dir: str | Path) -> dict[str, Series]:
    """Every numeric metric of a run, sorted by step.

    A key missing from a row is *not* a point (eval keys exist only on evaluation steps;
    their curve joins the evaluations). A key logged as NaN, +-inf or null *is* a point
    with a NaN value, so the line breaks there: a diverged loss shows as a gap, not as a
    spike or a silently joined line. A step logged twice (a resumed run): the later row wins.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {str(run_dir)!r} a run folder written by `selfplay train`?")
    by_step: dict[int, dict] = {}
    for row in read_jsonl(path):
        if isinstance(row.get("step"), (int, float)):
            by_step.setdefault(int(row["step"]), {}).update(row)
    points: dict[str, list[tuple]] = {}
    for step in sorted(by_step):
        for key, value in by_step[step].items():
            point = _point(value) if key != "step" else None
            if point is not None:
                points.setdefault(key, []).append((step, *(v if math.isfinite(v) else math.nan for v in point)))
    return {k: Series(*np.array(p, dtype=float).T) for k, p in points.items()}


def load_transcripts(run_dir: str | Path) -> list[dict]:
    return read_jsonl(Path(run_dir) / "transcripts.jsonl")


# ---- which metrics go in which figure --------------------------------------------------


@dataclass
class Panel:
    """One axes: a line per key."""

    title: str
    keys: list[str]
    labels: list[str]  # legend entries, one per key
    ylabel: str = "value"
    ylim: tuple[float, float] | None = None


@dataclass
class FigureSpec:
    name: str  # file stem of the PNG
    title: str
    panels: list[Panel] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [k for p in self.panels for k in p.keys]


RATE_ORDER = ["win", "non_loss", "draw", "loss", "invalid"]  # the order lines appear in a legend
# Other eval/<game>/vs_<opponent>/<name> keys that are rates in [0, 1] (besides *_rate);
# the rest (games, mean_return, mean_length) are not rates and go under "other metrics".
RATES = {*RATE_ORDER, "opponent_invalid", "truncated"}
RATE_LIMITS = (-0.03, 1.03)
COLLAPSE = [  # (key, panel title, y label): the signs of a collapsing policy
    ("response_length", "response length", "tokens"),
    ("truncation_rate", "truncated responses", "fraction"),
    ("invalid_rate", "games lost to an invalid move", "fraction"),
]
EPISODES = [("game_length", "game length", "turns"), ("advantage_abs", "mean |advantage|", "|A|")]
EVAL_RATE = re.compile(r"^eval/(?P<game>[^/]+)/vs_(?P<opponent>[^/]+)/(?P<rate>[^/]+)$")


def is_rate_key(key: str) -> bool:
    m = EVAL_RATE.match(key)
    return bool(m) and (m["rate"] in RATES or m["rate"].endswith("_rate"))


def _rate_rank(rate: str) -> tuple[int, str]:
    return (RATE_ORDER.index(rate) if rate in RATE_ORDER else len(RATE_ORDER), rate)


def plan_figures(keys: list[str]) -> list[FigureSpec]:
    """Group metric keys into figures; each key lands in exactly one figure, absent groups
    give no figure. Pure (no plotting), so the grouping is easy to test and to read."""
    left = set(keys)
    figures: list[FigureSpec] = []

    def take(key: str) -> str:
        left.discard(key)
        return key

    # Evaluation rates: one figure per game, one panel per opponent, one line per rate.
    rates: dict[str, dict[str, list[str]]] = {}
    for key in sorted(keys):
        m = EVAL_RATE.match(key)
        if m and is_rate_key(key):
            rates.setdefault(m["game"], {}).setdefault(m["opponent"], []).append(key)
    for game, by_opponent in rates.items():
        fig = FigureSpec(f"eval_{game}", f"{game}: evaluation against fixed opponents")
        for opponent, group in by_opponent.items():
            group.sort(key=lambda k: _rate_rank(k.rsplit("/", 1)[1]))
            fig.panels.append(Panel(f"vs {opponent}", [take(k) for k in group], [k.rsplit("/", 1)[1] for k in group],
                                    "rate", RATE_LIMITS))
        figures.append(fig)

    expl = sorted(k for k in keys if k.startswith("eval/") and k.endswith("/exploitability"))
    if expl:
        figures.append(FigureSpec("exploitability", "Exploitability (0 = Nash equilibrium)", [
            Panel("exploitability", [take(k) for k in expl], [k.split("/")[1] for k in expl], "exploitability")]))

    def one_per_panel(name: str, title: str, rows: list[tuple[str, str, str]]) -> None:
        present = [(k, t, y) for k, t, y in rows if k in left]
        if present:
            figures.append(FigureSpec(name, title, [Panel(t, [take(k)], [k], y) for k, t, y in present]))

    one_per_panel("collapse", "Collapse signals", COLLAPSE)

    rae = sorted(k for k in keys if k.startswith("rae_baseline/"))
    if rae:
        figures.append(FigureSpec("rae_baselines", "RAE baselines (moving mean return per game and role)", [
            Panel("baseline", [take(k) for k in rae], [k.removeprefix("rae_baseline/") for k in rae], "return")]))

    seat0 = sorted(k for k in keys if k.startswith("selfplay/") and k.endswith("/seat0_return"))
    episodes = [(k, t, y) for k, t, y in EPISODES if k in left]
    if seat0 or episodes:
        fig = FigureSpec("selfplay", "Self-play episodes")
        if seat0:
            fig.panels.append(Panel("seat 0 return in self-play", [take(k) for k in seat0],
                                    [k.split("/")[1] for k in seat0], "return"))
        fig.panels += [Panel(t, [take(k)], [k], y) for k, t, y in episodes]
        figures.append(fig)

    past = sorted(k for k in keys if k.startswith("past_opponents/") and k.endswith("/learner_return"))
    if past:
        figures.append(FigureSpec("past_opponents", "Against past snapshots (rollout.past_opponents)", [
            Panel("learner's return", [take(k) for k in past], [k.split("/")[1] for k in past], "return")]))

    for prefix, name, title in [("loss/", "loss", "Learner statistics"), ("throughput/", "throughput", "Throughput"),
                                ("time/", "time", "Wall time")]:
        group = sorted(k for k in left if k.startswith(prefix))
        one_per_panel(name, title, [(k, k, k.removeprefix(prefix)) for k in group])

    rest = sorted(left)
    one_per_panel("other", "Other metrics", [(k, k, "value") for k in rest])
    return figures


# ---- drawing ------------------------------------------------------------------------------


def _new_figure(n_panels: int, title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = 2 if n_panels == 4 else min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(5.2 * cols, 3.4 * rows + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _plot_line(ax, series: Series, label: str, dense: int) -> None:
    # Sparse series (evaluations every N steps) get markers so a lone point is visible.
    marker = "o" if len(series.steps) <= max(40, dense // 3) else None
    (line,) = ax.plot(series.steps, series.values, label=label, marker=marker, markersize=3.5, linewidth=1.5)
    if series.has_interval:
        ax.fill_between(series.steps, series.low, series.high, color=line.get_color(), alpha=0.15, linewidth=0)


def draw_figure(spec: FigureSpec, series: dict[str, Series], out_png: str | Path) -> Path:
    dense = max((len(s.steps) for s in series.values()), default=0)
    fig, axes = _new_figure(len(spec.panels), spec.title)
    for ax, panel in zip(axes, spec.panels):
        for key, label in zip(panel.keys, panel.labels):
            _plot_line(ax, series[key], label=label, dense=dense)
        ax.set_title(panel.title)
        ax.set_xlabel("training step")
        ax.set_ylabel(panel.ylabel)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        ax.grid(alpha=0.3)
        if len(panel.keys) > 1:  # a single line is named by the panel title
            ax.legend(fontsize=8, loc="best")
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    return out_png


def compare_runs(run_dirs: list[str | Path], labels: list[str] | None, key: str, out_png: str | Path) -> Path:
    """Plot metric `key` of several runs on one axes (e.g. the RAE-on vs RAE-off ablation).

    A run that lacks `key` is left out with a warning; if none has it, ValueError names
    the closest keys that do exist."""
    run_dirs = [Path(r) for r in run_dirs]
    labels = list(labels) if labels else [r.name for r in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} runs; give one label per run")
    return compare_lines([(run, key, label) for run, label in zip(run_dirs, labels)], key, out_png)


def compare_lines(lines: list[tuple[str | Path, str, str]], title: str, out_png: str | Path,
                  ylabel: str | None = None) -> Path:
    """Plot (run, metric key, label) lines on one axes: several runs' metric, or several
    metrics of one run (e.g. held-out accuracy beside accuracy on fresh queries); the y axis
    is named `ylabel`, else by the title's last `/` part."""
    fig, (ax,) = _new_figure(1, title)
    plotted, known, keys = 0, set(), {key for _, key, _ in lines}
    for run, key, label in lines:
        series = load_series(run)
        known |= set(series)
        if key not in series:
            print(f"warning: {run} has no metric {key!r}; left out of the comparison", file=sys.stderr)
            continue
        _plot_line(ax, series[key], label=label, dense=max(len(s.steps) for s in series.values()))
        plotted += 1
    if not plotted:
        key = sorted(keys)[0]
        hint = difflib.get_close_matches(key, sorted(known), n=5, cutoff=0.4)
        raise ValueError(f"no run has metric {key!r}" + (f"; close matches: {', '.join(hint)}" if hint else ""))
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel or title.rsplit("/", 1)[-1])
    if all(is_rate_key(key) for key in keys):
        ax.set_ylim(*RATE_LIMITS)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png


# ---- the HTML page ------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
img { max-width: 100%; border: 1px solid #eee; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: .25em .5em; vertical-align: top; text-align: left; }
th { background: #f4f4f4; }
td { white-space: pre-wrap; font-family: ui-monospace, monospace; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; }
.keys { color: #666; font-size: .85em; }
.transcript { border: 1px solid #ddd; border-radius: 4px; padding: .2em 1em; margin: 1em 0; }
"""


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def render_value(value) -> str:
    """HTML for one transcript field: a list of dicts is a table (a column per key), a dict
    a key/value table, anything else escaped text. Everything a model wrote is escaped."""
    esc = html.escape
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        columns: list[str] = []
        for row in value:
            columns += [k for k in row if k not in columns]
        head = "".join(f"<th>{esc(str(c))}</th>" for c in ["#", *columns])
        body = "".join(
            "<tr>" + f"<td>{i}</td>" + "".join(f"<td>{esc(_text(row.get(c)))}</td>" for c in columns) + "</tr>"
            for i, row in enumerate(value))
        return f"<table><tr>{head}</tr>{body}</table>"
    if isinstance(value, dict):
        rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_text(v))}</td></tr>" for k, v in value.items())
        return f"<table>{rows}</table>"
    text = _text(value)
    return f"<pre>{esc(text)}</pre>" if "\n" in text else esc(text)


def render_transcript(t: dict) -> str:
    esc = html.escape
    title = [f"step {_text(t['step'])}" if "step" in t else "", _text(t.get("game")),
             f"vs {_text(t['opponent'])}" if "opponent" in t else ""]
    parts = [f'<div class="transcript"><h3>{esc(" · ".join(x for x in title if x))}</h3>']
    # Short fields (returns, winner, ...) first, tables (the moves) after them.
    fields = [(k, v) for k, v in t.items() if k not in ("step", "game", "opponent")]
    fields.sort(key=lambda kv: not _is_short(kv[1]))
    for key, value in fields:
        if _is_short(value):
            parts.append(f"<p><b>{esc(str(key))}</b>: {render_value(value)}</p>")
        else:
            parts.append(f"<p><b>{esc(str(key))}</b></p>{render_value(value)}")
    parts.append("</div>")
    return "\n".join(parts)


def _is_short(value) -> bool:
    """Scalars and flat lists (like returns [1, -1]) fit on one line."""
    if isinstance(value, list):
        return all(not isinstance(v, (list, dict)) for v in value)
    return not isinstance(value, dict)


def _last_values_table(series: dict[str, Series], keys: list[str]) -> str:
    rows = []
    for key in keys:
        steps, values = series[key].steps, series[key].values
        finite = np.flatnonzero(np.isfinite(values))
        if len(finite):
            i = finite[-1]
            rows.append(f"<tr><td>{html.escape(key)}</td><td>{values[i]:.4g}</td><td>{int(steps[i])}</td></tr>")
    if not rows:
        return ""
    return "<table><tr><th>metric</th><th>last value</th><th>at step</th></tr>" + "".join(rows) + "</table>"


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, max_transcripts: int = 20) -> Path:
    """Write one PNG per figure and `report.html` into `out_dir` (default RUN_DIR/report);
    return the HTML's path."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    series = load_series(run_dir)
    figures = plan_figures(list(series))

    esc = html.escape
    steps = sorted({int(step) for s in series.values() for step in s.steps})
    summary = f"{len(steps)} logged steps" + (f" ({steps[0]} to {steps[-1]})" if steps else "")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>selfplay report: {esc(run_dir.name)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>selfplay report: {esc(run_dir.name)}</h1><p>{esc(str(run_dir.resolve()))} — {esc(summary)}</p>"]

    eval_keys = [k for k in sorted(series) if k.startswith("eval/")]
    if eval_keys:
        parts += ["<h2>Latest evaluation</h2>", _last_values_table(series, eval_keys)]

    parts.append("<h2>Training curves</h2>")
    if not figures:
        parts.append("<p>No numeric metrics logged yet.</p>")
    for spec in figures:
        png = draw_figure(spec, series, out_dir / f"{spec.name}.png")
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts += [f"<h3>{esc(spec.title)}</h3>",
                  f'<img src="data:image/png;base64,{data}" alt="{esc(spec.title)}">',
                  f'<p class="keys">metrics: {esc(", ".join(spec.keys))}</p>']

    config = run_dir / "config.yaml"
    parts.append("<h2>Config</h2>")
    parts.append(f"<pre>{esc(config.read_text())}</pre>" if config.is_file() else "<p>No config.yaml in this run.</p>")

    transcripts = load_transcripts(run_dir)
    shown = transcripts[-max_transcripts:] if max_transcripts > 0 else []
    parts.append("<h2>Sample games</h2>")
    if shown:
        parts.append(f"<p>The latest {len(shown)} of {len(transcripts)} recorded games, newest first.</p>")
        parts += [render_transcript(t) for t in reversed(shown)]
    else:
        parts.append("<p>No transcripts recorded (they are written at evaluation steps).</p>")
    parts.append("</body></html>")

    page = out_dir / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page


# ---- the command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s) written by `selfplay train`")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report; with --compare: .)")
    parser.add_argument("--compare", metavar="KEY", default=None,
                        help="plot one metric (e.g. eval/tictactoe/vs_random/win) of all the runs on one figure")
    parser.add_argument("--labels", default=None, help="comma-separated legend labels for --compare (default: folder names)")
    parser.add_argument("--max-transcripts", type=int, default=20, help="sample games shown in the page (latest first)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.compare:
            labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.compare).strip("_")
            out = compare_runs(args.run_dirs, labels, args.compare, Path(args.out or ".") / f"compare_{safe}.png")
            print(f"wrote {out}")
            return 0
        for run_dir in args.run_dirs:
            out = None
            if args.out is not None:  # several runs into one --out: a subfolder each
                out = Path(args.out) / Path(run_dir).resolve().name if len(args.run_dirs) > 1 else Path(args.out)
            page = build_report(run_dir, out, max_transcripts=args.max_transcripts)
            print(f"wrote {page}")
    except (FileNotFoundError, ValueError) as error:
        print(f"selfplay report: {error}", file=sys.stderr)
        return 2
    return 0
