"""Kuhn poker, SPIRAL's multi-round version (TextArena KuhnPoker); rounds=1 is classic Kuhn.

Rules. A deck J < Q < K. Each round both players ante 1 chip and get one card (two of
the three, without replacement; the deck is reshuffled every round). With no bet
pending a player may "[check]" or "[bet]" (1 chip); facing a bet, "[call]" (1 chip,
then showdown) or "[fold]" (the bettor takes the pot). Check-check is a showdown
for the antes. The higher card wins a showdown. Player 0 acts first in round 0 and the
first player alternates every round (TextArena's first round starts with player 1:
a relabelling of seats, nothing else). `rounds` defaults to SPIRAL's 5.

Returns. `chips`[p] is player p's net chips over the rounds played (zero-sum).
payoff="winloss" (SPIRAL, default): more chips after the last round wins, +1/-1,
equal chips is a draw 0/0. payoff="chips": the net chips themselves; with rounds=1
this is exactly OpenSpiel's kuhn_poker (pass = check/fold, bet = bet/call).

Observations
    chat     TextArena's rules text, the results of earlier rounds, chips, this round's
             card and actions, the available actions.
    compact  the card and this round's actions as letters, x=check b=bet c=call f=fold:
             "K:xb" = holding K; this round the first player checked, then the second bet
             (so it is the first player's turn again, facing a bet).
             With rounds > 1 the round number (1-based) and own chips come first:
             "3+1K:xb" = round 3, up 1 chip, holding K.
Compact action: one letter, the same as the observation's: "x" (check), "b" (bet),
"c" (call), "f" (fold); the words are accepted too. One character per move lets a tiny
model with a character tokenizer answer in a single token.

Deals. `reset(seed)` fixes every deal: each is one of the 6 ordered pairs, a base-6
digit of SplitMix64(seed, block), 8 rounds per 64-bit block (uniform to within 1e-12).
Seeding a Mersenne Twister per game would cost more than all of a game's steps.
"""

from __future__ import annotations

import copy
import random
from functools import lru_cache

from selfplay.games.base import Game, Parsed

CARDS = "JQK"  # index = rank
RANK = {c: i for i, c in enumerate(CARDS)}
DEALS = [(a, b) for a in CARDS for b in CARDS if a != b]  # (player 0's card, player 1's card)
LETTER = {"[check]": "x", "[bet]": "b", "[call]": "c", "[fold]": "f"}
ACTION_OF = {letter: action for action, letter in LETTER.items()}
NO_BET = ("[check]", "[bet]")
FACING_BET = ("[call]", "[fold]")
PAYOFFS = ("winloss", "chips")
MASK64 = (1 << 64) - 1
# Every action's text as format_action writes it (and the other spelling parse accepts):
# the fast paths of format_action and parse are dictionary lookups.
_FORMATTED = {"chat": {a: f"\\boxed{{{a}}}" for a in LETTER}, "compact": dict(LETTER)}
_TEXTS = {
    "chat": {f"\\boxed{{{a}}}": a for a in LETTER} | {f"\\boxed{{{a[1:-1]}}}": a for a in LETTER},
    "compact": {a[1:-1]: a for a in LETTER} | {a: a for a in LETTER} | ACTION_OF,
}
# (style, facing a bet) -> {exact text: action} of the actions legal there.
_LEGAL_TEXTS = {
    (style, facing): {text: a for text, a in texts.items() if a in (FACING_BET if facing else NO_BET)}
    for style, texts in _TEXTS.items()
    for facing in (False, True)
}

RULES = (
    "You are Player {p} in a {rounds} round game of Kuhn Poker.\n"
    "Game Rules:\n"
    "- Kuhn Poker uses a 3-card deck with J, Q, K (J lowest, K highest)\n"
    "- Each player antes 1 chip and receives 1 card each round (note that the cards are "
    "dealt without replacement, so you cannot have the same card as your opponent).\n"
    "- Game continues for {rounds} rounds\n"
    "- The player with the most chips after all rounds wins\n\n"
    "Action Rules:\n"
    "- '[check]': Pass without betting (only if no bet is on the table)\n"
    "- '[bet]': Add 1 chip to the pot (only if no bet is on the table)\n"
    "- '[call]': Match an opponent's bet by adding 1 chip to the pot\n"
    "- '[fold]': Surrender your hand and let your opponent win the pot\n"
)


GOLDEN = 0x9E3779B97F4A7C15
DEALS_PER_BLOCK = 8  # base-6 digits taken from 64 random bits: 6**8 is tiny beside 2**64


def splitmix64(x: int) -> int:
    """SplitMix64's output: 64 well-mixed bits from a 64-bit counter."""
    x = (x + GOLDEN) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


# The chat observation is made of pieces fixed by a few small values (a game visits few
# of them), so each piece is rendered once per process and then looked up.
@lru_cache(maxsize=1 << 14)
def _finished_round(index: int, cards: tuple[str, str], letters: str, showdown: bool) -> tuple[str, str]:
    """A finished round's line in each player's chat observation (the opponent's card
    is shown after a showdown)."""
    played = ", ".join(f"Player {(index + j) % 2} {ACTION_OF[c]}" for j, c in enumerate(letters))
    lines = []
    for player in (0, 1):
        seen = f"; Player {1 - player} had {cards[1 - player]}" if showdown else ""
        lines.append(f"Round {index + 1}: your card {cards[player]}{seen}; {played}.\n")
    return tuple(lines)


@lru_cache(maxsize=1 << 16)
def _current_round(rounds: int, player: int, chips: int, round_: int, card: str, letters: str,
                   done: bool, over: bool) -> str:
    """The end of the chat observation: chips, then this round (`over`: is_terminal())."""
    chips_line = f"Chips so far: you {chips:+d}, opponent {-chips:+d}."  # chips are zero-sum
    if done:
        return chips_line + "\nThe game is over."
    starter = round_ % 2
    mover = (starter + len(letters)) % 2
    played = ", ".join(f"Player {(starter + j) % 2} {ACTION_OF[c]}" for j, c in enumerate(letters))
    if player != mover:
        last = f"Waiting for Player {mover}."
    else:
        legal = () if over else (FACING_BET if letters.endswith("b") else NO_BET)
        last = "Your available actions are: " + ", ".join(f"'{a}'" for a in legal)
    return (
        f"{chips_line}\n### Round {round_ + 1} out of {rounds} (Player {starter} acts first). "
        f"Your card is: '{card}'\nThis round so far: {played or 'no actions yet'}.\n{last}"
    )


class KuhnPoker(Game):
    name = "kuhn_poker"

    @property
    def exact_measures(self) -> tuple[str, ...]:
        # classic Kuhn (one round) is an OpenSpiel game: its exploitability is exact
        return ("exploitability",) if self.rounds == 1 else ()

    def __init__(self, rounds: int = 5, payoff: str = "winloss", **options):
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
        if payoff not in PAYOFFS:
            raise ValueError(f"unknown payoff {payoff!r}; choose one of {PAYOFFS}")
        self.rounds = rounds
        self.payoff = payoff
        self._rules = [RULES.format(p=p, rounds=rounds) + "\n" for p in (0, 1)]
        super().__init__(**options)

    def reset(self, seed: int | None = None, cards: tuple[str, str] | None = None) -> KuhnPoker:
        """`cards` fixes the first round's deal as (player 0's card, player 1's card)."""
        if cards is not None:
            cards = tuple(cards)
            if len(cards) != 2 or cards[0] == cards[1] or not set(cards) <= set(CARDS):
                raise ValueError(f"cards must be two different letters of {CARDS}, got {cards!r}")
        self._first_deal = cards
        return super().reset(seed)

    def _reset(self, seed: int | None) -> None:
        if seed is None:
            seed = random.getrandbits(64)
        elif not isinstance(seed, int):  # any other seed random.Random takes (str, bytes)
            seed = random.Random(seed).getrandbits(64)
        self._seed = seed & MASK64
        self.chips = [0, 0]  # net chips per player over finished rounds (zero-sum)
        self.past: list[tuple[tuple[str, str], list[str], bool]] = []  # (cards, actions, showdown)
        self._head = self._rules[:]  # per player: chat rules + finished rounds, grown at _settle
        self.round = -1
        self._done = False
        self._deal(self._first_deal)

    def _deal(self, cards: tuple[str, str] | None = None) -> None:
        self.round += 1
        if self.round % DEALS_PER_BLOCK == 0:
            self._deal_bits = splitmix64(self._seed + self.round // DEALS_PER_BLOCK * GOLDEN)
        self._deal_bits, deal = divmod(self._deal_bits, 6)
        self.cards = cards or DEALS[deal]
        self.round_actions: list[str] = []
        self.letters = ""  # round_actions as letters (x b c f): observations' and caches' key
        self._decide(facing_bet=False)
        self.round_starter = self.round % 2
        self.player = self.round_starter
        self.pot = [1, 1]  # this round's contributions, antes included

    @property
    def current_player(self) -> int:
        return self.player

    def _decide(self, facing_bet: bool) -> None:
        """Set the legal actions of the next decision (kept, not recomputed per call)."""
        self._legal = FACING_BET if facing_bet else NO_BET
        self._legal_texts = _LEGAL_TEXTS[self.style, facing_bet]

    def legal_actions(self) -> list[str]:
        return [] if self._over else list(self._legal)

    def is_legal(self, action: str) -> bool:
        return not self._over and action in self._legal

    def sample_action(self, rng) -> str:
        # Two legal actions always: one random bit is uniform, and far cheaper than choice.
        return self._legal[rng.getrandbits(1)]

    def format_action(self, action: str) -> str:
        return _FORMATTED[self.style].get(action) or super().format_action(action)

    def _exact_action(self, text: str) -> str | None:
        return self._legal_texts.get(text)

    def parse(self, text: str) -> Parsed:
        if self.style == "compact" and not self._over:  # the one-letter moves
            word = text.strip()
            action = ACTION_OF.get(word.lower() if self.lenient else word)
            if action is not None:
                if action in self._legal:
                    return Parsed(action)
                legal = ", ".join(LETTER[a] for a in self._legal)
                return Parsed(None, f"{word!r} ({action[1:-1]}) is not legal now; legal: {legal}")
        return super().parse(text)

    def _apply(self, action: str) -> None:
        p = self.player
        self.round_actions.append(action)
        self.letters += LETTER[action]
        if action == "[bet]" or action == "[call]":
            self.pot[p] += 1
        if action == "[fold]":
            self._settle(winner=1 - p, showdown=False)
        elif action == "[call]" or self.letters == "xx":
            c0, c1 = self.cards
            self._settle(winner=0 if RANK[c0] > RANK[c1] else 1, showdown=True)
        else:  # a first check, or a bet
            self.player = 1 - p
            if action == "[bet]":
                self._decide(facing_bet=True)

    def _settle(self, winner: int, showdown: bool) -> None:
        """End the round: the winner takes the loser's contribution to the pot."""
        won = self.pot[1 - winner]
        self.chips[winner] += won
        self.chips[1 - winner] -= won
        self.past.append((self.cards, self.round_actions, showdown))
        if self.style == "chat":
            line0, line1 = _finished_round(self.round, self.cards, self.letters, showdown)
            self._head = [self._head[0] + line0, self._head[1] + line1]
        if self.round + 1 < self.rounds:
            self._deal()
        else:
            self._done = True  # the last round's cards and actions stay visible

    def _terminal(self) -> bool:
        return self._done

    def _returns(self) -> list[float]:
        if self.payoff == "chips":
            return [float(c) for c in self.chips]
        diff = self.chips[0] - self.chips[1]
        return [0.0, 0.0] if diff == 0 else ([1.0, -1.0] if diff > 0 else [-1.0, 1.0])

    # ---- what players see ----------------------------------------------------------
    def information_state(self, player: int | None = None) -> str:
        """Seat, then each finished round as own card + actions + the opponent's card
        if it was shown (showdown) else "?", then this round's card + actions.
        Classic Kuhn: "0|Kxb" = player 0 holding K, after check, bet."""
        player = self.player if player is None else player
        parts = [str(player)]
        current = [] if self._done else [(self.cards, self.round_actions, None)]
        for cards, actions, showdown in self.past + current:
            key = cards[player] + "".join(LETTER[a] for a in actions)
            if showdown is not None:
                key += cards[1 - player] if showdown else "?"
            parts.append(key)
        return "|".join(parts)

    def observation(self, player: int | None = None) -> str:
        player = self.player if player is None else player
        if self.style == "compact":
            head = "" if self.rounds == 1 else f"{self.round + 1}{self.chips[player]:+d}"
            return f"{head}{self.cards[player]}:{self.letters}"
        return self._head[player] + _current_round(
            self.rounds, player, self.chips[player], self.round, self.cards[player], self.letters,
            self._done, self._over,
        )

    def clone(self) -> KuhnPoker:
        new = copy.copy(self)
        new.chips = self.chips[:]
        new.past = self.past[:]  # entries are never mutated after settling
        new._head = self._head[:]
        new.round_actions = self.round_actions[:]
        new.pot = self.pot[:]
        new.history = self.history[:]
        return new
