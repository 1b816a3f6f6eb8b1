"""SFT on the tiny model and the counting task: loss goes down, checkpoints round-trip, masking is
right, runs are seeded, a failed save leaves nothing behind. One shared training run keeps it fast."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import assert_refused_at_parse

from agents.sft import IGNORE, SFTConfig, build_example, collate, fit, save_checkpoint, train_sft
from textenv.cli import parse_config
from textenv.core import TaskSetup
from textenv.io import is_complete
from textenv.models import load_model

CONFIG = SFTConfig(env="TextCount-v0", model="tiny", epochs=1, max_steps=20, batch_size=16, lr=5e-3,
                   warmup_steps=2, max_length=48, limit=320, eval_limit=48, device="cpu", seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # One thread: the tiny model's ops are too small to split, and on a busy shared CPU torch's
    # thread pool makes these runs ~10x slower rather than faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTENV_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(cache):
    return TaskSetup("textenv.task_factories:count", model="tiny").tokenizer


@pytest.fixture(scope="module")
def trained(tokenizer):
    return fit(CONFIG, tokenizer)


def test_sft_lowers_validation_loss(trained):
    m = trained.metrics
    assert m["steps"] == CONFIG.max_steps
    assert m["final_val_loss"] < 0.8 * m["initial_val_loss"], m
    assert m["final_val_ppl"] == pytest.approx(math.exp(m["final_val_loss"]))
    assert m["tokens"] > 0 and m["tokens_per_s"] > 0
    assert [h["step"] for h in m["history"]] == [0, CONFIG.max_steps]


def test_same_seed_same_losses(trained, tokenizer):
    again = fit(CONFIG, tokenizer).metrics
    assert again["final_val_loss"] == trained.metrics["final_val_loss"]
    assert again["final_train_loss"] == trained.metrics["final_train_loss"]


def test_checkpoint_loads_with_identical_logits(trained, tmp_path):
    out = save_checkpoint(trained, CONFIG, tmp_path / "ckpt")
    assert is_complete(out)
    assert json.loads((out / "sft_config.json").read_text())["env"] == "TextCount-v0"
    assert json.loads((out / "metrics.json").read_text())["steps"] == CONFIG.max_steps
    assert (out / "model.safetensors").exists()
    tok, model = load_model(str(out))
    ids = torch.tensor([tok("Count: 7 8 9 10 11", add_special_tokens=False)["input_ids"]])
    assert tok.get_vocab() == trained.tokenizer.get_vocab()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, trained.model(input_ids=ids).logits)


def test_labels_mask_the_prompt_and_keep_completion_and_eos():
    prompt, completion, eos = [5, 6, 7], [8, 9], 0
    ids, labels = build_example(prompt, completion + [eos], max_length=16)
    assert ids == [5, 6, 7, 8, 9, 0]
    assert labels == [IGNORE, IGNORE, IGNORE, 8, 9, 0]
    # Over budget: the prompt loses its first tokens, the completion is kept whole.
    ids, labels = build_example(list(range(10, 20)), [1, 2, 0], max_length=8)
    assert ids == [15, 16, 17, 18, 19, 1, 2, 0] and labels == [IGNORE] * 5 + [1, 2, 0]
    batch = collate([([1, 2, 3], [IGNORE, 2, 3]), ([4], [4])], pad_id=99)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 99, 99]]  # right-padded
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 2, 3], [4, IGNORE, IGNORE]]


def test_domain_mode_lowers_loss(tokenizer):
    # ~100 distinct texts (the counting task repeats itself), so several short epochs.
    m = fit(dataclasses.replace(CONFIG, mode="domain", epochs=4, batch_size=8), tokenizer).metrics
    assert m["steps"] == CONFIG.max_steps
    assert m["final_val_loss"] < 0.8 * m["initial_val_loss"], m


def test_failed_save_leaves_no_checkpoint(trained, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(trained.model), "save_pretrained", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(trained, CONFIG, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_non_finite_loss_writes_no_checkpoint(trained, tmp_path):
    bad = trained._replace(metrics={**trained.metrics, "final_val_loss": float("nan")})
    with pytest.raises(FloatingPointError, match="non-finite"):
        save_checkpoint(bad, CONFIG, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_train_sft_writes_checkpoint(tokenizer, tmp_path):
    cfg = dataclasses.replace(CONFIG, max_steps=1, limit=16, eval_limit=8, out=str(tmp_path / "run"))
    metrics = train_sft(cfg, tokenizer)
    assert metrics["out"] == cfg.out and is_complete(cfg.out)


def test_cli_help_lists_the_fields():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "agents.sft", "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    for flag in ("--env", "--model", "--mode", "--max-steps", "--grad-accum", "--lr", "--limit", "--preset"):
        assert flag in res.stdout


@pytest.mark.slow
def test_two_process_accelerate_sft_keeps_parameters_identical(tmp_path):
    import re

    env = {**os.environ, "TEXTENV_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          "-m", "agents.sft", "--env", "TextCount-v0", "--model", "tiny", "--max-steps", "3",
                          "--batch-size", "4", "--eval-limit", "8", "--device", "cpu", "--out", str(tmp_path / "ck")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    sums = dict(re.findall(r"process (\d)/2 parameter checksum ([0-9a-f]{64})", out.stderr + out.stdout))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"]
    assert (tmp_path / "ck" / "COMPLETE").exists()


@pytest.mark.parametrize("flags, field", [
    (["--max-steps", "0"], "max_steps"), (["--max-steps", "-1"], "max_steps"), (["--epochs", "0"], "epochs"),
    (["--batch-size", "0"], "batch_size"), (["--grad-accum", "0"], "grad_accum"), (["--lr", "0"], "lr"),
    (["--lr", "-0.00001"], "lr"), (["--lr", "nan"], "lr"), (["--lr", "inf"], "lr"),
    (["--weight-decay", "-0.1"], "weight_decay"), (["--warmup-steps", "-1"], "warmup_steps"),
    (["--max-grad-norm", "0"], "max_grad_norm"), (["--max-grad-norm", "-1"], "max_grad_norm"),
    (["--max-length", "1"], "max_length"), (["--eval-every", "-1"], "eval_every"),
    (["--eval-limit", "0"], "eval_limit"), (["--limit", "0"], "limit"),
])
def test_bad_counts_and_rates_are_refused_at_parse_time(tmp_path, monkeypatch, capsys, flags, field):
    """Audit #15: ``--max-steps 0`` trained nothing and died on a NaN loss. Every numeric field has
    its range, checked when the flags are parsed: one line, exit 2, nothing written."""
    from agents.sft import main

    assert_refused_at_parse(main, ["--preset", "tiny", "--out", str(tmp_path / "out"), *flags], field, tmp_path,
                            monkeypatch, capsys)


def test_max_grad_norm_none_means_no_clipping():
    assert parse_config(SFTConfig, ["--max-grad-norm", "none"]).max_grad_norm is None


@pytest.mark.parametrize("out", ["/proc/textenv-sft", "{tmp}/a-file/ckpt"])
def test_unwritable_out_is_refused_before_training(tmp_path, monkeypatch, out):
    """Audit #14: ``--out /proc/x`` failed only when the trained model was written."""
    import agents.sft

    if out.startswith("/proc") and not os.path.isdir("/proc"):
        pytest.skip("no /proc here")
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setattr(agents.sft, "fit", lambda *a, **k: pytest.fail("trained before checking --out"))
    out = out.format(tmp=tmp_path)
    with pytest.raises(OSError, match=f"cannot write {out}"):
        train_sft(dataclasses.replace(CONFIG, out=out))
    assert not os.path.exists(out)


def test_a_run_sweeps_temporary_folders_that_killed_runs_left(tmp_path, monkeypatch):
    """Audit #4: a killed run's ``.<out>.tmp-*`` folder (a model's size) is removed when the next run
    starts; one touched within the last hour may be a live run's and stays."""
    import agents.sft

    stale, live = tmp_path / ".ckpt.tmp-killed", tmp_path / ".ckpt.tmp-live"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half a model")
    os.utime(stale, (0, os.path.getmtime(stale) - 2 * 3600))

    def fit_checks(*args, **kwargs):
        assert not stale.exists() and live.exists()  # swept at the start, before training
        raise RuntimeError("stop here")

    monkeypatch.setattr(agents.sft, "fit", fit_checks)
    with pytest.raises(RuntimeError, match="stop here"):
        train_sft(dataclasses.replace(CONFIG, out=str(tmp_path / "ckpt")))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt.tmp-live"]
