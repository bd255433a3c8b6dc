"""A reward model as the task reward R(q, a): any Hugging Face sequence classifier with one score.

LSP's task reward is Skywork-Reward-V2-Llama-3.2-3B (ALGORITHMS.md section 2); any
`AutoModelForSequenceClassification` checkpoint works the same way:

    R(q, a) = logits[0] of the classifier on the conversation [user: q, assistant: a]

The conversation is rendered with the tokenizer's chat template when it has one, else as
plain text ("User: q\\n\\nAssistant: a"). Its score is unbounded and on the model's own
scale: weighing it against the 0-7 quality points is the recipe's choice.

Batching: pairs are sorted by length, right-padded into batches of `batch_size` (padding
is masked, so a pair scores the same alone or in any batch), and returned in their order.
A pair longer than `max_length` tokens is cut at the end and scored as it stands (the
reason says so): the reward model then never sees the end of that answer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from selfplay.models.loading import resolve_device, resolve_dtype
from selfplay.rewards import RewardSource, Score

FALLBACK_MAX_LENGTH = 4096  # when neither the model nor the tokenizer states a context length


class RewardModel(RewardSource):
    def __init__(self, path_or_id: str, device: str = "auto", batch_size: int = 16,
                 max_length: int | None = None, dtype: str = "auto"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device_ = resolve_device(device)
        looks_local = path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") > 1
        if looks_local and not Path(path_or_id).expanduser().is_dir():
            raise FileNotFoundError(f"reward model folder {path_or_id!r} does not exist")
        name = str(Path(path_or_id).expanduser()) if looks_local else path_or_id
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                name, dtype=resolve_dtype(dtype, device_), output_loading_info=True)
        except OSError as error:
            raise OSError(f"cannot load reward model {path_or_id!r}: not a local folder with config.json and "
                          "not in the Hugging Face cache (this machine may be offline; download it elsewhere "
                          f"and pass the folder). Cause: {error}") from error
        # A causal LM loads as a classifier too, with a freshly drawn head: refuse random rewards.
        fresh_head = [k for k in info.get("missing_keys", ()) if not k.startswith(model.base_model_prefix + ".")]
        if fresh_head:
            raise ValueError(f"{path_or_id!r} has no trained reward head (missing {', '.join(sorted(fresh_head))}); "
                             "is it a reward model (AutoModelForSequenceClassification)?")
        if self.tokenizer.pad_token_id is None:  # many chat tokenizers ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.config = model.config.get_text_config()
        if self.config.pad_token_id is None:  # the classifier finds each row's last token by it
            self.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(device_).eval()
        self.device, self.batch_size = device_, batch_size
        self.max_length = max_length or self._context_length()
        self.has_template = bool(getattr(self.tokenizer, "chat_template", None))

    def _context_length(self) -> int:
        limits = [getattr(self.config, "max_position_embeddings", None),
                  getattr(self.tokenizer, "model_max_length", None)]
        limits = [n for n in limits if isinstance(n, int) and 0 < n < 10**7]  # tokenizers say 1e30 for "none"
        return min(limits) if limits else FALLBACK_MAX_LENGTH

    def render(self, query: str, answer: str) -> str:
        """The text the reward model reads for one pair."""
        if self.has_template:
            conversation = [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
            return self.tokenizer.apply_chat_template(conversation, tokenize=False)
        return f"User: {query}\n\nAssistant: {answer}"

    def encode(self, query: str, answer: str) -> tuple[list[int], bool]:
        """(token ids cut to max_length, whether they were cut)."""
        # the template writes its own special tokens; plain text gets the tokenizer's (e.g. BOS)
        ids = self.tokenizer(self.render(query, answer), add_special_tokens=not self.has_template)["input_ids"]
        return ids[:self.max_length], len(ids) > self.max_length

    @torch.inference_mode()
    def score(self, pairs: list[tuple[str, str]]) -> list[Score]:
        encoded = [self.encode(str(q), str(a)) for q, a in pairs]
        pad = self.config.pad_token_id
        values: list[float | None] = [None] * len(encoded)
        # The classifier pools at each row's last token that is not the pad id: a row that
        # ends in the pad id itself (pad = EOS, and the template ends in EOS) goes alone, unpadded.
        alone = [i for i, (ids, _) in enumerate(encoded) if not ids or ids[-1] == pad]
        batched = sorted(set(range(len(encoded))) - set(alone),
                         key=lambda i: -len(encoded[i][0]))  # similar lengths share a batch: less padding
        for start in range(0, len(batched), self.batch_size):
            rows = batched[start:start + self.batch_size]
            for i, value in zip(rows, self._forward([encoded[i][0] for i in rows], pad)):
                values[i] = value
        for i in alone:
            values[i] = self._forward_alone(encoded[i][0])
        return [Score(value, f"reward model, cut at {self.max_length} tokens" if cut else "reward model")
                for value, (_, cut) in zip(values, encoded)]

    def _forward(self, rows: list[list[int]], pad: int) -> list[float]:
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        logits = self.model(input_ids=input_ids, attention_mask=attention).logits
        return logits[:, 0].float().tolist()

    def _forward_alone(self, ids: list[int]) -> float:
        if not ids:  # a tokenizer that renders a pair as nothing: feed it its own EOS
            ids = [self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0]
        pad, self.config.pad_token_id = self.config.pad_token_id, None  # no pad id: pool at the last token
        try:
            return self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0, 0].float().item()
        finally:
            self.config.pad_token_id = pad
