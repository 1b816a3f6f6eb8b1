"""Rewards: known inputs -> known scores for every built-in, resolve/combine, score() errors."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from textenv.rewards import (
    REWARDS,
    Combined,
    Completion,
    RewardError,
    combine,
    resolve,
    reward_name,
    score,
)
from textenv.rewards.base import Completion as BaseCompletion


def C(text: str, *refs: str, eos: bool = True, **metadata: object) -> Completion:
    return Completion(
        prompt="", text=text, references=tuple(refs), metadata=metadata, ended_with_eos=eos
    )


# Hand-computed partial scores for text "the cat sat" vs reference "the cat ran away":
#   ROUGE-1: overlap {the, cat} = 2; P = 2/3, R = 2/4; F = 2PR/(P+R) = (2/3)/(7/6) = 4/7.
#   ROUGE-2: bigrams {the cat, cat sat} vs {the cat, cat ran, ran away}; overlap 1;
#            P = 1/2, R = 1/3; F = (1/3)/(5/6) = 2/5.
#   ROUGE-L: LCS "the cat" = 2 tokens, so the same as ROUGE-1: 4/7.
TEXT_CASES = [
    ("rouge1", "the cat sat on the mat", ("the cat sat on the mat",), 1.0),
    ("rouge1", "the cat sat", ("dogs bark loudly",), 0.0),
    ("rouge1", "the cat sat", ("the cat ran away",), 4 / 7),
    ("rouge1", "the cat sat", ("dogs bark", "the cat sat"), 1.0),  # best reference wins
    ("rouge1", "", ("the cat",), 0.0),
    ("rouge1", "the cat", (), 0.0),
    ("rouge2", "the cat sat", ("the cat ran away",), 2 / 5),
    ("rouge2", "the cat sat", ("sat cat the",), 0.0),
    ("rougeL", "the cat sat", ("the cat ran away",), 4 / 7),
    ("rougeL", "a b c d", ("a b c d",), 1.0),
    ("bleu", "the cat sat on the mat", ("the cat sat on the mat",), 1.0),
    ("bleu", "the cat sat on the mat", ("a dog ran in a park",), 0.0),
    ("bleu", "the cat sat on the mat", ("xyz", "the cat sat on the mat"), 1.0),
    ("bleu", "", ("the cat",), 0.0),
    ("chrf", "the cat sat on the mat", ("the cat sat on the mat",), 1.0),
    ("chrf", "abc def", ("xyz uvw",), 0.0),
    ("chrf", "the cat", (), 0.0),
]


@pytest.mark.parametrize(("name", "text", "refs", "expected"), TEXT_CASES)
def test_reference_metrics_known_values(name, text, refs, expected):
    assert resolve(name)([C(text, *refs)]) == [pytest.approx(expected, abs=1e-6)]


def test_reference_metrics_batched_and_partial_in_between():
    batch = [C("the cat sat on a mat", "the cat sat on the mat"), C("xyz", "the cat")]
    for name in ("rouge1", "rouge2", "rougeL", "bleu", "chrf"):
        partial, disjoint = resolve(name)(batch)
        assert 0.0 < partial < 1.0, name
        assert disjoint == pytest.approx(0.0, abs=1e-6), name


def test_rouge_stemmer_option():
    completion = [C("cats running", "cat run")]
    assert resolve("rouge1")(completion) == [1.0]
    assert resolve("rouge1", use_stemmer=False)(completion) == [0.0]


# LengthPenalty: -min(1, max(0, |words - target| - tolerance) / scale) - eos_penalty * (no EOS)
LENGTH_CASES = [
    ({"target": 4}, "a b c d", True, 0.0),
    ({"target": 4}, "a b", True, -0.5),  # |2-4| / 4
    ({"target": 4}, "a b", False, -1.5),  # plus the EOS penalty
    ({"target": 4}, "a b c d e f g h i j", True, -1.0),  # |10-4|/4 clamped at 1
    ({"target": 4, "tolerance": 1}, "a b c", True, 0.0),
    ({"target": 4, "tolerance": 1}, "a", True, -0.5),  # (3-1) / 4
    ({"target": 4, "scale": 8}, "a b", True, -0.25),
    ({"target": 4, "eos_penalty": 0.25}, "a b c d", False, -0.25),
    ({}, "anything at all", False, -1.0),  # target=None: only the EOS term
    ({}, "anything at all", True, 0.0),
]


@pytest.mark.parametrize(("kwargs", "text", "eos", "expected"), LENGTH_CASES)
def test_length_penalty(kwargs, text, eos, expected):
    assert resolve("length", **kwargs)([C(text, eos=eos)]) == [pytest.approx(expected)]


# RepetitionPenalty: -(total n-grams - distinct n-grams) / total n-grams
REPETITION_CASES = [
    (2, "a b a b a b", -3 / 5),  # bigrams ab ba ab ba ab: 5 total, 2 distinct
    (3, "a b a b a b", -2 / 4),  # trigrams aba bab aba bab: 4 total, 2 distinct
    (1, "the The the", -2 / 3),  # lower-cased before counting
    (2, "a b c d", 0.0),
    (3, "a b", 0.0),  # fewer words than n
    (2, "", 0.0),
]


@pytest.mark.parametrize(("n", "text", "expected"), REPETITION_CASES)
def test_repetition_penalty(n, text, expected):
    assert resolve("repetition", n=n)([C(text)]) == [pytest.approx(expected)]


KEYWORD_CASES = [
    (["cat", "dog"], "The CAT sat.", 0.5),
    (["cat", "dog"], "a cat and a dog", 1.0),
    (["cat", "dog"], "concatenate hotdogs", 0.0),  # whole words only
    (["new york", "paris"], "I love New York!", 0.5),
    (["c++"], "I write C++ daily", 1.0),  # regex characters are literal
    (["cat", "dog", "eel", "fox"], "fox, eel and cat", 0.75),
]


@pytest.mark.parametrize(("keywords", "text", "expected"), KEYWORD_CASES)
def test_keyword(keywords, text, expected):
    assert resolve("keyword", keywords=keywords)([C(text)]) == [pytest.approx(expected)]


def test_keyword_from_metadata_and_missing_metadata():
    reward = resolve("keyword")
    batch = [C("red and blue", keywords=["red", "green"]), C("green", keywords=["green"])]
    assert reward(batch) == [0.5, 1.0]
    with pytest.raises(RewardError, match="keywords"):
        score(reward, [C("red")])


@pytest.mark.parametrize("name", ["embedding", "bertscore"])
def test_minilm_similarities(name):
    guitar, weather = "Someone plays the guitar.", "The weather is lovely."
    batch = [
        C(weather, weather),  # identical
        C("A man is playing a guitar.", guitar),  # paraphrase
        C("The stock market fell sharply today.", guitar),  # unrelated
        C(weather, "Stocks fell.", weather),  # the best reference counts
        C("", weather),  # empty text
        C(weather),  # no reference
    ]
    identical, related, unrelated, best, empty, no_ref = resolve(name)(batch)
    assert identical == pytest.approx(1.0, abs=1e-5)
    assert best == pytest.approx(1.0, abs=1e-5)
    assert unrelated < related < identical
    assert (empty, no_ref) == (0.0, 0.0)


def test_bertscore_matches_manual_greedy_matching():
    """F1 from the definition, on token embeddings with [CLS]/[SEP] removed by hand."""
    from textenv.minilm import token_embeddings

    cand, ref = "a cat was sitting on the rug", "the cat sat on the mat"
    vectors = []
    for s in (cand, ref):
        hidden, _, ids = token_embeddings([s])  # one string: no padding to remove
        assert ids[0, 0] == 101 and ids[0, -1] == 102  # MiniLM's [CLS] ... [SEP]
        h = hidden[0, 1:-1].numpy()
        vectors.append(h / np.linalg.norm(h, axis=1, keepdims=True))
    sim = vectors[0] @ vectors[1].T
    p, r = sim.max(axis=1).mean(), sim.max(axis=0).mean()
    expected = 2 * p * r / (p + r)
    # In a batch with a longer string, padding must not leak into the score either.
    batch = [C(cand, ref), C("a much longer sentence " * 5, "short")]
    assert resolve("bertscore")(batch)[0] == pytest.approx(float(expected), abs=1e-5)


@pytest.fixture(scope="module")
def arithmetic_entry() -> dict:
    import reasoning_gym

    return reasoning_gym.create_dataset("basic_arithmetic", size=1, seed=0)[0]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Let me compute.\nAnswer: {answer}", 1.0),
        ("{answer}\nthat was easy", 1.0),  # no marker: first line
        ("  Answer:   {answer}  ", 1.0),
        ("Answer: 7", 0.0),
        ("Answer: banana", 0.0),
        ("I do not know", 0.0),
        ("{answer}\nAnswer: 7", 0.0),  # the marker wins over the first line
        # a numeric answer is also read as the answer part's last number
        ("The final answer is {answer}.", 1.0),
        ("Answer: {answer}.", 1.0),
        ("12 + 3 = {answer}", 1.0),
        ("7\nso it is {answer}", 0.0),  # without a marker, still only the first line
    ],
)
def test_verifier(arithmetic_entry, template, expected):
    text = template.format(answer=arithmetic_entry["answer"])
    completion = C(text, entry=arithmetic_entry, dataset="basic_arithmetic")
    assert resolve("verifier")([completion]) == [expected]


def test_verifier_numbers_never_lower_the_datasets_own_score():
    """The last-number reading only ever adds: with ``numbers=False`` the score is the dataset's own
    (partial credit for the answer inside a longer text), and with it that score is a lower bound."""
    entry = {"question": "Calculate 10 + 8.", "answer": "18", "metadata": {"source_dataset": "basic_arithmetic"}}
    texts = ["18", "10 + 8 = 18", "18 is it", "about 18 or 19", "19", "1,018", "-18", "+18", "18, not 7"]
    plain = resolve("verifier", numbers=False)([C(t, entry=entry) for t in texts])
    read = resolve("verifier")([C(t, entry=entry) for t in texts])
    assert plain == pytest.approx([1.0, 2 / 11, 2 / 8, 2 / 14, 0.0, 2 / 5, 2 / 3, 2 / 3, 2 / 9])
    # only the last number is read: "about 18 or 19" and "18, not 7" keep the dataset's partial credit
    assert read == pytest.approx([1.0, 1.0, 1.0, 2 / 14, 0.0, 2 / 4, 2 / 3, 1.0, 2 / 9])
    assert all(r >= p for r, p in zip(read, plain, strict=True))
    # a non-numeric answer is scored by the dataset alone
    word = {"question": "q", "answer": "cat", "metadata": {"source_dataset": "basic_arithmetic"}}
    assert resolve("verifier")([C("a cat 3", entry=word)]) == pytest.approx([3 / 7])


@pytest.mark.parametrize(("text", "expected"), [
    ("The final answer is -1.", "-1"), ("-1", "-1"), ("x = +42", "42"), ("1,234,567 apples", "1234567"),
    ("pi is 3.14.", "3.14"), ("between 3 and 4", "4"), ("none", None), ("1.2.3", "3"),
])
def test_last_number(text, expected):
    from textenv.rewards.verifier import last_number

    assert last_number(text) == expected


def test_verifier_dataset_from_entry_and_missing_metadata(arithmetic_entry):
    reward = resolve("verifier")
    # No "dataset": falls back to the entry's source_dataset.
    assert reward([C(f"Answer: {arithmetic_entry['answer']}", entry=arithmetic_entry)]) == [1.0]
    with pytest.raises(RewardError, match=r"metadata\['entry'\]"):
        score(reward, [C("Answer: 3")])
    bare_entry = {"question": "q", "answer": "3", "metadata": {}}
    with pytest.raises(RewardError, match=r"metadata\['dataset'\]"):
        score(reward, [C("Answer: 3", entry=bare_entry)])


# Large random weights (initializer_range) so that different inputs get different scores.
TINY_BERT = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
TINY_BERT |= {"intermediate_size": 32, "pad_token_id": 0, "initializer_range": 1.0}


def _save_tiny_bert(path: Path, num_labels: int) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = "[PAD] [UNK] [CLS] [SEP] the movie was good bad great awful : ?".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    tokenizer.save_pretrained(path)
    labels = ["neg", "neutral", "pos"][:num_labels] if num_labels > 1 else ["score"]
    config = BertConfig(
        **TINY_BERT,
        vocab_size=len(words),
        num_labels=num_labels,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(path)


def _manual_logits(path: Path, text: str):
    """One unpadded forward pass: what the reward must reproduce in a padded batch."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits[0]


CLASSIFIER_BATCH = [
    Completion(prompt="the movie was ", text="good"),
    Completion(prompt="the movie ? ", text="was awful : bad bad the movie"),
    Completion(prompt="", text="great"),
]


@pytest.mark.parametrize(("label", "index"), [(None, 2), ("pos", 2), ("neg", 0), (1, 1), (-1, 2)])
def test_classifier_label_probability_matches_manual_forward(tmp_path, label, index):
    _save_tiny_bert(tmp_path, num_labels=3)
    reward = resolve("classifier", path=tmp_path, label=label, batch_size=2)
    expected = [
        float(_manual_logits(tmp_path, c.prompt + c.text).softmax(-1)[index])
        for c in CLASSIFIER_BATCH
    ]
    assert reward(CLASSIFIER_BATCH) == pytest.approx(expected, abs=1e-5)
    assert len(set(np.round(expected, 6))) == 3  # distinct inputs -> distinct scores


def test_classifier_reward_model_logit_and_text_only(tmp_path):
    _save_tiny_bert(tmp_path, num_labels=1)
    full = resolve("classifier", path=str(tmp_path))(CLASSIFIER_BATCH)
    only = resolve("classifier", path=tmp_path, text_only=True)(CLASSIFIER_BATCH)
    assert full == pytest.approx(
        [float(_manual_logits(tmp_path, c.prompt + c.text)[0]) for c in CLASSIFIER_BATCH],
        abs=1e-5,
    )
    assert only == pytest.approx(
        [float(_manual_logits(tmp_path, c.text)[0]) for c in CLASSIFIER_BATCH], abs=1e-5
    )
    assert full[0] != pytest.approx(only[0], abs=1e-6)


def test_decoder_reward_model_scores_do_not_depend_on_the_batch(tmp_path):
    """A GPT-2 reward model (absolute positions) whose tokenizer was saved padding on the left, as
    generation tokenizers are: every score in a padded batch equals the unpadded forward."""
    import torch
    from transformers import AutoModelForSequenceClassification, GPT2Config

    from textenv.models import tiny_tokenizer

    tok = tiny_tokenizer(["the movie was good", "was awful bad bad the movie", "great"])
    tok.padding_side = "left"
    tok.save_pretrained(tmp_path)
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, num_labels=1,
                        pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).eval().save_pretrained(tmp_path)
    scores = resolve("classifier", path=tmp_path)(CLASSIFIER_BATCH)
    assert scores == pytest.approx(
        [float(_manual_logits(tmp_path, c.prompt + c.text)[0]) for c in CLASSIFIER_BATCH], abs=1e-5
    )


def test_classifier_errors(tmp_path):
    from textenv.rewards.classifier import SequenceClassifier

    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        SequenceClassifier(missing)
    _save_tiny_bert(tmp_path, num_labels=3)
    with pytest.raises(ValueError, match="'happy'.*neg"):
        SequenceClassifier(tmp_path, label="happy")
    with pytest.raises(ValueError, match="out of range"):
        SequenceClassifier(tmp_path, label=3)


def first(completions):
    return [1.0, 2.0][: len(completions)]


def second(completions):
    return [10.0, 20.0][: len(completions)]


def test_combine_reports_parts_and_exact_weighted_total():
    reward = combine({first: 0.5, second: -1.0}, name="mix")
    batch = [C("x"), C("y")]
    assert isinstance(reward, Combined) and reward_name(reward) == "mix"
    assert reward.parts(batch) == {"first": [1.0, 2.0], "second": [10.0, 20.0]}
    assert reward(batch) == [0.5 - 10.0, 1.0 - 20.0]
    totals, parts = score(reward, batch)
    assert totals == [-9.5, -19.0]
    assert parts == {"first": [1.0, 2.0], "second": [10.0, 20.0]}


def test_resolve_mapping_of_names():
    reward = resolve({"repetition": 2.0})
    assert reward([C("a b a b a b")]) == [pytest.approx(2.0 * -0.5)]
    mixed = resolve({"repetition": 1.0, first: 3.0})
    totals, parts = score(mixed, [C("a b a b a b")])
    assert parts == {"repetition": [-0.5], "first": [1.0]}
    assert totals == [pytest.approx(-0.5 + 3.0)]


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        ({}, ValueError, "empty"),
        ({first: math.nan}, ValueError, "finite"),
        ({first: math.inf}, ValueError, "finite"),
        ({first: "1"}, TypeError, "number"),
        (
            {first: 1.0, "textenv.rewards.text:RepetitionPenalty": 1.0, "repetition": 1.0},
            ValueError,
            "'repetition'",
        ),
    ],
)
def test_combine_rejects_bad_weights(weights, error, match):
    with pytest.raises(error, match=match):
        combine(weights)


def test_resolve_unknown_name_lists_known_names():
    with pytest.raises((KeyError, ValueError), match="rouge9") as info:
        resolve("rouge9")
    for known in ("rouge1", "bertscore", "verifier", "classifier"):
        assert known in str(info.value)


def test_resolve_callable_and_bad_import_paths():
    assert resolve(first) is first
    with pytest.raises(ImportError, match="no_such_pkg_xyz"):
        resolve("no_such_pkg_xyz.mod:fn")
    with pytest.raises(ImportError, match="NoSuchReward"):
        resolve("textenv.rewards.text:NoSuchReward")
    with pytest.raises(TypeError):
        resolve(first, n=2)
    with pytest.raises(TypeError):
        resolve(42)


def test_resolve_import_path_fallback(tmp_path, monkeypatch):
    (tmp_path / "textenv_test_custom_reward.py").write_text(
        textwrap.dedent(
            """
            def text_length(completions):
                return [float(len(c.text)) for c in completions]

            class Scaled:
                def __init__(self, factor=1.0):
                    self.factor = factor

                def __call__(self, completions):
                    return [self.factor * len(c.text) for c in completions]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = resolve("textenv_test_custom_reward:text_length")
    assert fn([C("abc"), C("")]) == [3.0, 0.0]
    scaled = resolve("textenv_test_custom_reward:Scaled", factor=2.0)
    assert scaled([C("abcd")]) == [8.0]
    combined = resolve({"textenv_test_custom_reward:text_length": 1.0, first: 1.0})
    assert score(combined, [C("ab")]) == ([3.0], {"text_length": [2.0], "first": [1.0]})


def test_table_entries_import_lazily_and_resolve_to_classes():
    from textenv.rewards import _import

    owned_by_others = {"vader", "sentiment", "increasing"}
    for name, entry_point in REWARDS.items():
        assert entry_point.startswith("textenv.rewards."), name
        if name not in owned_by_others:
            assert isinstance(_import(entry_point), type), name
    assert owned_by_others <= set(REWARDS)
    assert Completion is BaseCompletion  # one record type, re-exported from base
    code = (
        "import sys, textenv.rewards\n"
        "heavy = [m for m in ('torch', 'transformers', 'rouge_score', 'sacrebleu', "
        "'reasoning_gym') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def raises(completions):
    raise ZeroDivisionError("boom")


def gives_nan(completions):
    return [math.nan for _ in completions]


def too_short(completions):
    return [1.0]


@pytest.mark.parametrize(
    ("reward", "match"),
    [
        (raises, "'raises' raised ZeroDivisionError: boom"),
        (gives_nan, "'gives_nan' returned a non-finite"),
        (too_short, "'too_short' returned 1 scores for 2"),
        (combine({first: 1.0, raises: 1.0}), "part 'raises' raised ZeroDivisionError"),
        (combine({first: 1.0, too_short: 1.0}), "part 'too_short' returned 1 scores for 2"),
        (combine({first: 1.0, gives_nan: 1.0}), "'gives_nan' returned a non-finite"),
    ],
)
def test_score_errors_name_the_reward(reward, match):
    with pytest.raises(RewardError, match=match):
        score(reward, [C("a"), C("b")])
