"""A reward from any local sequence-classification model: a reward model or a label classifier.

Loads a directory saved with ``save_pretrained`` (model and tokenizer), never the Hub and never
remote code. One output (a reward model head) → the raw logit; several labels → the probability
of one label, so a toxicity or sentiment classifier becomes a reward without glue code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from textenv.rewards.base import Completion

__all__ = ["SequenceClassifier"]


def _trained_max_length(path: Path, default: int = 512) -> int:
    import json

    config = path / "reward_model_config.json"
    if config.exists():
        value = json.loads(config.read_text()).get("max_length")
        if isinstance(value, int) and value > 0:
            return value
    return default


class SequenceClassifier:
    """Score ``prompt + text`` (or ``text``) with a local ``AutoModelForSequenceClassification``.

    The default scores the prompt and completion together, as they read to a user: reward models
    are trained on (prompt, response) and a reply like "yes" is meaningless alone. The two are
    concatenated as they were generated (no separator), and long inputs are truncated from the
    left so the completion, the part being judged, survives. ``text_only=True`` scores just the
    completion (a sentiment or toxicity classifier judging the generated text).

    Arguments:
        path: a local directory with the model and its tokenizer.
        label: for multi-label models, the label whose probability is the score: a name from
            ``config.label2id`` or an index. Default: the last label (e.g. "POSITIVE").
        device: torch device to run on.
        batch_size: completions per forward pass.
        max_length: tokens per input after truncation; default: the length a textenv reward model
            was trained with (its ``reward_model_config.json``: a model trained on the last 128
            tokens must be scored on the last 128 tokens), else 512.
        text_only: score ``text`` alone instead of ``prompt + text``.
    """

    name = "classifier"

    def __init__(
        self,
        path: str | Path,
        label: str | int | None = None,
        device: str = "cpu",
        batch_size: int = 16,
        max_length: int | None = None,
        text_only: bool = False,
    ) -> None:
        from textenv.io import check_output_dir
        from textenv.models import load_checked

        path = check_output_dir(path, "sequence-classifier model directory")
        if max_length is None:
            max_length = _trained_max_length(path)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.text_only = text_only
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        self.tokenizer.truncation_side = "left"
        # Right padding: every real token keeps the position it has unpadded, so a score does not
        # depend on which other texts share the batch (left padding shifts absolute position
        # embeddings such as GPT-2's; the head still reads the last non-pad token either way).
        self.tokenizer.padding_side = "right"
        self.model = load_checked(AutoModelForSequenceClassification, path)
        self.model.to(device).eval()
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"tokenizer at {str(path)!r} has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            # GPT-2 style heads read the last non-pad token and need to know the pad id.
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.label_index = self._label_index(label)

    def _label_index(self, label: str | int | None) -> int | None:
        """Index of the scored label, or None for a single-output reward model."""
        num = int(self.model.config.num_labels)
        if num == 1:
            if label not in (None, 0):
                raise ValueError(f"model at {str(self.path)!r} has one output; got label={label!r}")
            return None
        if label is None:
            return num - 1
        if isinstance(label, int) and not isinstance(label, bool):
            if not -num <= label < num:
                raise ValueError(f"label index {label} out of range for {num} labels")
            return label % num
        label2id = dict(self.model.config.label2id or {})
        if label not in label2id:
            raise ValueError(f"unknown label {label!r}; the model's labels are {sorted(label2id)}")
        return int(label2id[label])

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        import torch

        inputs = [c.text if self.text_only else c.prompt + c.text for c in completions]
        # batch texts of similar length together (less padding); scores go back in input order
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        out = [0.0] * len(inputs)
        with torch.no_grad():
            for start in range(0, len(inputs), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [inputs[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**batch).logits.float()
                if self.label_index is None:
                    scores = logits[:, 0]
                else:
                    scores = logits.softmax(dim=-1)[:, self.label_index]
                for i, v in zip(rows, scores.cpu().tolist(), strict=True):
                    out[i] = float(v)
        return out
