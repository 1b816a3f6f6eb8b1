"""The hashed word n-gram classifier: tokens, stable hashing, learning a toy task, bad input."""

import zlib

import numpy as np
import pytest
import torch

from textenv.rewards.sentiment.ngrams import NgramClassifier, ngram_ids, train_ngram_classifier


def test_ngram_ids_are_stable_word_uni_and_bigrams():
    ids = ngram_ids("Not BAD :) #win", buckets=1000)
    grams = ["not", "bad", ":)", "#win", "not bad", "bad :)", ":) #win"]
    assert ids == [zlib.crc32(g.encode()) % 1000 for g in grams]  # the same on every machine
    assert ngram_ids("not bad", 1000, n=1) == ids[:2]
    assert ngram_ids("", 1000) == [zlib.crc32(b"<s>") % 1000]  # never an empty bag


def test_learns_a_toy_sentiment_task_and_predicts_probabilities():
    good = ["love it", "great day", "so happy", "love this great thing", "happy happy"]
    bad = ["hate it", "awful day", "so sad", "hate this awful thing", "sad sad"]
    texts, labels = good * 4 + bad * 4, [1] * 20 + [0] * 20
    model = train_ngram_classifier(texts, labels, n_classes=2, buckets=4096, epochs=10, lr=0.5, seed=0)
    probs = model.predict_proba(["i love this day", "what an awful sad day", ""])
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-6)
    assert probs[0, 1] > 0.6 and probs[1, 0] > 0.6  # unseen grams ("i", "what") dilute the mean
    again = train_ngram_classifier(texts, labels, n_classes=2, buckets=4096, epochs=10, lr=0.5, seed=0)
    assert torch.equal(again.weights.weight, model.weights.weight)  # same seed, same model
    assert model.predict_proba([]).shape == (0, 2)


def test_forward_is_the_mean_of_the_bag_plus_bias():
    model = NgramClassifier(buckets=16, n_classes=3)
    with torch.no_grad():
        model.weights.weight.copy_(torch.arange(48, dtype=torch.float32).view(16, 3))
        model.bias.fill_(1.0)
    flat, offsets = model.encode(["a b"])
    expected = model.weights.weight[flat].mean(0) + 1.0
    torch.testing.assert_close(model(flat, offsets)[0], expected)


def test_mismatched_labels_are_rejected():
    with pytest.raises(ValueError, match="as many labels"):
        train_ngram_classifier(["a", "b"], [0], n_classes=2)
