"""NLPO action masking: cut the action space to a frozen masking model's top-k / top-p next tokens.

NLPO (Ramamurthy et al. 2023, "Is Reinforcement Learning (Not) for Natural Language Processing?",
arXiv:2210.01241) keeps a *masking policy* — a copy of the policy, frozen, refreshed every
``update_every`` iterations — and lets the learner choose only among that model's most likely next
tokens. With a vocabulary of 49k tokens most of them are never a sensible continuation; masking
them out keeps exploration on plausible text.

The masked policy is ``pi(a|s) ∝ pi_theta(a|s) * 1[a in topk(pi_mask(.|s))]``: the policy's logits
are set to ``-inf`` outside the allowed set, then the sampling transform (temperature, top-k, top-p)
applies as usual. The same mask must be used where tokens are sampled (:meth:`TopKMasker.next_allowed`
with the rollout's KV cache) and where they are re-scored for the update
(:meth:`TopKMasker.allowed_for`, one forward over the stored episodes): the masking model does not
change between the two, so PPO's first ratio is exactly 1.

:func:`allowed_tokens` is the mask as a function of logits; the stable-baselines3 side
(:class:`agents.sb3.TopKMaskWrapper`, ``action_masks()`` for sb3-contrib's ``MaskablePPO``) uses it
too, so both learners mask the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.kvcache import CachedLM, CacheState, score_forward
from agents.policy import EpisodeBatch

__all__ = ["TopKMasker", "allowed_tokens"]


def allowed_tokens(logits: torch.Tensor, top_k: int, top_p: float = 1.0) -> torch.Tensor:
    """Boolean mask (same shape as ``logits``) of the top-k tokens, then the smallest prefix of that
    ranking holding ``top_p`` of the full distribution's mass. The greedy token is always allowed;
    exactly ``min(top_k, V)`` tokens per row when ``top_p == 1`` (ties broken by ``torch.topk``)."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.float()
    top = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)
    keep = torch.ones_like(top.values, dtype=torch.bool)
    if top_p < 1.0:
        probs = torch.softmax(logits, -1).gather(-1, top.indices)
        keep = (probs.cumsum(-1) - probs) < top_p  # the first (greedy) token always survives
    return torch.zeros_like(logits, dtype=torch.bool).scatter(-1, top.indices, keep)


class TopKMasker:
    """NLPO's masking policy for :class:`agents.policy.LMActorCritic` (the project's PPO).

    ``model`` is the masking LM. It is frozen here and never trained; pass ``share=True`` to use it
    as is (e.g. PPO's frozen reference, which is the starting policy: no second copy in memory),
    otherwise it is deep-copied so that training the policy never moves the mask.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, top_k: int, top_p: float = 1.0,
                 share: bool = False) -> None:
        allowed_tokens(torch.zeros(1, 2), top_k, top_p)  # validate k and p once, up front
        self.top_k, self.top_p = top_k, top_p
        model = model if share else copy.deepcopy(model)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.lm = CachedLM(model.eval().requires_grad_(False), int(pad))

    @torch.no_grad()
    def refresh(self, model: nn.Module) -> None:
        """Copy the policy's current LM weights into the masking model (NLPO's periodic update)."""
        self.lm.model.load_state_dict(model.state_dict())

    def save(self, path: str | Path) -> None:
        """The masking model's weights as safetensors (tied embeddings written once)."""
        from safetensors.torch import save_model

        save_model(self.lm.model, str(path))

    def load(self, path: str | Path) -> None:
        from safetensors.torch import load_model

        load_model(self.lm.model, str(path), device=str(self.lm.device))

    @torch.no_grad()
    def next_allowed(self, obs: dict[str, np.ndarray], state: CacheState,
                     active: np.ndarray | None = None) -> torch.Tensor:
        """``(B, V)`` allowed next tokens for every sub-env of ``obs``, with the masking model's own
        per-sub-env KV cache in ``state`` (so masking adds one cached decode step, not a full forward)."""
        self.lm.advance(obs, state, active)
        return allowed_tokens(state.logits, self.top_k, self.top_p)

    @torch.no_grad()
    def allowed_for(self, batch: EpisodeBatch) -> torch.Tensor:
        """``(N, G, V)`` allowed tokens at every generated position of stored episodes, in one forward."""
        ids = batch.input_ids.to(self.lm.device)
        mask = batch.attention_mask.to(self.lm.device)
        logits, _ = score_forward(self.lm.model, ids, mask, batch.gen_len + 1, batch.prompt_len)
        return allowed_tokens(logits[:, :-1], self.top_k, self.top_p)
