"""The LM actor-critic: a causal LM (the actor) plus a scalar value head on its last hidden state.

Two paths, one distribution:

- :meth:`LMActorCritic.act` steps a textenv env or vector env token by token and keeps a KV cache
  per sub-env across env steps (in :class:`RolloutState`), so a rollout through the Gymnasium API
  costs what ``model.generate`` costs. A sub-env whose observation no longer extends what the
  cache holds (a new episode, an autoreset) is re-prefilled; nothing else is recomputed.
- :meth:`LMActorCritic.evaluate` scores stored episodes in one forward (log-probs, entropy, values)
  for the PPO update.

Both turn logits into log-probs with :func:`logprobs_from_logits` under the same
:class:`Sampling` (temperature, top-k, top-p), so PPO ratios are not biased by a mismatch between
how tokens were sampled and how they are scored (a known TRL pitfall).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn

from textenv.io import MARKER, check_output_dir
from textenv.models import forward_with_cache, load_model

if TYPE_CHECKING:
    from agents.masking import TopKMasker

__all__ = ["ActResult", "EpisodeBatch", "LMActorCritic", "RolloutState", "Sampling", "Scores",
           "logprobs_from_logits"]


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
    logits = logits.float() / sampling.temperature
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


def entropy_from_logprobs(logp: torch.Tensor) -> torch.Tensor:
    """Entropy of rows of log-probs that may hold ``-inf`` (tokens cut by top-k/top-p or a mask).

    The ``-inf`` entries are replaced before the product, not after: ``where(p > 0, p * logp, 0)``
    is right in the forward pass but its backward multiplies 0 by ``-inf`` and turns every
    gradient into NaN."""
    p = logp.exp()
    return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)


class ActResult(NamedTuple):
    actions: np.ndarray  # (B,) int64 token ids
    logprobs: np.ndarray  # (B,) float32, log-prob of each action under Sampling
    values: np.ndarray  # (B,) float32, V(context before the action)


class Scores(NamedTuple):
    logprobs: torch.Tensor  # (N, G) log-prob of each generated token
    entropy: torch.Tensor  # (N, G)
    values: torch.Tensor  # (N, G) value of the context before each generated token
    mask: torch.Tensor  # (N, G) 1 where a generated token exists


@dataclass
class EpisodeBatch:
    """Episodes as padded tensors: prompts left-padded, generated tokens right-padded."""

    input_ids: torch.Tensor  # (N, Pm + Gm)
    attention_mask: torch.Tensor  # (N, Pm + Gm)
    gen_len: int  # Gm

    @classmethod
    def from_episodes(cls, prompts: Sequence[Sequence[int]], generated: Sequence[Sequence[int]],
                      pad_token_id: int) -> EpisodeBatch:
        pm = max(len(p) for p in prompts)
        gm = max(1, max(len(g) for g in generated))
        ids = torch.full((len(prompts), pm + gm), pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (p, g) in enumerate(zip(prompts, generated, strict=True)):
            ids[i, pm - len(p):pm] = torch.as_tensor(list(p), dtype=torch.long)
            mask[i, pm - len(p):pm] = 1
            ids[i, pm:pm + len(g)] = torch.as_tensor(list(g), dtype=torch.long)
            mask[i, pm:pm + len(g)] = 1
        return cls(ids, mask, gm)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class RolloutState:
    """The per-sub-env KV cache of one rollout, and what each row of it holds."""

    def __init__(self, num_envs: int, max_prompt_tokens: int) -> None:
        self.num_envs = num_envs
        self.prompt_len = max_prompt_tokens
        self.cache: Any = None
        self.cache_mask: torch.Tensor | None = None  # (B, T): which cached slots are real tokens
        self.next_pos = torch.zeros(num_envs, dtype=torch.long)
        self.fed = np.full(num_envs, -1, dtype=np.int64)  # generated tokens already in the cache
        # the prompt part of the observation each cached row was built from (which episode it holds)
        self.prompt_ids = np.zeros((num_envs, max_prompt_tokens), dtype=np.int64)
        self.prompt_mask = np.zeros((num_envs, max_prompt_tokens), dtype=np.int64)
        self.known = np.zeros(num_envs, dtype=bool)  # rows whose cache holds an episode at all
        self.logits: torch.Tensor | None = None  # (B, V) next-token logits per row
        self.values: torch.Tensor | None = None  # (B,)
        self.mask_state: RolloutState | None = None  # the masking model's own cache (NLPO), if any

    def invalidate(self) -> None:
        """Forget every cached row (e.g. after the weights changed)."""
        self.fed[:] = -1
        self.known[:] = False
        if self.mask_state is not None:
            self.mask_state.invalidate()


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

    def _trunk(self, input_ids, attention_mask, logits_to_keep: int, model: nn.Module | None = None):
        out = (model or self.model)(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=_positions(attention_mask),
            output_hidden_states=True, logits_to_keep=logits_to_keep, use_cache=False,
        )
        return out.logits, out.hidden_states[-1]

    def evaluate(self, batch: EpisodeBatch, with_values: bool = True,
                 allowed: torch.Tensor | None = None) -> Scores:
        """Log-probs, entropy and values of every generated token of ``batch``, in one forward.

        ``allowed`` (``(N, G, V)`` bool, from :meth:`agents.masking.TopKMasker.allowed_for`) scores
        the NLPO-masked policy: logits outside the allowed set are ``-inf`` before sampling's transform.
        """
        ids = batch.input_ids.to(self.device)
        mask = batch.attention_mask.to(self.device)
        g = batch.gen_len
        logits, hidden = self._trunk(ids, mask, logits_to_keep=g + 1)
        logits = logits[:, :-1]  # positions predicting generated tokens
        if allowed is not None:
            logits = logits.float().masked_fill(~allowed.to(logits.device), float("-inf"))
        logp_all = logprobs_from_logits(logits, self.sampling)
        targets = ids[:, -g:]
        logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        gen_mask = mask[:, -g:].float()
        values = self._value(hidden[:, -g - 1:-1]) if with_values else torch.zeros_like(logp)
        logp = torch.where(gen_mask > 0, logp, torch.zeros_like(logp))
        return Scores(logp, entropy_from_logprobs(logp_all), values, gen_mask)

    @torch.no_grad()
    def reference_logprobs(self, batch: EpisodeBatch, reference: nn.Module | None = None) -> torch.Tensor:
        """Log-probs of the generated tokens under a frozen reference: ``reference`` if given, else
        (LoRA) this model with its adapter disabled."""
        ids = batch.input_ids.to(self.device)
        mask = batch.attention_mask.to(self.device)
        g = batch.gen_len
        if reference is None:
            if not self.is_lora:
                raise ValueError("a full-weight policy needs an explicit reference model")
            with self.model.disable_adapter():
                logits, _ = self._trunk(ids, mask, g + 1)
        else:
            logits, _ = self._trunk(ids, mask, g + 1, model=reference)
        logp = logprobs_from_logits(logits[:, :-1], self.sampling).gather(-1, ids[:, -g:].unsqueeze(-1)).squeeze(-1)
        return torch.where(mask[:, -g:] > 0, logp, torch.zeros_like(logp))

    # -- acting on env observations with a KV cache ----------------------------------------

    def rollout_state(self, num_envs: int, max_prompt_tokens: int) -> RolloutState:
        return RolloutState(num_envs, max_prompt_tokens)

    prefill_chunk = 8
    """Distinct prompts per prefill forward. Prompts are sorted by length first, so a chunk pads
    its rows to about their own length instead of the batch's longest prompt."""

    def _prefill_in_chunks(self, state: RolloutState, rows: list[int], contexts: dict[int, np.ndarray]) -> None:
        groups: dict[bytes, list[int]] = {}  # identical contexts stay in one chunk (prefilled once)
        for i in rows:
            groups.setdefault(contexts[i].tobytes(), []).append(i)
        ordered = sorted(groups.values(), key=lambda g: -len(contexts[g[0]]))  # longest first: no regrowth
        for start in range(0, len(ordered), self.prefill_chunk):
            chunk = [i for g in ordered[start:start + self.prefill_chunk] for i in g]
            self._prefill(state, np.asarray(chunk), [contexts[i] for i in chunk])

    def _prefill(self, state: RolloutState, rows: np.ndarray, contexts: list[np.ndarray]) -> None:
        # Rows with the same context (several samples of one prompt: best-of-n, GRPO/RLOO groups)
        # are prefilled once and their cache rows copied: the prompt is the costly part of a rollout.
        slot: dict[bytes, int] = {}
        which = [slot.setdefault(c.tobytes(), len(slot)) for c in contexts]
        unique = [contexts[which.index(u)] for u in range(len(slot))]
        n = max(len(c) for c in unique)
        ids = torch.full((len(unique), n), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, c in enumerate(unique):
            ids[j, n - len(c):] = torch.as_tensor(c)
            mask[j, n - len(c):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        out, cache = forward_with_cache(self.model, ids, None, attention_mask=mask,
                                        position_ids=_positions(mask), output_hidden_states=True, logits_to_keep=1)
        logits, values = out.logits[:, -1].float(), self._value(out.hidden_states[-1][:, -1])
        if len(unique) < len(contexts):
            copy_of = torch.as_tensor(which, device=self.device)
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys[copy_of], layer.values[copy_of]
            logits, values, mask = logits[copy_of], values[copy_of], mask[copy_of]
        rows_t = torch.as_tensor(rows, device=self.device)
        if np.array_equal(rows, np.arange(state.num_envs)):  # every row, in order: the cache as is
            state.cache, state.cache_mask = cache, mask.clone()
        elif state.cache is None:  # first prefill of only some rows: start from empty rows
            self._splice_into_empty(state, rows_t, cache, mask)
        else:
            self._splice(state, rows_t, cache, mask)
        if state.logits is None:
            state.logits = torch.zeros(state.num_envs, logits.shape[-1], device=self.device)
            state.values = torch.zeros(state.num_envs, device=self.device)
        state.logits[rows_t] = logits
        state.values[rows_t] = values
        state.next_pos[rows] = mask.sum(-1).cpu()

    def _splice_into_empty(self, state, rows_t, cache, mask) -> None:
        b, n = state.num_envs, mask.shape[1]
        layers = []
        for layer in cache.layers:
            k = layer.keys.new_zeros((b, *layer.keys.shape[1:]))
            v = layer.values.new_zeros((b, *layer.values.shape[1:]))
            k[rows_t], v[rows_t] = layer.keys, layer.values
            layers.append((k, v))
        from transformers import DynamicCache

        state.cache = DynamicCache(layers)
        state.cache_mask = torch.zeros(b, n, dtype=mask.dtype, device=mask.device)
        state.cache_mask[rows_t] = mask

    def _splice(self, state, rows_t, cache, mask) -> None:
        """Write freshly prefilled rows into the batch cache, right-aligned, padding the batch cache
        on the left when the new rows are longer than what it holds."""
        t, n = state.cache_mask.shape[1], mask.shape[1]
        if n > t:
            grow = n - t
            for layer in state.cache.layers:
                layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, grow, 0))
                layer.values = torch.nn.functional.pad(layer.values, (0, 0, grow, 0))
            state.cache_mask = torch.nn.functional.pad(state.cache_mask, (grow, 0))
            t = n
        for dst, src in zip(state.cache.layers, cache.layers, strict=True):
            dst.keys[rows_t] = 0
            dst.values[rows_t] = 0
            dst.keys[rows_t, :, t - n:] = src.keys
            dst.values[rows_t, :, t - n:] = src.values
        state.cache_mask[rows_t] = 0
        state.cache_mask[rows_t, t - n:] = mask

    def _decode(self, state: RolloutState, rows: np.ndarray, tokens: np.ndarray) -> None:
        """Feed one token to ``rows``; other rows get a masked pad slot, which they never attend to."""
        b = state.num_envs
        ids = torch.full((b, 1), self.pad_token_id, dtype=torch.long)
        ids[rows, 0] = torch.as_tensor(tokens)
        new = torch.zeros(b, 1, dtype=state.cache_mask.dtype)
        new[rows] = 1
        ids, new = ids.to(self.device), new.to(self.device)
        state.cache_mask = torch.cat([state.cache_mask, new], dim=1)
        pos = state.next_pos.clone().view(b, 1).to(self.device)
        out, state.cache = forward_with_cache(self.model, ids, state.cache, attention_mask=state.cache_mask,
                                              position_ids=pos, output_hidden_states=True)
        rows_t = torch.as_tensor(rows, device=self.device)
        state.logits[rows_t] = out.logits[rows_t, -1].float()
        state.values[rows_t] = self._value(out.hidden_states[-1][rows_t, -1])
        state.next_pos[rows] += 1

    @torch.no_grad()
    def advance(self, obs: dict[str, np.ndarray], state: RolloutState,
                active: np.ndarray | None = None) -> np.ndarray:
        """Bring ``state``'s cache up to ``obs`` (one decode step, or a prefill for rows whose
        episode is new) and leave the next-token logits and values in ``state.logits`` /
        ``state.values``. Rows where ``active`` is False are skipped. Returns each row's number of
        generated tokens."""
        ids = np.atleast_2d(obs["input_ids"])
        mask = np.atleast_2d(obs["attention_mask"])
        if ids.shape[0] != state.num_envs:
            raise ValueError(f"observation batch {ids.shape[0]} != rollout state's {state.num_envs} envs")
        p = state.prompt_len
        n_gen = mask[:, p:].sum(-1)
        # Whole-batch array ops, no loop over rows: a row steps when it holds this episode's prompt
        # and exactly one new token arrived; it is prefilled when its episode is new (or anything
        # else changed); it is left alone when nothing changed.
        live = np.ones(state.num_envs, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        same = state.known & (ids[:, :p] == state.prompt_ids).all(1) & (mask[:, :p] == state.prompt_mask).all(1)
        step = live & same & (n_gen == state.fed + 1)
        prefill = live & ~step & ~(same & (n_gen == state.fed))
        if step.any():
            rows = np.flatnonzero(step)
            self._decode(state, rows, ids[rows, p + n_gen[rows] - 1])
        if prefill.any():
            rows = np.flatnonzero(prefill)
            self._prefill_in_chunks(state, rows.tolist(), {i: ids[i][mask[i] == 1] for i in rows})
        touched = step | prefill
        state.fed[touched] = n_gen[touched]
        state.prompt_ids[touched] = ids[touched, :p]
        state.prompt_mask[touched] = mask[touched, :p]
        state.known |= touched
        return n_gen

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray], state: RolloutState,
            generator: torch.Generator | None = None, greedy: bool = False,
            active: np.ndarray | None = None, row_seeds: Sequence[int] | None = None,
            masker: TopKMasker | None = None) -> ActResult:
        """Choose the next token for every sub-env of ``obs`` (a single env's obs works too).

        Rows where ``active`` is False are skipped (no forward; their action is the pad token),
        so a rollout that waits for its slowest episode costs no more than ``generate``.
        ``row_seeds`` gives every row its own random stream, seeded by (row seed, token position):
        a sample then depends only on its own seed, not on which other rows share the batch (the
        eval suite relies on this to shard examples across processes and get the same table).
        ``masker`` (NLPO) restricts every row to its masking model's allowed next tokens.
        """
        n_gen = self.advance(obs, state, active)
        logits = state.logits
        if masker is not None:
            if state.mask_state is None:
                state.mask_state = RolloutState(state.num_envs, state.prompt_len)
            allowed = masker.next_allowed(obs, state.mask_state, active).to(logits.device)
            logits = logits.masked_fill(~allowed, float("-inf"))
        logp = logprobs_from_logits(logits, self.sampling)
        if greedy:
            actions = logp.argmax(-1)
        elif row_seeds is not None:
            probs = logp.exp().cpu()
            actions = torch.stack([
                torch.multinomial(probs[i], 1, generator=torch.Generator().manual_seed(
                    int(row_seeds[i]) * 100_003 + int(n_gen[i]))).squeeze(-1)
                for i in range(state.num_envs)
            ]).to(logp.device)
        else:
            actions = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
        if active is not None:
            actions[torch.as_tensor(~np.asarray(active, dtype=bool), device=actions.device)] = self.pad_token_id
        chosen = logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return ActResult(actions.cpu().numpy().astype(np.int64), chosen.cpu().numpy().astype(np.float32),
                         state.values.cpu().numpy().astype(np.float32))
