"""SPIRAL's prompt template, shared by every agent that prompts a language model.

Base models get it as plain text; chat models and chat endpoints get the same text as
the one user turn (no system prompt), as in ALGORITHMS.md section 1.

`brief` is the other prompt, for small chat models: the game's short observation (for
TicTacToe: the board with free cells numbered and the legal moves), "reply with your move
only", and one worked example before it (the opening position of the same game, answered
with a boxed legal move). Measured on SmolLM2-135M-Instruct, 48 TicTacToe positions at
temperature 1: 0 legal moves with the paper's prompt, 0 with the brief text alone, 26 with
the example turn. The move is parsed the same way under both: only a boxed legal action.
"""

from __future__ import annotations

from selfplay.games.base import Game

SPIRAL_TEMPLATE = (
    "You are playing a two-player zero-sum game. Make valid actions to win.\n"
    "Observation: {obs}\n"
    "Please reason step by step, and put your final answer within \\boxed{{}}."
)


BRIEF_INSTRUCTION = "\nReply with your move only, inside \\boxed{}."
PROMPTS = ("paper", "brief")


def chat_observation(game: Game) -> str:
    """The current player's observation in the `chat` style, whatever the game's style:
    an LLM needs the natural-language rules even when the game is set up `compact`."""
    if game.style == "chat":
        return game.observation()
    view = game.clone()
    view.style = "chat"
    return view.observation()


def spiral_prompt(game: Game) -> str:
    return SPIRAL_TEMPLATE.format(obs=chat_observation(game))


def game_messages(game: Game, prompt: str = "paper") -> list[dict[str, str]]:
    """The chat a language model sees for its turn: SPIRAL's one user turn (`paper`), or
    the `brief` one after an example exchange."""
    if prompt == "paper":
        return [{"role": "user", "content": spiral_prompt(game)}]
    if prompt == "brief":
        example = _chat_view(game)
        example.reset(seed=0)
        legal = example.legal_actions()
        return [{"role": "user", "content": example.brief_observation() + BRIEF_INSTRUCTION},
                {"role": "assistant", "content": example.format_action(legal[len(legal) // 2])},
                {"role": "user", "content": _chat_view(game).brief_observation() + BRIEF_INSTRUCTION}]
    raise ValueError(f"unknown prompt {prompt!r}; choose one of: {', '.join(PROMPTS)}")


def _chat_view(game: Game) -> Game:
    view = game.clone()
    view.style = "chat"
    return view
