"""stable-baselines3 on textenv with a real LM policy, and NLPO-style top-k action masking.

- :class:`LMPolicy`: an SB3 ``ActorCriticPolicy`` whose actor is a causal LM's next-token
  distribution and whose critic is a linear value head on the LM's last hidden state at the last
  real token. ``stable_baselines3.PPO(LMPolicy, env, policy_kwargs={"model_name": ..., "tokenizer":
  env.unwrapped.tokenizer})`` trains on any textenv env with SB3's own VecEnv and buffers.
- :class:`MaskableLMPolicy`: the same LM policy as a ``MaskableActorCriticPolicy``, for
  sb3-contrib's ``MaskablePPO``: the next-token distribution cut to the env's ``action_masks()``.
- :class:`TopKMaskWrapper`: a ``gym.Wrapper`` holding a frozen LM, with ``action_masks()`` (the
  frozen model's top-k / top-p next-token set), the hook sb3-contrib's ``MaskablePPO`` calls
  through ``get_action_masks`` (NLPO, Ramamurthy et al. 2023, "Is Reinforcement Learning (Not) for
  Natural Language Processing?", arXiv:2210.01241). :func:`topk_mask` is the same mask as a plain
  function; the project's own PPO masks the same way (:mod:`agents.masking`, ``--mask-top-k``),
  with the masking model's KV cache instead of a full forward per step.

Limits (measured, not guessed):

- No KV cache. SB3 hands the policy one observation per step and keeps no state between steps, so
  :class:`LMPolicy` re-runs the full LM over the whole context at every env step: O(L) tokens per
  step, O(L^2) per episode, against O(1) per step for :meth:`agents.policy.LMActorCritic.act`,
  which caches keys and values per sub-env. ``python -m evals.benchmarks.rollout`` measures the naive
  (uncached) rollout at ~0.06x the throughput of the cached one for the 135M model, i.e. about 16x
  slower rollouts; the gap grows with ``max_new_tokens``. Trailing padding columns are cut before
  the forward (causal attention makes that exact), which saves part of it early in an episode.
  ``TopKMaskWrapper`` adds one more uncached forward of its frozen LM per step.
- SB3's buffers store observations as float32: token ids are exact up to 2**24 (any real
  vocabulary), and are rounded back to int64 here.
- The PPO update re-scores every stored step with a full forward (``batch_size`` contexts of
  length L), not one forward per episode as :meth:`LMActorCritic.evaluate` does.
- No reference-model KL penalty: SB3's PPO has none (add it to the reward with a wrapper if needed).
- Dropout stays off in training (the LM is kept in eval mode), so PPO's first ratio is exactly 1.
- ``MaskablePPO`` needs a ``MaskableActorCriticPolicy``: use :class:`MaskableLMPolicy` there and
  :class:`LMPolicy` with plain ``PPO``.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from agents.kvcache import positions
from agents.masking import allowed_tokens
from agents.policy import Sampling, entropy_from_logprobs, logprobs_from_logits
from textenv.models import DEFAULT_MODEL, load_model

__all__ = ["LMPolicy", "MaskableLMPolicy", "TopKMaskWrapper", "last_token_forward", "topk_mask"]


def _as_batch(obs: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids long, attention_mask long)``, batched, from numpy or (float) torch obs."""
    ids, mask = obs["input_ids"], obs["attention_mask"]
    ids = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids, device=device)
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask, device=device)
    if ids.dim() == 1:
        ids, mask = ids.unsqueeze(0), mask.unsqueeze(0)
    # SB3's buffers hold float32; round before the cast so 2.9999 never becomes 2
    ids = ids.round().long() if ids.is_floating_point() else ids.long()
    mask = (mask > 0.5).long() if mask.is_floating_point() else (mask > 0).long()
    return ids, mask


def last_token_forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (B, V) at each row's last real token (and its last hidden state (B, H) if ``hidden``).

    Rows may be left- and right-padded (textenv's layout); position ids count real tokens only
    (``cumsum - 1``), so a padded row scores as if it were unpadded. Columns that are padding in
    every row are cut first: exact, since attention is causal and positions ignore padding.
    """
    if (attention_mask.sum(-1) == 0).any():
        raise ValueError("an observation has no real token (attention_mask all zero)")
    real = attention_mask.any(0).nonzero().squeeze(-1)
    lo, hi = int(real[0]), int(real[-1]) + 1
    ids, mask = input_ids[:, lo:hi], attention_mask[:, lo:hi]
    n = mask.shape[1]
    last = n - 1 - mask.flip(-1).argmax(-1)  # index of the last 1 in each row
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                output_hidden_states=hidden, use_cache=False)
    rows = torch.arange(ids.shape[0], device=ids.device)
    logits = out.logits[rows, last].float()
    h = out.hidden_states[-1][rows, last].float() if hidden else None
    return logits, h


def _fit_vocab(logits: torch.Tensor, n: int) -> torch.Tensor:
    """Logits over exactly the ``n`` actions (models may pad their embedding past the tokenizer)."""
    if logits.shape[-1] < n:
        raise ValueError(f"the model has {logits.shape[-1]} output logits but the action space has {n} "
                         "actions; use the env's tokenizer/model")
    return logits[..., :n]


class _SB3LMBase:
    """What :class:`LMPolicy` and :class:`MaskableLMPolicy` share: the LM as actor, a value head on
    its last hidden state as critic, one forward for both. Mixed in before the SB3 base class."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule,
                 model_name: str = DEFAULT_MODEL, tokenizer: Any = None,
                 sampling: Sampling | float | None = None, seed: int = 0, **kwargs: Any) -> None:
        name = type(self).__name__
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"{name} needs a Discrete(vocab) action space, got {action_space}")
        if not (isinstance(observation_space, spaces.Dict)
                and {"input_ids", "attention_mask"} <= set(observation_space.spaces)):
            raise ValueError(f"{name} needs textenv's Dict(input_ids, attention_mask) observations, "
                             f"got {observation_space}")
        if kwargs.pop("use_sde", False):
            raise ValueError("gSDE does not apply to a Discrete action space")
        if isinstance(sampling, int | float):
            sampling = Sampling(temperature=float(sampling))
        self.model_name = model_name
        self.tokenizer = tokenizer
        self.sampling = sampling or Sampling()
        self.seed = seed
        super().__init__(observation_space, action_space, lr_schedule, ortho_init=False, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        tok, self.lm = load_model(self.model_name, tokenizer=self.tokenizer, seed=self.seed)
        self.tokenizer = tok
        hidden = self.lm.config.get_text_config().hidden_size
        self.value_net = nn.Linear(hidden, 1)
        nn.init.zeros_(self.value_net.weight)  # V = 0 at start: no random critic noise in the first advantages
        nn.init.zeros_(self.value_net.bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(model_name=self.model_name, tokenizer=self.tokenizer, sampling=self.sampling, seed=self.seed)
        return data

    def train(self, mode: bool = True) -> Any:
        super().train(mode)
        self.lm.eval()  # no dropout: rollout and update score tokens with the same function
        return self

    def _logp_and_values(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = _as_batch(obs, self.device)
        logits, h = last_token_forward(self.lm, ids, mask, hidden=True)
        logp = logprobs_from_logits(_fit_vocab(logits, int(self.action_space.n)), self.sampling)
        return logp, self.value_net(h)

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        ids, mask = _as_batch(obs, self.device)
        _, h = last_token_forward(self.lm, ids, mask, hidden=True)
        return self.value_net(h)


class LMPolicy(_SB3LMBase, ActorCriticPolicy):
    """A causal LM as an SB3 actor-critic (plain ``PPO``/``A2C`` on a textenv ``Discrete(vocab)`` env).

    Keyword arguments (``policy_kwargs``):

    - ``model_name``: a textenv model name (``"tiny"``, ``DEFAULT_MODEL``) or a local directory,
      resolved by :func:`textenv.models.load_model`.
    - ``tokenizer``: the env's tokenizer (``env.unwrapped.tokenizer``); required for ``"tiny"``,
      whose weights are built for it.
    - ``sampling``: a temperature (float) or a :class:`agents.policy.Sampling`; tokens are sampled
      and scored with the same transform, as in the project's own policy.
    - ``seed``: the ``"tiny"`` model's weight seed.
    - the usual ``optimizer_class`` / ``optimizer_kwargs``; ``net_arch`` and the like are ignored.
    """

    def _dist(self, logp: torch.Tensor) -> CategoricalDistribution:
        return self.action_dist.proba_distribution(action_logits=logp)

    def forward(self, obs: PyTorchObs, deterministic: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logp, values = self._logp_and_values(obs)
        dist = self._dist(logp)
        actions = dist.get_actions(deterministic=deterministic)
        return actions, values, dist.log_prob(actions)

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logp, values = self._logp_and_values(obs)
        dist = self._dist(logp)
        # entropy from log-probs: exact 0 for tokens cut by top-k/top-p (no -inf * 0)
        return values, dist.log_prob(actions.long().flatten()), entropy_from_logprobs(logp)

    def get_distribution(self, obs: PyTorchObs) -> CategoricalDistribution:
        return self._dist(self._logp_and_values(obs)[0])

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)


class MaskableLMPolicy(_SB3LMBase, MaskableActorCriticPolicy):
    """:class:`LMPolicy` for sb3-contrib's ``MaskablePPO``: the LM's next-token distribution cut to
    the env's ``action_masks()`` (e.g. :class:`TopKMaskWrapper`'s frozen top-k set: NLPO).

    ``MaskablePPO(MaskableLMPolicy, TopKMaskWrapper(env, k=50), policy_kwargs={...})`` with the
    same ``policy_kwargs`` as :class:`LMPolicy`. The mask applies after ``sampling``'s transform
    (sb3-contrib renormalises over the allowed tokens); with a plain temperature that is the same
    distribution as the project's PPO with ``--mask-top-k``, which masks first. Keep ``sampling``'s
    own top-k/top-p off here: a mask and a top-k cut that share no token leave nothing to sample.
    """

    def _dist(self, logp: torch.Tensor, action_masks: Any = None) -> MaskableCategoricalDistribution:
        dist = self.action_dist.proba_distribution(action_logits=logp)
        if action_masks is not None:
            dist.apply_masking(action_masks)
        return dist

    def forward(self, obs: PyTorchObs, deterministic: bool = False, action_masks: np.ndarray | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logp, values = self._logp_and_values(obs)
        dist = self._dist(logp, action_masks)
        actions = dist.get_actions(deterministic=deterministic)
        return actions, values, dist.log_prob(actions)

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor, action_masks: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logp, values = self._logp_and_values(obs)
        dist = self._dist(logp, action_masks)
        # the masked, renormalised log-probs; masked tokens sit at -1e8 (probability exactly 0)
        masked_logp = dist.distribution.logits
        return values, dist.log_prob(actions.long().flatten()), entropy_from_logprobs(masked_logp)

    def get_distribution(self, obs: PyTorchObs, action_masks: np.ndarray | None = None
                         ) -> MaskableCategoricalDistribution:
        return self._dist(self._logp_and_values(obs)[0], action_masks)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False,
                 action_masks: np.ndarray | None = None) -> torch.Tensor:
        return self.get_distribution(observation, action_masks).get_actions(deterministic=deterministic)


# ---------------------------------------------------------------------------------------------
# NLPO-style action masking


@torch.no_grad()
def topk_mask(model: nn.Module, obs: Any, k: int, top_p: float = 1.0, num_actions: int | None = None
              ) -> np.ndarray:
    """Boolean mask of ``model``'s top-k (then top-p) next tokens for ``obs``.

    ``obs`` is one textenv observation (-> shape ``(V,)``) or a batch (-> ``(B, V)``), numpy or
    torch. Exactly ``min(k, V)`` tokens per row with ``top_p=1`` (ties broken by ``torch.topk``);
    ``top_p < 1`` keeps the smallest prefix of the top-k ranking that holds ``top_p`` of the full
    distribution's mass. The greedy token is always in the mask. ``num_actions`` (default: the
    model's logit count) sets V.
    """
    allowed_tokens(torch.zeros(1, 2), k, top_p)  # validate before a forward
    single = np.ndim(obs["input_ids"]) == 1
    device = next(model.parameters()).device
    ids, mask = _as_batch(obs, device)
    logits, _ = last_token_forward(model, ids, mask)
    if num_actions is not None:
        logits = _fit_vocab(logits, num_actions)
    out = allowed_tokens(logits, k, top_p).cpu().numpy()
    return out[0] if single else out


class TopKMaskWrapper(gym.Wrapper[dict[str, np.ndarray], int, dict[str, np.ndarray], int]):
    """Expose ``action_masks()``: the top-k / top-p next-token set of a FROZEN LM (NLPO).

    ``model`` is a causal LM (deep-copied and frozen, so training a policy that shares its weights
    never moves the mask), a textenv model name, or ``None`` for the env's own model name; names
    are loaded with the env's tokenizer. The mask is recomputed lazily for the current observation
    (one uncached forward per step it is asked for) and is cached until the next ``reset``/``step``.

    >>> import gymnasium as gym, textenv
    >>> env = TopKMaskWrapper(gym.make("TextCount-v0", model="tiny"), k=8)
    >>> _ = env.reset(seed=0)
    >>> int(env.action_masks().sum())
    8
    """

    def __init__(self, env: gym.Env, model: nn.Module | str | None = None, k: int = 50,
                 top_p: float = 1.0) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(f"TopKMaskWrapper needs a Discrete action space, got {env.action_space}")
        if k < 1 or not 0 < top_p <= 1:
            raise ValueError(f"need k >= 1 and 0 < top_p <= 1, got k={k}, top_p={top_p}")
        if model is None or isinstance(model, str):
            base = env.unwrapped
            name = model if model is not None else base.setup.model_name
            _, model = load_model(name, tokenizer=base.tokenizer)
        else:
            model = copy.deepcopy(model)
        self.mask_model = model.eval().requires_grad_(False)
        self.k, self.top_p = k, top_p
        self._obs: dict[str, np.ndarray] | None = None
        self._mask: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._obs, self._mask = obs, None
        return obs, info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._obs, self._mask = obs, None
        return obs, reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """``(vocab,)`` bool: the tokens the agent may choose now."""
        if self._obs is None:
            raise gym.error.ResetNeeded("action_masks() called before reset()")
        if self._mask is None:
            self._mask = topk_mask(self.mask_model, self._obs, self.k, self.top_p,
                                   num_actions=int(self.action_space.n))
        return self._mask
