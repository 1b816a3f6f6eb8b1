"""Model resolution, offline: tiny (seeded, fast), the default GGUF-converted model, bad names."""

import time

import pytest
import torch

from textenv.models import forward_with_cache, load_model, load_tokenizer, tiny_tokenizer


def test_tiny_model_is_seeded_and_matches_its_tokenizer():
    tok = tiny_tokenizer(["hello world", "count 1 2 3"])
    _, a = load_model("tiny", tokenizer=tok, seed=0)
    _, b = load_model("tiny", tokenizer=tok, seed=0)
    _, c = load_model("tiny", tokenizer=tok, seed=1)
    assert a.config.vocab_size == len(tok) and a.config.n_layer == 2
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.transformer.wte.weight, c.transformer.wte.weight)
    assert tok.decode(tok("any text, even ünïcode")["input_ids"]) == "any text, even ünïcode"
    assert tok.padding_side == "left" and tok.pad_token_id != tok.eos_token_id


def test_tiny_tokenizer_is_deterministic_for_a_corpus():
    corpus = ["the quick brown fox", "jumps over the lazy dog"] * 5
    assert tiny_tokenizer(corpus).get_vocab() == tiny_tokenizer(corpus).get_vocab()


def test_cached_forward_equals_full_forward():
    tok, model = load_model("tiny")
    ids = torch.tensor([tok("Count: 1 2 3 4 5")["input_ids"]])
    full = model(input_ids=ids).logits[0, -1]
    out, cache = forward_with_cache(model, ids[:, :-1])
    out, cache = forward_with_cache(model, ids[:, -1:], cache)
    torch.testing.assert_close(out.logits[0, -1], full, atol=1e-5, rtol=1e-5)


def test_unknown_hub_id_says_the_hub_is_unreachable():
    with pytest.raises(OSError, match="Hub is unreachable.*local directory"):
        load_tokenizer("no-such-org/no-such-model")


def test_local_directory_round_trip(tmp_path):
    tok, model = load_model("tiny")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tok2, model2 = load_model(str(tmp_path))
    assert tok2.get_vocab() == tok.get_vocab()
    torch.testing.assert_close(model2.transformer.wte.weight, model.transformer.wte.weight)


@pytest.mark.slow
def test_default_model_loads_offline_and_generates():
    load_model()  # first call may convert the GGUF (~30 s); the second must be fast
    start = time.perf_counter()
    tok, model = load_model()
    load_secs = time.perf_counter() - start
    assert model.config.model_type == "llama" and model.dtype == torch.float32
    assert tok.eos_token == "<|im_end|>" and tok.chat_template
    assert load_secs < 10  # a loose bound: the real figure is < 1 s; this only catches re-conversion
    msgs = [{"role": "user", "content": "What is 2+2? Answer with a number."}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert "4" in tok.decode(out[0, ids["input_ids"].shape[1]:])
