"""Model loading that goes wrong: a damaged textenv model cache, a bad $TEXTENV_DEFAULT_MODEL."""

import logging
import os
import subprocess
import sys

import pytest
import torch

from textenv import models
from textenv.io import atomic_dir


@pytest.fixture
def tiny_saved():
    tok, model = models.load_model("tiny")
    return tok, model


@pytest.mark.parametrize("keep", [100, 0.5])
def test_a_truncated_model_cache_is_rebuilt(tmp_path, monkeypatch, caplog, tiny_saved, keep):
    """A cut-short ``model.safetensors`` in textenv's own cache (the converted default model) is
    rebuilt, with a warning naming it, not a ``SafetensorError`` with no hint. The 30 s conversion of
    the real GGUF is stood in for by saving the tiny model."""
    tok, model = tiny_saved
    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path))
    target = tmp_path / "models" / "smollm2-135m-instruct"
    with atomic_dir(target, own=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    weights = target / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    calls = []

    def convert(dest):
        calls.append(dest)
        with atomic_dir(dest, own=True) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)

    monkeypatch.setattr(models, "_convert_smollm2", convert, raising=False)
    with caplog.at_level(logging.WARNING, logger="textenv.models"):
        tok2, model2 = models.load_model("smollm2-135m")
    assert calls == [target]
    assert any(str(weights) in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(model2.transformer.wte.weight, model.transformer.wte.weight)
    assert models.smollm2_dir() == target and calls == [target]  # whole now: not rebuilt again


def test_truncated_weights_in_a_users_folder_are_a_one_line_error(tmp_path, tiny_saved):
    tok, model = tiny_saved
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"{weights} is not a whole safetensors file") as exc:
        models.load_model(str(tmp_path))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("value", ["EMPTY_DIR", "/no/such/model/dir", "smolm2"])
def test_a_bad_default_model_names_the_variable(tmp_path, value):
    """``TEXTENV_DEFAULT_MODEL`` that is no model (an empty folder, a missing path, a typo) is a
    one-line error naming the variable, its value and what it expects, from every loader."""
    value = str(tmp_path) if value == "EMPTY_DIR" else value
    code = (
        "import gymnasium as gym, textenv, textenv.models as m\n"
        "for f in (m.load_tokenizer, m.load_model, lambda: gym.make('TextCount-v0')):\n"
        "    try:\n"
        "        f()\n"
        "    except (OSError, ValueError) as exc:\n"
        "        print(repr(str(exc)))\n"
    )
    env = {**os.environ, "TEXTENV_DEFAULT_MODEL": value, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stdout + out.stderr
    for line in lines:
        assert f"TEXTENV_DEFAULT_MODEL={value!r}" in line and "'tiny'" in line and "directory" in line, line
        assert "\\n" not in line
