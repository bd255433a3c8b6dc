"""The openai agent against a real local HTTP server speaking /v1/chat/completions."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("openai")

from selfplay.agents import make_agent  # noqa: E402
from selfplay.agents.prompt import SPIRAL_TEMPLATE  # noqa: E402
from selfplay.evals.arena import play  # noqa: E402
from tests.chat_server import ChatServer  # noqa: E402

QUOTED_ACTION = re.compile(r"'(\[[^\]]+\])'")


def first_available_action(prompt: str) -> str:
    """Reason a little, then box the first action the observation offers."""
    line = [l for l in prompt.splitlines() if "vailable" in l][-1]
    return f"The first option looks fine.\n\\boxed{{{QUOTED_ACTION.findall(line)[0]}}}"


def test_openai_agent_plays_full_games_against_a_local_server(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-local-test")
    with ChatServer(first_available_action) as server:
        agent = make_agent("openai:test-model", base_url=server.url, api_key_env="TEST_LLM_KEY",
                           temperature=0.25, max_tokens=64)
        result = play(agent, make_agent("random"), "tictactoe", 4, seed=0, progress=False)
    assert {r.agent_seat for r in result.records} == {0, 1}
    assert all(r.invalid_by is None and r.length >= 5 for r in result.records)
    # One request per move of the agent, each SPIRAL's prompt with the chat observation.
    assert len(server.requests) == sum(r.agent_moves for r in result.records)
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-local-test"
    assert (request["model"], request["temperature"], request["max_tokens"]) == ("test-model", 0.25, 64)
    (message,) = request["messages"]
    assert message["role"] == "user"
    head, tail = SPIRAL_TEMPLATE.format(obs="\0").split("\0")
    assert message["content"].startswith(head) and message["content"].endswith(tail)
    assert "Tic Tac Toe" in message["content"]


def test_openai_agent_in_a_compact_game_still_sees_and_answers_natural_language(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "k")
    with ChatServer(first_available_action) as server:
        agent = make_agent("openai", model="m", base_url=server.url, api_key_env="TEST_LLM_KEY")
        result = play(agent, make_agent("random"), "kuhn_poker", 2, seed=1, progress=False,
                      game_options={"style": "compact", "rounds": 2})
    assert all(r.invalid_by is None for r in result.records)
    assert all("Kuhn Poker" in r["messages"][0]["content"] for r in server.requests)


def test_a_reply_without_a_boxed_answer_is_an_invalid_move(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "k")
    with ChatServer(lambda prompt: "I would play the centre, " * 3) as server:
        agent = make_agent("openai:m", base_url=server.url, api_key_env="TEST_LLM_KEY")
        result = play(agent, make_agent("random"), "tictactoe", 2, seed=0, progress=False)
    assert all(r.invalid_by == "agent" and r.outcome == "loss" for r in result.records)
    assert "boxed" in result.records[0].invalid_reason
    assert result.summary()["invalid_examples"][0]["text"].startswith("I would play")


def test_missing_api_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        make_agent("openai:m", api_key_env="NO_SUCH_KEY_VAR")
