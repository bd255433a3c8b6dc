"""The model as a recipe sees it: who samples, who is evaluated, who is frozen.

The trainer owns the weights (`Policy.model`, what the learner trains) and calls `sync()`
after every update. Recipes only sample:

    policy.generator         the current weights (a model-dtype copy when the master
                             weights are fp32; a vLLM engine with backend=vllm; Ray
                             actors with distributed.rollout_workers), for training rollouts
    policy.evaluator         the model users get from the run: the weight average when
    policy.eval_generator    `optim.average_decay` is on, else the current weights
    policy.reference         the frozen initial model (KL reference, SPIRAL's `frozen`
                             opponent, LSP's quality judge), loaded on first use; with
                             LoRA, the trained model with its adapter switched off
    policy.snapshot()        a frozen copy of the evaluator now (past opponents)
    policy.generator_for(m)  a generator for any frozen model
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from selfplay.algorithms.averaging import WeightAverage
from selfplay.models.generation import HFGenerator
from selfplay.models.loading import load_model, resolve_device, resolve_dtype, save_checkpoint
from selfplay.models.lora import WithoutAdapter, add_adapter, load_adapter, merged, merged_state_dict

ONLINE = "online"  # with weight averaging: the checkpoint's subfolder of the online weights


class Policy:
    def __init__(self, model_cfg, optim_cfg, sampling_cfg, seed: int, resume_from: Path | None = None,
                 backend: str = "hf", vllm_settings=None, distributed_settings=None):
        self.model_cfg, self.seed, self.backend = model_cfg, seed, backend
        self.remote = bool(distributed_settings and distributed_settings.rollout_workers)
        # asynchronous mode: the workers sample with weights a few updates old while the learner updates
        self.staleness = distributed_settings.max_staleness if self.remote else 0
        # vLLM in this process with LoRA: the engine holds the base, each update sends the adapter alone
        self.vllm_adapter = (backend == "vllm" and not self.remote and bool(model_cfg.lora)
                             and vllm_settings.lora_updates == "adapter")
        self.generation_batch_size = sampling_cfg.generation_batch_size
        self.reuse_prefix = sampling_cfg.reuse_prefix
        self.use_chat_template = model_cfg.use_chat_template
        # Mixed precision: the learner's (master) weights are fp32 unless optim.master_weights=model;
        # forward passes and generation run in model.dtype (bf16 on a GPU, fp32 on the CPU).
        self.compute_dtype = resolve_dtype(model_cfg.dtype, resolve_device(model_cfg.device))
        master_dtype = torch.float32 if optim_cfg.master_weights == "float32" else self.compute_dtype
        self.mixed_precision = master_dtype != self.compute_dtype
        # A checkpoint written with weight averaging holds the average; the online weights are in online/.
        averaged_ckpt = resume_from is not None and (resume_from / ONLINE).is_dir()
        source = resume_from / ONLINE if averaged_ckpt else resume_from or model_cfg.name
        if model_cfg.lora:  # a LoRA checkpoint holds the adapter only: load the base under it
            source = model_cfg.name
        self.model, self.tokenizer = load_model(str(source), dtype=master_dtype, device=model_cfg.device, seed=seed)
        if model_cfg.lora:  # the adapter: the checkpoint's, or a fresh one
            self.model = (load_adapter(self.model, resume_from, trainable=True) if resume_from else
                          add_adapter(self.model, model_cfg.lora, seed=seed, base_name=model_cfg.name))
        # Polyak averaging: the learner trains self.model; evaluation and checkpoints use the average
        # (kept in the master dtype: in bf16 the average's small steps would round away too).
        self.average = None
        if optim_cfg.average_decay:
            average_model = (load_model(str(resume_from), dtype=master_dtype, device=model_cfg.device)[0]
                             if averaged_ckpt else copy.deepcopy(self.model))
            self.average = WeightAverage(average_model, optim_cfg.average_decay)
        self._reference = None
        if self.remote:  # Ray actors, each with its own copy (hf or a vLLM engine), refreshed by sync()
            self.generator = self._start_workers(distributed_settings, vllm_settings)
        elif backend == "vllm":  # a vLLM engine, refreshed in place by sync()
            self.generator = self._start_vllm(vllm_settings)
        else:  # its own model-dtype copy when the master weights are fp32 (refreshed by sync()); else self.model
            self.generator = self.generator_for(self.inference_copy(self.model) if self.mixed_precision else self.model)
        self.eval_generator = self.generator_for(self.evaluator) if self.average else self.generator

    @property
    def evaluator(self):
        """The model a user gets from this run: the weight average when averaging is on."""
        return self.average.model if self.average else self.model

    @property
    def reference(self):
        """The frozen initial model, in the compute dtype (loaded once, on first use)."""
        # (with LoRA, the trained model with its adapter off; not in asynchronous mode, where a
        # collection may use the reference while the learner updates the same model)
        if self._reference is None and self.model_cfg.lora and not self.staleness:
            self._reference = WithoutAdapter(self.model)
        if self._reference is None:
            self._reference, _ = load_model(self.model_cfg.name, dtype=self.model_cfg.dtype,
                                            device=self.model_cfg.device, seed=self.seed)
            self._reference.eval().requires_grad_(False)
        return self._reference

    def _start_vllm(self, settings):
        from selfplay.models.vllm_generator import VLLMGenerator

        if self.vllm_adapter:  # the base weights; the adapter follows, after every update too
            base, _ = load_model(self.model_cfg.name, dtype=self.compute_dtype, device="cpu", seed=self.seed)
            generator = VLLMGenerator.start(base, self.tokenizer, settings, dtype=self.compute_dtype, seed=self.seed,
                                            max_batch_size=self.generation_batch_size,
                                            lora_rank=self.model_cfg.lora.r)
            generator.load_adapter(self.model)
            return generator
        # the current weights (adapter merged in; vLLM casts them to the compute dtype)
        start = merged(copy.deepcopy(self.model)) if self.model_cfg.lora else self.model
        return VLLMGenerator.start(start, self.tokenizer, settings, dtype=self.compute_dtype, seed=self.seed,
                                   max_batch_size=self.generation_batch_size)

    def _start_workers(self, settings, vllm_settings):
        from selfplay.rollout.ray_workers import RayGenerator

        generator = RayGenerator(self.model_cfg.name, self.seed, settings.rollout_workers,
                                 threads=settings.threads_per_worker, max_batch_size=self.generation_batch_size,
                                 reuse_prefix=self.reuse_prefix,
                                 address=settings.address, cpus_per_worker=settings.cpus_per_worker,
                                 gpus_per_worker=settings.gpus_per_worker, keep_versions=self.staleness + 1,
                                 vllm_settings=vllm_settings if self.backend == "vllm" else None,
                                 dtype=self.compute_dtype)
        generator.load_weights(self.sampler_weights())  # a resumed run's weights, an adapter merged in
        return generator

    def sampler_weights(self) -> dict:
        """The weights a separate sampler loads after an update (with LoRA, the adapter merged in)."""
        return merged_state_dict(self.model) if self.model_cfg.lora else self.model.state_dict()

    def generator_for(self, model) -> HFGenerator:
        return HFGenerator(model, self.tokenizer, max_batch_size=self.generation_batch_size,
                           reuse_prefix=self.reuse_prefix)

    def inference_copy(self, model):
        """A frozen copy of `model` in the compute dtype, for sampling."""
        return copy.deepcopy(model).to(self.compute_dtype).eval().requires_grad_(False)

    def snapshot(self):
        """A frozen copy of the evaluator as it is now (with LoRA, the adapter merged in)."""
        if self.model_cfg.lora:
            return merged(self.inference_copy(self.evaluator))
        return self.inference_copy(self.evaluator)

    def load_frozen(self, folder: str | Path):
        """A frozen model saved by `save_evaluator` (or any checkpoint folder), in the compute dtype."""
        model, _ = load_model(str(folder), dtype=self.model_cfg.dtype, device=self.model_cfg.device, seed=self.seed)
        return model.eval().requires_grad_(False)

    def save_evaluator(self, folder: str | Path) -> Path:
        """The evaluator's weights and the tokenizer as a Hugging Face folder (atomic)."""
        return save_checkpoint(self.evaluator, self.tokenizer, folder)

    def before_update(self) -> None:
        """Before an update: a vLLM engine in sleep mode frees its GPU memory for the learner."""
        if self.backend == "vllm" and not self.remote:
            self.generator.sleep()

    def sync(self) -> None:
        """After an update: the new weights into the generator (nothing to copy when it shares
        the learner's model), and into the average. In asynchronous mode the workers' weights
        are only published: the collection pipeline says which version each batch samples with."""
        self.model.eval()
        if self.staleness:  # published; the collection in progress goes on with its own version
            self.generator.publish(self.sampler_weights())
        elif self.vllm_adapter:
            self.generator.load_adapter(self.model)
        elif self.backend == "vllm" or self.remote:
            self.generator.load_weights(self.sampler_weights())
        else:  # a model-dtype copy of the same (peft) model, or the model itself
            self.generator.load_weights(self.model.state_dict() if self.mixed_precision else None)
        if self.average:
            self.average.update(self.model)

    # ---- checkpoints: the trainer writes them ------------------------------------------
    def save(self, folder: Path) -> None:
        self.save_evaluator(folder)
        if self.average:
            save_checkpoint(self.model, self.tokenizer, folder / ONLINE)

    def state_dict(self) -> dict:
        return {"average": self.average.state_dict() if self.average else None}

    def load_state_dict(self, state: dict) -> None:
        if self.average and state.get("average"):
            self.average.load_state_dict(state["average"])
