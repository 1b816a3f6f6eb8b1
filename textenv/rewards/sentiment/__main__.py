"""The sentiment classifier's command line: train the head, or score texts with it::

    python -m textenv.rewards.sentiment train [--max-train N] [--out DIR]   # prints test accuracy
    python -m textenv.rewards.sentiment score --texts "what a day" "so sad"

Its own module, above both :mod:`.train` and :mod:`.classifier`, so neither imports the other back.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from textenv.cli import arg, cli, parse_config
from textenv.rewards.base import Completion
from textenv.rewards.sentiment.classifier import SentimentClassifier
from textenv.rewards.sentiment.train import TrainConfig, train_sentiment_classifier
from textenv.rewards.sentiment.vader import VADER_THRESHOLD, Vader

__all__ = ["ScoreConfig", "main"]


@dataclass(frozen=True)
class ScoreConfig:
    """Print the classifier's and VADER's scores for texts."""

    texts: tuple[str, ...] = arg((), "texts to score")
    path: str | None = arg(None, "head directory (None: the cache)")


_COMMANDS = {"train": TrainConfig, "score": ScoreConfig}
_USAGE = (f"usage: python -m textenv.rewards.sentiment {{{','.join(_COMMANDS)}}} [flags]\n\n"
          "Train the MiniLM sentiment head or score texts with it (COMMAND --help lists its flags).\n\n"
          + "".join(f"  {name:7s} {cls.__doc__.splitlines()[0]}\n" for name, cls in _COMMANDS.items())
          + '\ne.g. score --texts "what a day" "so sad"\n')


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE, end="")
        return 0 if argv else 2
    if argv[0] not in _COMMANDS:
        raise ValueError(f"unknown command {argv[0]!r}; expected one of {sorted(_COMMANDS)}")
    cfg = parse_config(_COMMANDS[argv[0]], argv[1:], prog=f"python -m textenv.rewards.sentiment {argv[0]}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if isinstance(cfg, TrainConfig):
        result = train_sentiment_classifier(config=cfg)
        print(f"classifier accuracy: {result['accuracy']:.4f}  on {result['test_size']} test tweets")
        if result.get("ngram"):
            print(f"  MiniLM head alone: {result['head_accuracy']:.4f}, n-grams alone: "
                  f"{result['ngram_accuracy']:.4f}, n-gram weight {result['ngram']['weight']} (chosen on "
                  f"validation: {result['validation_accuracy']:.4f})")
        print(f"VADER accuracy:      {result['vader_accuracy']:.4f}  (±{VADER_THRESHOLD} thresholds)")
        print(f"per-class accuracy:  {result['per_class_accuracy']}")
        print(f"train tweets: {result['train_size']}, took {result['train_seconds']}s")
        return 0
    if not cfg.texts:
        raise ValueError("score needs --texts TEXT [TEXT ...]")
    completions = [Completion(prompt="", text=t) for t in cfg.texts]
    clf = SentimentClassifier(cfg.path)
    for text, s, v in zip(cfg.texts, clf(completions), Vader()(completions), strict=True):
        print(f"sentiment={s:+.3f}  vader={v:+.3f}  {text}")
    return 0


if __name__ == "__main__":
    cli(main)
