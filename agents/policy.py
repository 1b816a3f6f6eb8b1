"""The LM actor-critic: a causal LM (the actor) plus a scalar value head on its last hidden state.

Two paths, one distribution:

- :meth:`LMActorCritic.act` steps a textenv env or vector env token by token through the
  per-sub-env KV cache of :mod:`agents.kvcache` (:class:`~agents.kvcache.CachedLM` with the value
  head as its head), so a rollout through the Gymnasium API costs what ``model.generate`` costs.
- :meth:`LMActorCritic.evaluate` scores stored episodes in one forward (log-probs, entropy, values)
  for the PPO update.

Both turn logits into log-probs with :func:`logprobs_from_logits` under the same
:class:`Sampling` (temperature, top-k, top-p), so PPO ratios are not biased by a mismatch between
how tokens were sampled and how they are scored (a known TRL pitfall).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.kvcache import CachedLM, CacheState, pad, score_hidden
from textenv.io import MARKER, check_output_dir
from textenv.models import load_model

__all__ = ["ActResult", "ActionStats", "EpisodeBatch", "LMActorCritic", "CacheState", "Sampling", "action_selector",
           "logprobs_from_logits", "row_uniforms", "sample", "score_actions"]


@dataclass(frozen=True)
class Sampling:
    """How tokens are sampled, and therefore how they are scored."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need top_k >= 0 and 0 < top_p <= 1, got {self.top_k}, {self.top_p}")


def logprobs_from_logits(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Log-probs of the distribution tokens are actually sampled from (temperature, then top-k,
    then top-p); tokens cut by top-k/top-p get ``-inf``."""
    logits = logits.float()
    if sampling.temperature != 1.0:  # x / 1.0 is x: skip a (B, V) copy per token
        logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass
        drop_sorted = (probs.cumsum(-1) - probs) > sampling.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.log_softmax(logits, dim=-1)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic): a bijection whose outputs
    pass BigCrush even for consecutive inputs, which is what counter-based streams need."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def row_uniforms(seeds: Sequence[int] | np.ndarray, positions: Sequence[int] | np.ndarray) -> np.ndarray:
    """One uniform in [0, 1) per row, a pure function of that row's (seed, token position).

    A counter-based stream (a hash, not a generator's state), so a row's draw does not depend on
    which other rows share its batch or process, and no per-row generator is built per token:
    numpy ops over the whole batch, whatever its width."""
    seeds = np.asarray(seeds, dtype=np.int64).astype(np.uint64)
    positions = np.asarray(positions, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = _splitmix64(_splitmix64(seeds) + positions)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def sample(probs: torch.Tensor, uniforms: torch.Tensor, cdf_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rows of ``probs`` (``(B, V)``, unnormalised is fine) sampled by inverse CDF: row ``i``
    takes the first token whose cumulative mass exceeds ``uniforms[i]`` of the row's total.

    One cumulative sum and one ``searchsorted`` for the whole batch, where ``torch.multinomial``
    draws V exponentials per row. A token of zero mass (cut by top-k/top-p or a mask) is never
    chosen: the cumulative sum does not rise there. The sum is taken in float64 so a 49k-token
    vocabulary's tail keeps its mass; ``cdf_dtype`` defaults to that, float32 on Apple's MPS (no
    float64 there)."""
    if cdf_dtype is None:
        cdf_dtype = torch.float32 if probs.device.type == "mps" else torch.float64
    cdf = probs.to(cdf_dtype).cumsum(-1)
    total = cdf[:, -1:]
    target = uniforms.to(device=cdf.device, dtype=cdf.dtype).view(-1, 1) * total
    idx = torch.searchsorted(cdf, target, right=True)
    # u * total can round up to total: the last token of positive mass is the first to reach it
    last = (cdf < total).sum(-1, keepdim=True)
    return torch.minimum(idx, last).squeeze(-1)


def entropy_from_logprobs(logp: torch.Tensor) -> torch.Tensor:
    """Entropy of rows of log-probs that may hold ``-inf`` (tokens cut by top-k/top-p or a mask).

    The ``-inf`` entries are replaced before the product, not after: ``where(p > 0, p * logp, 0)``
    is right in the forward pass but its backward multiplies 0 by ``-inf`` and turns every
    gradient into NaN."""
    p = logp.exp()
    return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)


class _Scored(NamedTuple):
    """:func:`_action_columns`' result: tensors at the batch's ``T`` actions, flattened."""

    logits: torch.Tensor  # (T, V)
    hidden: torch.Tensor  # (T, H) the last hidden states there (the value head's input)
    targets: torch.Tensor  # (T,) the actions
    select: Callable[[torch.Tensor], torch.Tensor]  # (N, G, ...) over generated columns -> (T, ...)
    place: Callable[[torch.Tensor], torch.Tensor]  # (T,) a value per action -> (N, A), 0 where no action is


def action_selector(batch: EpisodeBatch, device: torch.device) -> tuple[Callable, Callable]:
    """``(select, place)`` for ``batch``'s ``T`` real actions: ``select`` reads a tensor over the
    generated columns (``(N, G, ...)``) at the actions (``(T, ...)``, flattened); ``place`` puts a
    value per action back as ``(N, A)``, 0 where no action is."""
    real = batch.mask.to(device)
    rows, slots = (real > 0).nonzero(as_tuple=True)
    cols = batch.action_index.to(device)[rows, slots]

    def select(x: torch.Tensor) -> torch.Tensor:
        return x[rows, cols]

    def place(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(real.shape, dtype=x.dtype, device=x.device).index_put((rows, slots), x)

    return select, place


def _action_columns(model: nn.Module, batch: EpisodeBatch, ids: torch.Tensor, mask: torch.Tensor) -> _Scored:
    """One scoring forward over ``batch``, the LM head at its real actions only: a row's padding is
    no action, and in a multi-turn task neither are the turns the env inserted (read, never scored),
    so neither gets vocabulary-wide logits. The trunk's last hidden state is read from the decoder,
    so no other layer's is kept."""
    g = batch.gen_len
    select, place = action_selector(batch, ids.device)
    hidden = select(score_hidden(model, ids, mask, prompt_len=batch.prompt_len)[:, -g - 1:-1])
    return _Scored(model.get_output_embeddings()(hidden), hidden, select(ids[:, -g:]), select, place)


def score_actions(model: nn.Module, batch: EpisodeBatch, sampling: Sampling, allowed: torch.Tensor | None = None,
                  head: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  entropy: bool | None = None) -> ActionStats:
    """Log-probs of ``batch``'s actions under ``model`` and ``sampling``, in one forward: the one
    scoring path of the policy being trained (:meth:`LMActorCritic.evaluate`), of its frozen
    reference (:meth:`~LMActorCritic.reference_logprobs`) and of the eval suite's NLL.

    ``allowed`` (``(N, G, V)`` bool) masks logits outside the allowed set before sampling's transform
    (NLPO); ``head`` gives the values (zeros without one); ``entropy``: ``None`` skips it (zeros),
    ``False`` computes it outside autograd, ``True`` inside."""
    ids = batch.input_ids.to(model.get_input_embeddings().weight.device)
    mask = batch.attention_mask.to(ids.device)
    scored = _action_columns(model, batch, ids, mask)
    logits = scored.logits
    if allowed is not None:  # (N, G, V) -> the actions' rows
        logits = logits.float().masked_fill(~scored.select(allowed.to(logits.device)), float("-inf"))
    logp_all = logprobs_from_logits(logits, sampling)
    logp = logp_all.gather(-1, scored.targets.unsqueeze(-1)).squeeze(-1)
    values = torch.zeros_like(logp) if head is None else head(scored.hidden)
    if entropy is None:
        ent = torch.zeros_like(logp)
    else:
        with torch.set_grad_enabled(entropy and torch.is_grad_enabled()):
            ent = entropy_from_logprobs(logp_all)
    return ActionStats(*(scored.place(t) for t in (logp, ent, values)), batch.mask.to(logp.device).float())


class ActResult(NamedTuple):
    actions: np.ndarray  # (B,) int64 token ids
    logprobs: np.ndarray  # (B,) float32, log-prob of each action under Sampling
    values: np.ndarray  # (B,) float32, V(context before the action)
    positions: np.ndarray  # (B,) int64, tokens after the prompt before the action: its column among them


class ActionStats(NamedTuple):
    """What a policy says of each stored action: :func:`score_actions`' result."""

    logprobs: torch.Tensor  # (N, A) log-prob of each action (the agent's tokens)
    entropy: torch.Tensor  # (N, A)
    values: torch.Tensor  # (N, A) value of the context before each action
    mask: torch.Tensor  # (N, A) 1 where an action exists


@dataclass
class EpisodeBatch:
    """Episodes as padded tensors: prompts left-padded, generated tokens right-padded, and where the
    actions sit among the generated tokens.

    The generated tokens are the agent's actions, and in a multi-turn task the turns the env
    inserted between them too (the policy reads them, it does not choose them). ``action_index``
    gives each action's column among the generated ones (a single-turn episode is the one-turn case:
    its actions are its first columns), and everything a learner reads
    (:meth:`LMActorCritic.evaluate`, :meth:`~LMActorCritic.reference_logprobs`, :attr:`mask`) is
    over actions only: ``(N, A)``."""

    input_ids: torch.Tensor  # (N, Pm + Gm)
    attention_mask: torch.Tensor  # (N, Pm + Gm)
    gen_len: int  # Gm
    action_index: torch.Tensor  # (N, A) long: columns of the actions among the Gm, right-padded with 0
    action_mask: torch.Tensor  # (N, A) float: 1 where an action exists

    @property
    def prompt_len(self) -> int:
        """Pm: the columns that hold the (left-padded) prompts."""
        return self.input_ids.shape[1] - self.gen_len

    @property
    def mask(self) -> torch.Tensor:
        """``(N, A)``: 1 where an action exists."""
        return self.action_mask

    def rows(self, idx: torch.Tensor) -> EpisodeBatch:
        """The episodes ``idx`` (a minibatch)."""
        return EpisodeBatch(self.input_ids[idx], self.attention_mask[idx], self.gen_len, self.action_index[idx],
                            self.action_mask[idx])

    @classmethod
    def cat(cls, parts: Sequence[EpisodeBatch], pad_token_id: int) -> EpisodeBatch:
        """Batches as one, each widened to the widest (prompts on the left, generated tokens and
        action columns on the right): the batch :meth:`from_episodes` builds from all their episodes."""
        pm, gm = max(b.prompt_len for b in parts), max(b.gen_len for b in parts)
        a = max(b.action_index.shape[1] for b in parts)
        ids = torch.cat([F.pad(b.input_ids, (pm - b.prompt_len, gm - b.gen_len), value=pad_token_id) for b in parts])
        mask = torch.cat([F.pad(b.attention_mask, (pm - b.prompt_len, gm - b.gen_len)) for b in parts])
        index, action_mask = (torch.cat([F.pad(t, (0, a - t.shape[1])) for t in ts]) for ts in
                              zip(*((b.action_index, b.action_mask) for b in parts), strict=True))
        return cls(ids, mask, gm, index, action_mask)

    @classmethod
    def from_episodes(cls, prompts: Sequence[Sequence[int]], generated: Sequence[Sequence[int]],
                      pad_token_id: int, positions: Sequence[Sequence[int]] | None = None) -> EpisodeBatch:
        """``positions``: each episode's action columns among its ``generated`` tokens; by default
        every generated token is an action."""
        prompt_ids, prompt_mask = pad(prompts, pad_token_id, "left")
        gen_ids, gen_mask = pad(generated, pad_token_id, "right", width=1)
        ids, mask = torch.cat([prompt_ids, gen_ids], 1), torch.cat([prompt_mask, gen_mask], 1)
        if positions is None:
            positions = [range(len(g)) for g in generated]
        for i, (q, g) in enumerate(zip(positions, generated, strict=True)):
            if len(q) and not (0 <= min(q) and max(q) < len(g)):
                raise ValueError(f"episode {i}: action columns {min(q)}..{max(q)} outside its {len(g)} "
                                 f"generated tokens")
        index, action_mask = pad([list(q) for q in positions], 0, "right", width=1)
        return cls(ids, mask, gen_ids.shape[1], index, action_mask.float())


def _check_adapter(model: Any, adapter: Path) -> None:
    """peft loads an adapter file by name matching and says nothing about weights that matched no
    layer: an adapter whose keys fit nothing would load as the bare base model (a policy evaluated
    as trained, a resume from a fresh adapter). Every adapter weight the model has must come from
    the file, and every weight in the file must land."""
    from peft import get_peft_model_state_dict
    from safetensors import SafetensorError, safe_open

    file = adapter / "adapter_model.safetensors"
    try:
        with safe_open(str(file), "pt") as f:
            saved = set(f.keys())
    except (OSError, SafetensorError) as exc:
        raise ValueError(f"LoRA adapter {file} cannot be read ({exc}); the checkpoint is damaged") from None
    expected = set(get_peft_model_state_dict(model).keys())
    missing, unexpected = sorted(expected - saved), sorted(saved - expected)
    if missing or unexpected:
        raise ValueError(f"LoRA adapter {file} does not fit its base model: {len(missing)} adapter weights missing, "
                         f"{len(unexpected)} unexpected (e.g. {(unexpected or missing)[0]}); the checkpoint is "
                         "damaged or was not written for this base")


class LMActorCritic(nn.Module):
    """A causal LM with a value head. Build with :meth:`from_pretrained`."""

    def __init__(self, model: nn.Module, tokenizer: Any, sampling: Sampling = Sampling()) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.sampling = sampling
        hidden = model.config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad)

    # -- construction / persistence --------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name: str, tokenizer: Any = None, sampling: Sampling | None = None,
                        lora: dict[str, Any] | None = None, seed: int = 0) -> LMActorCritic:
        """Load a policy: a textenv model name (``"tiny"`` needs the env's ``tokenizer``), an SFT
        checkpoint (a plain LM directory: fresh value head) or a saved policy directory.
        ``lora`` (peft ``LoraConfig`` keyword arguments) wraps the LM in a LoRA adapter."""
        path = Path(name)
        if (path / "policy.json").exists():
            check_output_dir(path, "policy")  # a saved policy is loaded only when its save finished
        meta = json.loads((path / "policy.json").read_text()) if (path / "policy.json").exists() else {}
        if meta.get("lora_base"):
            from peft import PeftModel

            tok, base = load_model(meta["lora_base"], tokenizer=tokenizer, seed=seed)
            model = PeftModel.from_pretrained(base, path / "adapter", is_trainable=True)
            _check_adapter(model, path / "adapter")
            model.textenv_base = meta["lora_base"]  # saved again as a LoRA policy on the same base
        else:
            tok, model = load_model(name, tokenizer=tokenizer, seed=seed)
            if lora is not None:
                from peft import LoraConfig, get_peft_model

                model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))
                model.textenv_base = name  # remembered for save_pretrained
        sampling = sampling or Sampling(**meta.get("sampling", {}))
        policy = cls(model, tok, sampling)
        head = path / "value_head.safetensors"
        if meta and not head.is_file():  # a saved policy always has one: a zero head would resume silently
            raise FileNotFoundError(f"policy {path} has policy.json but no value_head.safetensors")
        if head.exists():
            from safetensors.torch import load_file

            try:
                policy.value_head.load_state_dict(load_file(head))
            except RuntimeError as exc:  # missing, unexpected or wrongly shaped tensors
                raise ValueError(f"{head} does not fit this model's value head: {str(exc).splitlines()[0]}") from exc
        return policy.train(False)

    def save_pretrained(self, directory: str | Path) -> None:
        """safetensors only: the LM (or its LoRA adapter), the tokenizer, the value head, then the
        ``COMPLETE`` marker that :meth:`from_pretrained` requires (for a crash-safe replace of an
        existing folder, write into :func:`textenv.io.atomic_dir`, as the trainers do)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"sampling": asdict(self.sampling)}
        if self.is_lora:
            self.model.save_pretrained(directory / "adapter", safe_serialization=True)
            meta["lora_base"] = getattr(self.model, "textenv_base", None)
        else:
            self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.value_head.state_dict().items()},
                  directory / "value_head.safetensors")
        (directory / "policy.json").write_text(json.dumps(meta, indent=2))
        (directory / MARKER).write_text("ok\n")  # last: a save cut short is never loaded as whole

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "disable_adapter")

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    def _value(self, hidden: torch.Tensor) -> torch.Tensor:
        """V(hidden) in fp32: under bf16 autocast the head returns bf16, and the buffers that
        collect values (the rollout state, the PPO batch) are fp32."""
        return self.value_head(hidden.float()).squeeze(-1).float()

    # -- scoring stored episodes -----------------------------------------------------------

    def evaluate(self, batch: EpisodeBatch, with_values: bool = True, allowed: torch.Tensor | None = None,
                 entropy_grad: bool = True, sampling: Sampling | None = None) -> ActionStats:
        """Log-probs, entropy and values of every action of ``batch`` (``(N, A)``), in one forward
        (:func:`score_actions`), under this policy's sampling or ``sampling``.

        ``allowed`` (``(N, G, V)`` bool, from :meth:`agents.masking.TopKMasker.allowed_for`) scores
        the NLPO-masked policy: logits outside the allowed set are ``-inf`` before sampling's transform.
        ``entropy_grad=False`` computes the entropy outside autograd (a loss without an entropy bonus
        then keeps no vocabulary-wide tensors for its backward; its gradients are the same).
        """
        return score_actions(self.model, batch, sampling or self.sampling, allowed,
                             self._value if with_values else None, entropy_grad)

    @torch.no_grad()
    def reference_logprobs(self, batch: EpisodeBatch, reference: nn.Module | None = None) -> torch.Tensor:
        """Log-probs of the actions (``(N, A)``) under a frozen reference: ``reference`` if given, else
        (LoRA) this model with its adapter disabled; the same scoring path as :meth:`evaluate`."""
        if reference is not None:
            return score_actions(reference, batch, self.sampling).logprobs
        if not self.is_lora:
            raise ValueError("a full-weight policy needs an explicit reference model")
        with self.model.disable_adapter():
            return score_actions(self.model, batch, self.sampling).logprobs

    # -- acting on env observations with a KV cache ----------------------------------------

    def cache_state(self, num_envs: int, max_prompt_tokens: int) -> CacheState:
        return CacheState(num_envs, max_prompt_tokens)

    prefill_chunk = 8
    """Distinct prompts per prefill forward (see :class:`agents.kvcache.CachedLM`)."""

    def cached(self) -> CachedLM:
        """The LM with its per-sub-env KV cache, the value head as its head."""
        return CachedLM(self.model, self.pad_token_id, head=self._value, prefill_chunk=self.prefill_chunk)

    def advance(self, obs: dict[str, np.ndarray], state: CacheState,
                active: np.ndarray | None = None) -> np.ndarray:
        """See :meth:`agents.kvcache.CachedLM.advance`."""
        return self.cached().advance(obs, state, active)

    @torch.inference_mode()
    def act(self, obs: dict[str, np.ndarray], state: CacheState,
            generator: torch.Generator | None = None, greedy: bool = False,
            active: np.ndarray | None = None, row_seeds: Sequence[int] | None = None,
            allowed: torch.Tensor | None = None) -> ActResult:
        """Choose the next token for every sub-env of ``obs`` (a single env's obs works too).

        Rows where ``active`` is False are skipped (no forward; their action is the pad token),
        so a rollout that waits for its slowest episode costs no more than ``generate``.
        ``row_seeds`` gives every row its own random stream, a hash of (row seed, token position)
        (:func:`row_uniforms`): a sample then depends only on its own seed, not on which other rows
        share the batch (the eval suite relies on this to shard examples across processes and get
        the same table). Either way one :func:`sample` call draws the whole batch: no loop over
        rows, no per-row generator.
        ``allowed`` (``(B, V)`` bool, e.g. NLPO's :meth:`agents.masking.TopKMasker.next_allowed`)
        restricts every row to those next tokens.
        """
        n_gen = self.advance(obs, state, active)
        logits = state.logits
        if allowed is not None:
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
        logp = logprobs_from_logits(logits, self.sampling)
        if greedy:
            actions = logp.argmax(-1)
        elif row_seeds is not None:
            actions = sample(logp.exp(), torch.from_numpy(row_uniforms(row_seeds, n_gen)))
        else:
            device = generator.device if generator is not None else logp.device
            actions = sample(logp.exp(), torch.rand(state.num_envs, generator=generator, device=device))
        if active is not None:
            actions[torch.as_tensor(~np.asarray(active, dtype=bool), device=actions.device)] = self.pad_token_id
        chosen = logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return ActResult(actions.cpu().numpy().astype(np.int64), chosen.cpu().numpy().astype(np.float32),
                         state.values.cpu().numpy().astype(np.float32), np.asarray(n_gen, dtype=np.int64))
