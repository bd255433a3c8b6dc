"""The model as a player: SPIRAL's prompt, batched moves, action probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from selfplay.agents.llm import GamePrompter, LLMAgent
from selfplay.agents.prompt import SPIRAL_TEMPLATE
from selfplay.games import make
from selfplay.models import HFGenerator, SamplingParams, load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", seed=0)


def test_chat_prompt_is_spirals_template_in_the_chat_template(tiny):
    _, tokenizer = tiny
    game = make("tictactoe", style="chat")
    spiral = SPIRAL_TEMPLATE.format(obs=game.observation())
    templated = tokenizer.decode(GamePrompter(tokenizer).ids(game))
    assert templated.startswith("<|im_start|>user\n" + spiral) and templated.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(GamePrompter(tokenizer, use_chat_template=False).ids(game)) == spiral


def test_compact_prompt_is_the_observation_alone(tiny):
    _, tokenizer = tiny
    game = make("tictactoe", style="compact")
    assert tokenizer.decode(GamePrompter(tokenizer).ids(game)) == "012345678:X"


def test_action_probabilities_are_a_distribution_over_legal_actions(tiny):
    model, tokenizer = tiny
    agent = LLMAgent(model, tokenizer, HFGenerator(model, tokenizer), SamplingParams(1.0, 1.0, 1), seed=0)
    games = [make("kuhn_poker", rounds=1, style="compact").reset(seed=s) for s in range(3)]
    games[1].step("b")  # facing a bet: call / fold
    batch = agent.action_probabilities_batch(games)
    for game, probs in zip(games, batch):
        assert set(probs) == set(game.legal_actions())
        assert sum(probs.values()) == pytest.approx(1.0) and all(p > 0 for p in probs.values())
        assert probs == pytest.approx(agent.action_probabilities(game))  # batched == one at a time
    assert len(agent.act_batch(games)) == 3


def test_action_probabilities_are_the_sampling_policy(tiny):
    """With one-token moves (max_new_tokens=1) a move is whatever single token is
    sampled, so P(move) is the next-token softmax renormalised over the legal moves; with
    room for more tokens the answer must also end there, so P(end | move) counts too."""
    model, tokenizer = tiny
    game = make("kuhn_poker", rounds=1, style="compact").reset(seed=0)
    prompt = GamePrompter(tokenizer).ids(game)
    with torch.no_grad():
        first = torch.log_softmax(model(torch.tensor([prompt])).logits[0, -1], dim=-1)
        ends = {}
        for action in game.legal_actions():
            ids = prompt + tokenizer(game.format_action(action), add_special_tokens=False)["input_ids"]
            ends[action] = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)[tokenizer.eos_token_id]
    token = {a: tokenizer(game.format_action(a), add_special_tokens=False)["input_ids"][0] for a in game.legal_actions()}
    assert all(len(tokenizer(game.format_action(a), add_special_tokens=False)["input_ids"]) == 1 for a in token)

    def normalised(scores):
        total = sum(math.exp(v) for v in scores.values())
        return {a: math.exp(v) / total for a, v in scores.items()}

    one_token = LLMAgent(model, tokenizer, HFGenerator(model, tokenizer), SamplingParams(1.0, 1.0, 1))
    expected = normalised({a: first[t].item() for a, t in token.items()})
    assert one_token.action_probabilities(game) == pytest.approx(expected, abs=1e-5)
    longer = LLMAgent(model, tokenizer, HFGenerator(model, tokenizer), SamplingParams(1.0, 1.0, 8))
    expected = normalised({a: first[t].item() + ends[a].item() for a, t in token.items()})
    assert longer.action_probabilities(game) == pytest.approx(expected, abs=1e-5)
