"""Play N games agent vs opponent and report rates with confidence intervals.

Seats alternate: in game i the agent sits in seat i % 2, so both seats get half the
games. Games are played in parallel *lanes*: every tick, the pending turns of each agent
across all running games go to that agent in one `act_batch` call, so a model-backed
agent generates for up to `lanes` games at once (scripted agents just loop). The agent
that batches (overrides `act_batch`) moves last in a tick, so it gets full batches. With a seed
everything is reproducible: game i is reset with a seed derived from (seed, i), each
agent's RNG is seeded once, and the schedule is deterministic (for a given `lanes`).

Outcomes are from the agent's side and partition the games: win / draw / loss by
comparing the two returns. `invalid` is the share of games the agent ended with an
invalid move (those are losses), `opponent_invalid` the share the opponent did.
Optionally (`optimal_moves=True`, small perfect-information games such as TicTacToe)
every agent move is checked against minimax's best moves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from selfplay.agents.base import Agent
from selfplay.evals import stats
from selfplay.games.base import Game
from selfplay.seeding import derive_seed

MAX_INVALID_EXAMPLES = 5


@dataclass
class GameRecord:
    index: int
    seed: int | None
    agent_seat: int
    returns: list[float]
    length: int  # turns taken, counting a final invalid move
    outcome: str  # "win" | "draw" | "loss", for the agent
    invalid_by: str | None = None  # "agent" | "opponent" | None
    invalid_text: str | None = None
    invalid_reason: str | None = None
    truncated: bool = False  # hit the game's turn limit (a draw)
    agent_moves: int = 0
    agent_optimal_moves: int = 0  # only counted with optimal_moves=True
    moves: list[dict] | None = None  # the transcript, kept for the first few games only


@dataclass
class ArenaResult:
    game: str
    agent: str
    opponent: str
    seed: int | None
    records: list[GameRecord]
    seconds: float = 0.0
    optimal_moves: bool = False
    extra: dict = field(default_factory=dict)  # e.g. exploitability, added by callers

    @property
    def transcripts(self) -> list[dict]:
        """The kept games move by move (who, action, the full response text), JSON-ready."""
        return [
            {"index": r.index, "agent_seat": r.agent_seat, "outcome": r.outcome, "returns": r.returns,
             "invalid": r.invalid_reason, "moves": r.moves}
            for r in self.records if r.moves is not None
        ]

    def subset(self, seat: int | None) -> list[GameRecord]:
        return [r for r in self.records if seat is None or r.agent_seat == seat]

    def rates(self, seat: int | None = None) -> dict:
        """Rates (with Wilson 95% intervals) and means for all games or one agent seat."""
        rs = self.subset(seat)
        n = len(rs)
        out = {"games": n}
        for outcome in ("win", "draw", "loss"):
            out[outcome] = stats.rate(sum(r.outcome == outcome for r in rs), n)
        out["invalid"] = stats.rate(sum(r.invalid_by == "agent" for r in rs), n)
        out["opponent_invalid"] = stats.rate(sum(r.invalid_by == "opponent" for r in rs), n)
        out["truncated"] = stats.rate(sum(r.truncated for r in rs), n)
        out["mean_return"] = stats.mean([r.returns[r.agent_seat] for r in rs])
        out["mean_length"] = stats.mean([float(r.length) for r in rs])
        if self.optimal_moves:
            out["optimal_move_rate"] = stats.rate(
                sum(r.agent_optimal_moves for r in rs), sum(r.agent_moves for r in rs)
            )
        return out

    def summary(self) -> dict:
        """Everything as one JSON-ready dict (what `selfplay eval --json` prints)."""
        examples = [
            {"by": r.invalid_by, "game": r.index, "seat": r.agent_seat if r.invalid_by == "agent"
             else 1 - r.agent_seat, "text": r.invalid_text, "reason": r.invalid_reason}
            for r in self.records
            if r.invalid_by is not None
        ]
        by_side = [e for e in examples if e["by"] == "agent"][:MAX_INVALID_EXAMPLES]
        by_side += [e for e in examples if e["by"] == "opponent"][:MAX_INVALID_EXAMPLES]
        return {
            "game": self.game,
            "agent": self.agent,
            "opponent": self.opponent,
            "seed": self.seed,
            "games": len(self.records),
            "overall": self.rates(None),
            "by_seat": {str(s): self.rates(s) for s in (0, 1)},
            "invalid_examples": by_side,
            "seconds": round(self.seconds, 3),
            **self.extra,
        }


def game_seed(seed: int | None, index: int) -> int | None:
    return None if seed is None else derive_seed(seed, index, "game")


@dataclass
class _Lane:
    record: GameRecord
    game: Game


def play(
    agent: Agent,
    opponent: Agent,
    game: str | Callable[[], Game],
    n_games: int,
    seed: int | None = 0,
    lanes: int = 64,
    progress: bool | None = None,
    optimal_moves: bool = False,
    game_options: dict | None = None,
    names: tuple[str, str] | None = None,
    keep_transcripts: int = 4,
) -> ArenaResult:
    """Play `n_games` of `game` (a name for `selfplay.games.make`, or a factory),
    agent vs opponent, seats alternating. `progress=None` shows a bar on a terminal.
    The first `keep_transcripts` games keep every move with the text that produced it."""
    from tqdm.auto import tqdm

    if isinstance(game, str):
        from selfplay.games import make

        name, options = game, dict(game_options or {})
        factory = lambda: make(name, **options)  # noqa: E731
    else:
        factory = game
        name = factory().name
    if getattr(agent, "interactive", False) or getattr(opponent, "interactive", False):
        lanes = 1  # a person plays one game at a time
    lanes = max(1, int(lanes))
    solver = None
    if optimal_moves:
        from selfplay.agents.minimax import Minimax

        solver = Minimax()
    if seed is not None:
        agent.seed(seed)
        if opponent is not agent:
            opponent.seed(seed + 1)
    agent_name, opponent_name = names or (agent.name, opponent.name)
    # Self-play with one object: a single group, both seats in the same call.
    order = [agent] if opponent is agent else (
        [agent, opponent] if _batches(opponent) and not _batches(agent) else [opponent, agent])

    start = time.perf_counter()
    records: list[GameRecord] = []
    running: list[_Lane] = []
    next_index = 0
    bar = tqdm(total=n_games, desc=f"{agent_name} vs {opponent_name}", unit="game",
               disable=(None if progress is None else not progress), leave=False)

    def retire_and_refill() -> None:
        nonlocal next_index
        for lane in [lane for lane in running if lane.game.is_terminal()]:
            _finish(lane)
            records.append(lane.record)
            running.remove(lane)
            bar.update(1)
        while len(running) < lanes and next_index < n_games:
            g = factory()
            g.reset(seed=game_seed(seed, next_index))
            record = GameRecord(next_index, game_seed(seed, next_index), next_index % 2, [], 0, "draw",
                                moves=[] if next_index < keep_transcripts else None)
            running.append(_Lane(record, g))
            next_index += 1

    try:
        retire_and_refill()
        while running:
            # One batched call per agent per tick, over every game where it is to move.
            # The batching agent goes last, after the other has moved everywhere (and
            # finished games were replaced), so it is to move in nearly every lane.
            for mover in order:
                group = [lane for lane in running
                         if (agent if lane.game.current_player == lane.record.agent_seat else opponent) is mover]
                if group:
                    texts = mover.act_batch([lane.game for lane in group])
                    if len(texts) != len(group):
                        raise RuntimeError(f"agent {mover.name!r} returned {len(texts)} moves for {len(group)} games")
                    for lane, text in zip(group, texts):
                        _move(lane, text, solver)
                retire_and_refill()
    finally:
        bar.close()
    records.sort(key=lambda r: r.index)
    return ArenaResult(name, agent_name, opponent_name, seed, records,
                       time.perf_counter() - start, optimal_moves)


def _batches(agent: Agent) -> bool:
    """Whether the agent has its own act_batch (a model generating many games at once)."""
    return type(agent).act_batch is not Agent.act_batch


def _move(lane: _Lane, text: str, solver) -> None:
    game, record = lane.game, lane.record
    is_agent = game.current_player == record.agent_seat
    best = solver.best_actions(game) if (solver is not None and is_agent) else None
    seat = game.current_player
    result = game.step(text)
    if record.moves is not None:
        record.moves.append({"by": "agent" if is_agent else "opponent", "seat": seat,
                             "action": result.action, "text": text})
    if is_agent:
        record.agent_moves += 1
        if best is not None and result.action in best:
            record.agent_optimal_moves += 1


def _finish(lane: _Lane) -> None:
    game, record = lane.game, lane.record
    seat = record.agent_seat
    record.returns = [float(x) for x in game.returns()]
    record.length = game.length
    mine, theirs = record.returns[seat], record.returns[1 - seat]
    record.outcome = "win" if mine > theirs else "loss" if mine < theirs else "draw"
    record.truncated = game.truncated
    if game.invalid is not None:
        record.invalid_by = "agent" if game.invalid.player == seat else "opponent"
        record.invalid_text = game.invalid.text
        record.invalid_reason = game.invalid.reason


__all__ = ["ArenaResult", "GameRecord", "game_seed", "play"]
