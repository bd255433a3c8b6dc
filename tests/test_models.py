"""Models: char tokenizer, tiny presets, checkpoints, and the hf generation backend.

Everything here runs the real tiny Qwen3 model and the real tokenizer; no mocks.
"""

from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfplay.models import (
    HFGenerator,
    SamplingParams,
    build_char_tokenizer,
    load_model,
    render_prompt,
    save_checkpoint,
    token_logprobs,
)
from selfplay.models.generation import default_stop_token_ids, sample_next
from selfplay.models.gguf import ModelLoadError


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", seed=0)


# ---------------------------------------------------------------- tokenizer

def test_char_tokenizer_is_one_token_per_character_and_round_trips_through_auto_tokenizer(tmp_path):
    tokenizer = build_char_tokenizer()
    text = "x.o..x...o\n[4] Offer: 3 Wood -> 1 Gold ♠"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text)  # no bos added, one id per character
    assert tokenizer.decode(ids) == text

    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text)["input_ids"] == ids
    assert reloaded.decode(ids) == text
    assert reloaded.chat_template == tokenizer.chat_template
    assert (reloaded.pad_token, reloaded.eos_token) == ("<|pad|>", "<|endoftext|>")


def test_special_tokens_are_single_ids_and_unknown_characters_map_to_unk():
    tokenizer = build_char_tokenizer()
    ids = tokenizer("<|im_start|>a<|im_end|>é", add_special_tokens=False)["input_ids"]
    assert ids == [2, tokenizer.convert_tokens_to_ids("a"), 3, tokenizer.unk_token_id]


def test_chat_template_is_chatml_and_render_prompt_picks_template_or_raw_text():
    tokenizer = build_char_tokenizer()
    chat = render_prompt(tokenizer, "x.o")
    assert tokenizer.decode(chat) == "<|im_start|>user\nx.o<|im_end|>\n<|im_start|>assistant\n"
    # <|im_start|> "user" \n  x . o  <|im_end|> \n <|im_start|> "assistant" \n  = 1+4+1+3+1+1+1+9+1
    assert len(chat) == 22
    assert render_prompt(tokenizer, "x.o", use_chat_template=False) == tokenizer("x.o")["input_ids"]
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        render_prompt(tokenizer, "x.o", use_chat_template=True)
    assert len(render_prompt(tokenizer, "x.o")) == 3  # no template: raw text


# ---------------------------------------------------------------- tiny models and checkpoints

def test_tiny_preset_is_a_small_tied_qwen3_seeded_and_leaves_global_rng_alone(tiny):
    model, tokenizer = tiny
    assert model.config.model_type == "qwen3" and model.config.tie_word_embeddings
    assert model.config.vocab_size == len(tokenizer)
    assert model.dtype == torch.float32 and not model.training
    state = torch.random.get_rng_state()
    again, _ = load_model("tiny", seed=0)
    other, _ = load_model("tiny", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    weight = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(model.state_dict()[weight], again.state_dict()[weight])
    assert not torch.equal(model.state_dict()[weight], other.state_dict()[weight])


def test_checkpoint_loads_back_with_plain_transformers(tiny, tmp_path):
    model, tokenizer = tiny
    path = save_checkpoint(model, tokenizer, tmp_path / "step_1")
    assert (path / "model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    save_checkpoint(model, tokenizer, path)  # overwriting an existing checkpoint works too

    plain_model = AutoModelForCausalLM.from_pretrained(path)
    plain_tokenizer = AutoTokenizer.from_pretrained(path)
    ids = torch.tensor([render_prompt(plain_tokenizer, "x.o..x...o")])
    with torch.no_grad():
        assert torch.equal(plain_model(ids).logits, model(ids).logits)
    reloaded, _ = load_model(str(path))
    assert torch.equal(reloaded.state_dict()["model.norm.weight"], model.state_dict()["model.norm.weight"])


def test_missing_local_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "no_such_model"))


# ---------------------------------------------------------------- generation

PROMPTS = ["x.o..x...o", "ab", "a much longer observation, so rows get left padding"]


def test_logprobs_are_the_policys_log_softmax_of_the_sampled_tokens(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer)
    prompts = [render_prompt(tokenizer, p) for p in PROMPTS]
    # temperature 2 and top-p 0.9 change what is sampled, not the log-probs returned
    for params in [SamplingParams(max_new_tokens=12), SamplingParams(temperature=2.0, top_p=0.9, max_new_tokens=12)]:
        for gen in generator.generate(prompts, params, seed=3):
            ids = torch.tensor([gen.prompt_ids + gen.response_ids])
            with torch.no_grad():
                logits = model(ids).logits[0, len(gen.prompt_ids) - 1:-1]
            expected = token_logprobs(logits, torch.tensor(gen.response_ids))
            assert len(gen.logprobs) == len(gen.response_ids) > 0
            torch.testing.assert_close(torch.tensor(gen.logprobs), expected, atol=1e-5, rtol=0)


def test_generation_is_deterministic_for_a_seed(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer)
    prompts = [render_prompt(tokenizer, p) for p in PROMPTS]
    params = SamplingParams(max_new_tokens=16)
    first = generator.generate(prompts, params, seed=7)
    assert first == generator.generate(prompts, params, seed=7)
    assert first != generator.generate(prompts, params, seed=8)


def test_greedy_matches_model_generate_and_left_padding_does_not_change_rows(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer)
    prompts = [render_prompt(tokenizer, p) for p in PROMPTS]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10, stop_token_ids=(-1,))
    batched = generator.generate(prompts, greedy)
    for prompt, gen in zip(prompts, batched):
        alone = generator.generate([prompt], greedy)[0]
        assert alone.response_ids == gen.response_ids
        reference = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=10,
                                   min_new_tokens=10, eos_token_id=None, pad_token_id=0)
        assert gen.response_ids == reference[0, len(prompt):].tolist()
        assert gen.truncated and gen.text == tokenizer.decode(gen.response_ids, skip_special_tokens=True)


def test_generation_stops_at_a_stop_token_and_keeps_it(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer, max_batch_size=2)
    prompts = [render_prompt(tokenizer, p) for p in PROMPTS]
    # greedy run to learn the third token of each row; then make it a stop token
    free = generator.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=5, stop_token_ids=(-1,)))
    third = free[0].response_ids[2]
    stopped = generator.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=5, stop_token_ids=(third,)))
    for before, after in zip(free, stopped):
        if third in before.response_ids:
            cut = before.response_ids.index(third) + 1
            assert after.response_ids == before.response_ids[:cut] and not after.truncated
            assert after.logprobs == pytest.approx(before.logprobs[:cut], abs=1e-6)
        else:
            assert after.response_ids == before.response_ids and after.truncated
    assert not stopped[0].truncated and len(stopped[0].response_ids) <= 3


def test_stopped_rows_leave_the_batch_and_the_others_keep_their_cache(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer)
    prompts = [render_prompt(tokenizer, p) for p in ["x" * n + "o" * (7 - n) for n in range(8)] + PROMPTS]
    # a quarter of the vocabulary stops a row: answers of ragged lengths
    params = SamplingParams(max_new_tokens=12, stop_token_ids=tuple(range(3, len(tokenizer), 4)))
    rows_per_step = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: rows_per_step.append(kwargs["input_ids"].shape[0]),
                                           with_kwargs=True)
    try:
        batched = generator.generate(prompts, params, seed=5)
    finally:
        hook.remove()
    lengths = [len(g.response_ids) for g in batched]
    assert len(set(lengths)) > 3
    running = [sum(n > t for n in lengths) for t in range(max(lengths))]
    assert rows_per_step[0] == len(prompts) and min(rows_per_step) < len(prompts)  # rows did leave
    for t, n in enumerate(rows_per_step[1:], start=1):  # the running rows, and fewer than 1/4 more stopped ones
        assert running[t] <= n < running[t] + n / 4 + 1
    # each remaining row kept its own cache: its log-probs are those of a fresh forward pass
    for gen in batched:
        ids = torch.tensor([gen.prompt_ids + gen.response_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(gen.prompt_ids) - 1:-1]
        expected = token_logprobs(logits, torch.tensor(gen.response_ids))
        torch.testing.assert_close(torch.tensor(gen.logprobs), expected, atol=1e-5, rtol=0)
        assert gen.truncated == (gen.response_ids[-1] not in params.stop_token_ids)


def test_default_stop_tokens_are_eos_and_im_end(tiny):
    model, tokenizer = tiny
    assert HFGenerator(model, tokenizer).stop_token_ids == (1, 3)


def test_sampler_draws_from_temperature_and_top_p_distribution():
    rng = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).expand(40_000, 3)
    counts = torch.bincount(sample_next(logits, SamplingParams(), rng), minlength=3) / 40_000
    torch.testing.assert_close(counts, torch.tensor([0.5, 0.3, 0.2]), atol=0.01, rtol=0)
    # top-p 0.7: mass before token 1 is 0.5 < 0.7 (kept), before token 2 is 0.8 (cut); renormalise 5/8, 3/8
    counts = torch.bincount(sample_next(logits, SamplingParams(top_p=0.7), rng), minlength=3) / 40_000
    torch.testing.assert_close(counts, torch.tensor([0.625, 0.375, 0.0]), atol=0.01, rtol=0)
    # temperature 0.5 squares the probabilities: 25:9:4 / 38
    counts = torch.bincount(sample_next(logits, SamplingParams(temperature=0.5), rng), minlength=3) / 40_000
    torch.testing.assert_close(counts, torch.tensor([25 / 38, 9 / 38, 4 / 38]), atol=0.01, rtol=0)


def test_allowed_token_ids_restrict_the_draw_and_keep_the_policys_log_probs(tiny):
    # the sampler: mass only on the allowed ids, in the policy's proportions (0.3 : 0.2)
    rng = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).expand(40_000, 3)
    counts = torch.bincount(sample_next(logits, SamplingParams(allowed_token_ids=(1, 2)), rng), minlength=3) / 40_000
    torch.testing.assert_close(counts, torch.tensor([0.0, 0.6, 0.4]), atol=0.01, rtol=0)
    assert sample_next(logits[:2], SamplingParams(temperature=0, allowed_token_ids=(2,)), rng).tolist() == [2, 2]
    # a generation: every token allowed; log-probs are log pi_theta over the whole vocabulary
    model, tokenizer = tiny
    allowed = tuple(tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in "0123456789")
    allowed += default_stop_token_ids(model, tokenizer)
    generations = HFGenerator(model, tokenizer).generate(
        [render_prompt(tokenizer, p) for p in PROMPTS], SamplingParams(max_new_tokens=8, allowed_token_ids=allowed),
        seed=1)
    for gen in generations:
        assert set(gen.response_ids) <= set(allowed) and all(c.isdigit() for c in gen.text)
        torch.testing.assert_close(torch.tensor(gen.logprobs), _fresh_forward_logprobs(model, gen), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="allowed_token_ids"):
        SamplingParams(allowed_token_ids=())


def test_load_weights_copies_into_a_separate_model_and_is_free_when_shared(tiny):
    model, tokenizer = tiny
    copy, _ = load_model("tiny", seed=5)
    generator = HFGenerator(copy, tokenizer)
    generator.load_weights(model.state_dict())
    for name, tensor in model.state_dict().items():
        assert torch.equal(copy.state_dict()[name], tensor)
    shared = HFGenerator(model, tokenizer)
    shared.load_weights(model.state_dict())  # same tensors: copies nothing
    shared.load_weights(None)  # the trainer's way of saying "shared"
    assert shared.model is model


def test_sampling_params_reject_bad_values():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1.0)


def _fresh_forward_logprobs(model, gen):
    ids = torch.tensor([gen.prompt_ids + gen.response_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(gen.prompt_ids) - 1:-1]
    return token_logprobs(logits, torch.tensor(gen.response_ids))


def test_engine_requests_join_and_leave_at_every_step_and_match_single_generation(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8, stop_token_ids=(-1,))
    engine = generator.engine(greedy)
    prompts = [render_prompt(tokenizer, p) for p in PROMPTS + ["o" * 30, "x"]]
    # requests join at steps 0, 0, 2, 3, 3 with their own limits; short prompts join long caches and back
    arrivals = {0: [0, 1], 2: [2], 3: [3, 4]}
    limits = [5, 1, 8, 3, 2]
    done, finished_at, step = {}, {}, 0
    while len(done) < len(prompts):
        new = [(i, prompts[i], limits[i]) for i in arrivals.get(step, [])]
        for key, gen in engine.step(new):
            done[key], finished_at[key] = gen, step
        step += 1
    assert finished_at == {1: 0, 0: 4, 4: 4, 3: 5, 2: 9}  # each at its own limit, not the longest one's
    assert engine.running == 0
    for i, prompt in enumerate(prompts):
        alone = generator.generate([prompt], replace(greedy, max_new_tokens=limits[i]))[0]
        assert done[i].response_ids == alone.response_ids and done[i].truncated
        torch.testing.assert_close(torch.tensor(done[i].logprobs), _fresh_forward_logprobs(model, done[i]),
                                   atol=1e-5, rtol=0)


def test_engine_stops_rows_on_stop_tokens_and_a_step_of_new_rows_is_a_generate_call(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer)
    prompts = [render_prompt(tokenizer, p) for p in ["x" * n + "o" * (7 - n) for n in range(8)]]
    params = SamplingParams(max_new_tokens=12, stop_token_ids=tuple(range(3, len(tokenizer), 4)))
    engine = generator.engine(params)
    gens = dict(engine.step([(i, p, 12) for i, p in enumerate(prompts)], seed=1))
    s = 2
    while engine.running:
        gens.update(engine.step([], seed=s))
        s += 1
    assert len({len(g.response_ids) for g in gens.values()}) > 2
    for g in gens.values():
        assert g.truncated == (g.response_ids[-1] not in params.stop_token_ids)
        torch.testing.assert_close(torch.tensor(g.logprobs), _fresh_forward_logprobs(model, g), atol=1e-5, rtol=0)
    # one step of new one-token requests samples exactly what generate does with the same seed
    one = replace(params, max_new_tokens=1)
    stepped = generator.engine(one).step([(i, p, 1) for i, p in enumerate(prompts)], seed=7)
    assert [g for _, g in stepped] == generator.generate(prompts, one, seed=7)


# ---------------------------------------------------------------- the shared prompt prefix

RULES = "Tic Tac Toe. You are X. Reply with your move only, as one digit. "  # every prompt starts with it


def _forward_shapes(model):
    """Record (rows, tokens) of every forward pass's input ids; returns the list and the hook."""
    shapes = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)
    return shapes, hook


def test_a_shared_prompt_prefix_runs_once_and_changes_no_sample(tiny):
    model, tokenizer = tiny
    prompts = [render_prompt(tokenizer, RULES + board) for board in ["x.o..x...o", "....", "xoxo.xo.x", "o"]]
    params = SamplingParams(max_new_tokens=12, stop_token_ids=tuple(range(3, len(tokenizer), 4)))
    whole = HFGenerator(model, tokenizer, reuse_prefix=False).generate(prompts, params, seed=4)
    shapes, hook = _forward_shapes(model)
    try:
        reused = HFGenerator(model, tokenizer).generate(prompts, params, seed=4)
    finally:
        hook.remove()
    # the prefix once for one row, then only each prompt's own tokens (left-padded to the longest)
    shared = shapes[0][1]
    assert shapes[0] == (1, shared) and shared > len(RULES)  # the template's opening, RULES (a token a character)
    assert shapes[1] == (len(prompts), max(len(p) for p in prompts) - shared)
    assert [g.response_ids for g in reused] == [g.response_ids for g in whole]
    for a, b in zip(reused, whole):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.tensor(a.logprobs), _fresh_forward_logprobs(model, a), atol=1e-5, rtol=0)
    # a judge's next-token log-probs: the same with and without
    ids = list(range(4, 40))
    torch.testing.assert_close(torch.tensor(HFGenerator(model, tokenizer).next_token_logprobs(prompts, ids)),
                               torch.tensor(HFGenerator(model, tokenizer, reuse_prefix=False)
                                            .next_token_logprobs(prompts, ids)), atol=1e-5, rtol=0)


def test_prompts_that_share_little_or_stand_alone_run_whole(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer)
    params = SamplingParams(temperature=0.0, max_new_tokens=2)
    for prompts in ([render_prompt(tokenizer, p) for p in PROMPTS], [render_prompt(tokenizer, RULES)]):
        shapes, hook = _forward_shapes(model)
        try:
            generator.generate(prompts, params)
        finally:
            hook.remove()
        assert shapes[0] == (len(prompts), max(len(p) for p in prompts))


def test_engine_keeps_the_shared_prefix_for_later_requests_until_the_weights_change(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6, stop_token_ids=(-1,))
    prompts = [render_prompt(tokenizer, RULES + board) for board in ["x.o..x...o", "....", "xoxo.xo.x", "o", "xx"]]
    engine = generator.engine(greedy)
    shapes, hook = _forward_shapes(model)
    try:
        done = dict(engine.step([(0, prompts[0], 6), (1, prompts[1], 6)]))
        shared = shapes[0][1]
        del shapes[:]
        done.update(engine.step([(2, prompts[2], 6)]))  # joins the running rows: its own tokens only
        assert shapes[0] == (1, len(prompts[2]) - shared)
        generator.load_weights(None)  # new weights: the kept prefix is stale
        del shapes[:]
        done.update(engine.step([(3, prompts[3], 6), (4, prompts[4], 6)]))
        assert shapes[0] == (1, shared) and shapes[1][0] == 2  # computed again, then the two prompts' own tokens
        while engine.running:
            done.update(engine.step([]))
    finally:
        hook.remove()
    assert engine.prefix is None  # dropped when the engine ran empty
    for i, prompt in enumerate(prompts):
        alone = HFGenerator(model, tokenizer, reuse_prefix=False).generate([prompt], greedy)[0]
        assert done[i].response_ids == alone.response_ids
        torch.testing.assert_close(torch.tensor(done[i].logprobs), _fresh_forward_logprobs(model, done[i]),
                                   atol=1e-5, rtol=0)
