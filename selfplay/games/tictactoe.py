"""Tic-tac-toe, as in SPIRAL (TextArena's TicTacToe-v0) and OpenSpiel's tic_tac_toe.

Cells are numbered 0-8 row by row; actions are "[0]".."[8]". Player 0 is X and moves
first (as in OpenSpiel; TextArena calls its first player O, only the letter differs).
Three in a row wins (+1 / -1), a full board is a draw (0 / 0).

Observations
    chat     TextArena's wording: rules, the board with free cells numbered, the moves so
             far and the available moves.
    compact  11 characters: the 9 cells row by row ("X", "O", or the cell's own digit
             when empty, as TextArena draws the board), ":", then the mark to play.
             "X123O5678:X" = X in 0, O in 4, X to move. Numbering the free cells makes
             a legal move a digit the model can see (a copy), which tiny models learn fast.
Compact action: the cell digit, "4". Chat action: "\\boxed{4}" or "\\boxed{[4]}".
"""

from __future__ import annotations

import copy
from functools import lru_cache

from selfplay.games.base import Game

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
MARKS = ("X", "O")
ACTIONS = tuple(f"[{i}]" for i in range(9))
CELL = {a: i for i, a in enumerate(ACTIONS)}
# HAS_LINE[mask]: whether the cells set in the 9-bit `mask` contain three in a row.
# One table lookup per move instead of scanning the lines.
HAS_LINE = [any(all(mask >> c & 1 for c in line) for line in LINES) for mask in range(512)]

BOARD = "\n---+---+---\n".join([" {} | {} | {} "] * 3)
RULES = (
    "You are Player {p} in Tic Tac Toe.\n"
    "Your goal is to win three in a row (horizontally, vertically, or diagonally) on the board.\n"
    "On your turn, you should select the square number (0-8) you want to put your mark in next.\n"
    "For example, '[4]' places your mark in the center cell of the board.\n\n"
    "As Player {p}, you will be '{mine}', while your opponent is '{theirs}'.\n"
)


_RULES = [RULES.format(p=p, mine=MARKS[p], theirs=MARKS[1 - p]) for p in (0, 1)]
# Exact texts of every action, as format_action writes them (and "\boxed{4}" too), for
# the fast path of parse.
_TEXTS = {
    "chat": {**{f"\\boxed{{{a}}}": a for a in ACTIONS}, **{f"\\boxed{{{a[1:-1]}}}": a for a in ACTIONS}},
    "compact": {**{a[1:-1]: a for a in ACTIONS}, **{a: a for a in ACTIONS}},
}
_HEADS = [rules + "\nMoves so far: " for rules in _RULES]
# ", Player 0 (X): [4]": one move of the chat's "Moves so far", by player and cell.
_PLAYED = [[f", Player {p} ({MARKS[p]}): {a}" for a in ACTIONS] for p in (0, 1)]
_ENDINGS: dict[tuple[str, int, bool], str] = {}  # see _ending


def _ending(cells: str, player: int, over: bool) -> str:
    """The chat observation after the moves: the board with free cells numbered, whose
    turn it is, the free cells. Fixed by the cells (they say who moves), the viewer and
    whether the game is over, so rendered once per process (< 25,000 of them)."""
    key = (cells, player, over)
    text = _ENDINGS.get(key)
    if text is None:
        board = BOARD.format(*(c if c != "." else i for i, c in enumerate(cells)))
        text = f"\n\nCurrent Board:\n\n{board}\n\n"
        mover = cells.count("X") - cells.count("O")  # X moves first: 0 when X is to move
        if over:
            text += "The game is over."
        else:
            turn = "your turn" if player == mover else f"Player {mover}'s turn"
            available = ", ".join(f"'{ACTIONS[i]}'" for i, c in enumerate(cells) if c == ".")
            text += f"It is {turn}. Available Moves: {available}"
        _ENDINGS[key] = text
    return text


class TicTacToe(Game):
    name = "tictactoe"
    measures = ("optimal_moves",)

    def _reset(self, seed: int | None) -> None:
        self.board = ["."] * 9  # "X", "O" or "."
        self.cells = "........."  # the board as one string: the observations' cache key
        self.free = list(ACTIONS)  # legal actions, kept in step with the board
        self.masks = [0, 0]  # cells of each player as bits, for the win test
        self.player = 0
        self.winner: int | None = None
        self._moves = ""  # ", " + "Moves so far" of the chat observation, extended move by move

    @property
    def current_player(self) -> int:
        return self.player

    def legal_actions(self) -> list[str]:
        if self._over:
            return []
        return self.free[:]

    def is_legal(self, action: str) -> bool:
        return not self._over and action in self.free

    def sample_action(self, rng) -> str:
        return rng.choice(self.free)  # = rng.choice(legal_actions()), without the copy

    def _exact_action(self, text: str) -> str | None:
        action = _TEXTS[self.style].get(text)
        return action if action in self.free else None

    def _apply(self, action: str) -> None:
        cell, p = CELL[action], self.player
        mark = MARKS[p]
        self.board[cell] = mark
        self.cells = self.cells[:cell] + mark + self.cells[cell + 1 :]
        self.free.remove(action)
        self.masks[p] |= 1 << cell
        if HAS_LINE[self.masks[p]]:
            self.winner = p
        self._moves += _PLAYED[p][cell]
        self.player = 1 - p

    def _terminal(self) -> bool:
        return self.winner is not None or not self.free

    def _returns(self) -> list[float]:
        if self.winner is None:
            return [0.0, 0.0]
        return [1.0, -1.0] if self.winner == 0 else [-1.0, 1.0]

    # ---- what players see ----------------------------------------------------------
    def information_state(self, player: int | None = None) -> str:
        # Perfect information: the board and who is to move say everything.
        player = self.player if player is None else player
        return f"{player}:{self.cells}:{MARKS[self.player]}"

    def observation(self, player: int | None = None) -> str:
        player = self.player if player is None else player
        if self.style == "compact":
            return _numbered(self.cells) + ":" + MARKS[self.player]
        ending = _ENDINGS.get((self.cells, player, self._over)) or _ending(self.cells, player, self._over)
        return _HEADS[player] + (self._moves[2:] or "none yet") + ending

    def brief_observation(self) -> str:
        mark = MARKS[self.player]
        board = BOARD.format(*(c if c != "." else i for i, c in enumerate(self.cells)))
        return (f"Tic Tac Toe. You are {mark}, your opponent is {MARKS[1 - self.player]}. "
                f"The board, free cells numbered:\n{board}\nLegal moves: {', '.join(self.legal_actions())}")

    def clone(self) -> TicTacToe:
        # Much faster than deepcopy; search-based agents clone a lot.
        new = copy.copy(self)
        new.board = self.board[:]
        new.free = self.free[:]
        new.masks = self.masks[:]
        new.history = self.history[:]
        return new


@lru_cache(maxsize=None)
def _numbered(cells: str) -> str:
    """ "X...O...." -> "X123O5678": free cells show their number."""
    return "".join(c if c != "." else str(i) for i, c in enumerate(cells))
