"""Whether a run is learning anything: each iteration's signal metrics, a warning for a stretch
without usable signal, a stop for a reward that never varied, and the difficulty schedule.

A policy gradient learns only from differences between rewards. A GRPO/RLOO group whose samples
all score the same has zero advantage on every token (TRL logs the share of such groups as
``frac_reward_zero_std``); an iteration whose rewards are all equal leaves a value head nothing to
rank; a reward read off a finished answer scores every episode cut at the token budget alike
(TRL's quickstart truncated 97-99% of its completions and trained on zeros). Such a run still looks
busy (the losses move, the KL penalty alone pulls the policy), so :class:`SignalMonitor` says so in
the log, and stops a run whose every reward has been one value since its first iteration.

:class:`DifficultySchedule` is the usual cure for all-zero groups on a verifiable task: start on the
easiest problems and move up a level when the policy solves enough of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from agents.distributed import Dist
from textenv.cli import RunFailed

__all__ = ["DifficultySchedule", "SignalMonitor", "SignalStats", "signal_stats"]

logger = logging.getLogger(__name__)

_ZERO_STD = 1e-8  # a group's reward std at or below this counts as zero (TRL: torch.isclose(std, 0))


class SignalStats(NamedTuple):
    """One iteration's task rewards (before scaling and penalties) seen as a learning signal, over
    every process's episodes."""

    reward_min: float
    reward_max: float
    frac_truncated: float  # episodes cut at the token budget (no EOS)
    accuracy: float  # share of rewards >= 1: a verifier's correct answers
    frac_zero_std_groups: float | None  # groups of one prompt's samples with one reward for all (None: no groups)
    group_reward_std: float | None  # the mean of each group's reward std (None: no groups)

    @property
    def identical(self) -> bool:
        """Every episode of the iteration got the same reward."""
        return self.reward_max - self.reward_min <= _ZERO_STD

    def metrics(self) -> dict[str, float]:
        """The iteration's ``signal/`` keys and the reward's range (``charts/``); the group keys
        only where groups exist (``samples_per_prompt >= 2``)."""
        out = {"charts/reward_min": self.reward_min, "charts/reward_max": self.reward_max,
               "signal/frac_truncated": self.frac_truncated}
        if self.frac_zero_std_groups is not None and self.group_reward_std is not None:
            out["signal/frac_zero_std_groups"] = self.frac_zero_std_groups
            out["signal/group_reward_std"] = self.group_reward_std
        return out


def signal_stats(rewards: np.ndarray, ended: np.ndarray, group_size: int, dist: Dist | None = None) -> SignalStats:
    """:class:`SignalStats` of ``rewards`` ``(N,)`` (ordered group by group, ``group_size`` samples of
    one prompt each; 1: no groups) and ``ended`` ``(N,)`` (the agent ended the episode with EOS).
    Under data parallelism each process holds whole groups of the same count, so the shares are
    means over processes and the range is the range of every process's."""
    dist = dist or Dist()
    rewards = np.asarray(rewards, dtype=np.float64)
    bounds = dist.gather([float(rewards.min()), float(rewards.max())])
    zero_std = group_std = None
    if group_size >= 2:
        stds = rewards.reshape(-1, group_size).std(1)
        zero_std = dist.mean(float(np.mean(stds <= _ZERO_STD)))
        group_std = dist.mean(float(np.mean(stds)))
    return SignalStats(reward_min=min(bounds[0::2]), reward_max=max(bounds[1::2]),
                       frac_truncated=dist.mean(float(np.mean(~np.asarray(ended, dtype=bool)))),
                       accuracy=dist.mean(float(np.mean(rewards >= 1.0))),
                       frac_zero_std_groups=zero_std, group_reward_std=group_std)


class SignalMonitor:
    """Counts the iterations without usable signal: more than ``max_zero_std_groups`` of the groups
    with one reward for all their samples (group advantages only: GAE's baseline is the value head),
    or every reward of the iteration equal (any advantage). ``patience`` such iterations in a row
    log one warning (one per stretch: a new stretch warns again); a reward that was one value in
    every episode of the first ``patience`` iterations (counted again when a difficulty schedule
    moves up) stops the run with :class:`textenv.cli.RunFailed`, as its policy could only follow
    the KL penalty.

    ``budget``: the episodes' token budget, named when truncation is the likely cause. The counts
    are part of a checkpoint (:meth:`state_dict`), so a resumed run judges as the uninterrupted one."""

    def __init__(self, patience: int, max_zero_std_groups: float, group_advantage: bool, budget: int) -> None:
        self.patience, self.max_zero_std_groups = patience, max_zero_std_groups
        self.group_advantage, self.budget = group_advantage, budget
        self.streak = 0  # consecutive iterations without usable signal
        self.observed = 0  # iterations observed since the run started
        self.constant: float | None = None  # the one reward every episode has had so far
        self.varied = False  # some reward differed from another since the run started

    def _no_signal(self, stats: SignalStats) -> bool:
        if stats.identical:
            return True
        return (self.group_advantage and stats.frac_zero_std_groups is not None
                and stats.frac_zero_std_groups > self.max_zero_std_groups)

    def _advice(self, stats: SignalStats) -> str:
        """What to try, the likeliest cause first."""
        tips = ["check that the reward scores this task's replies (--reward, --reward-model)"]
        if stats.frac_truncated >= 0.5:
            tips.insert(0, f"{stats.frac_truncated:.0%} of the episodes were cut at the {self.budget}-token budget "
                           f"(a reward read off a finished answer scores them all alike): raise --max-new-tokens")
        tips.append("on TextReasoning-v0, start easier with --difficulty-schedule" if stats.accuracy < 0.5 else
                    "the problems may be too easy: raise the env's difficulty")
        return "; ".join(tips)

    def observe(self, it: int, stats: SignalStats, task_changed: bool = False) -> None:
        """Judge iteration ``it``: warn when it completes a stretch of ``patience`` iterations
        without signal; raise :class:`RunFailed` when the reward has been one value all run.
        ``task_changed``: ``it`` was the last iteration on the old task (a difficulty schedule moved
        up, the cure for a reward that no longer varies): the judgement starts again after it."""
        if task_changed:
            self.streak, self.observed, self.constant, self.varied = 0, 0, None, False
            return
        self.observed += 1
        if not self.varied:
            self.varied = not stats.identical or (self.constant is not None and stats.reward_min != self.constant)
            self.constant = None if self.varied else stats.reward_min
        self.streak = self.streak + 1 if self._no_signal(stats) else 0
        if self.streak == self.patience:
            what = ("every episode got the same reward" if stats.identical else
                    f"{stats.frac_zero_std_groups:.0%} of the groups got one reward for all their samples")
            logger.warning("no usable learning signal in iterations %d-%d (%s: no advantage to learn from); %s",
                           it - self.patience + 1, it, what, self._advice(stats))
        if not self.varied and self.observed >= self.patience:
            raise RunFailed(f"PPO stopped: every episode of all {self.observed} iterations so far got the reward "
                            f"{self.constant:g}, so nothing can be learned; {self._advice(stats)}; no final/ written")

    def state_dict(self) -> dict[str, Any]:
        return {"streak": self.streak, "observed": self.observed, "constant": self.constant, "varied": self.varied}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """A checkpoint's counts; one written before they existed has an unknown past: the reward is
        then taken to have varied (no stop), and the streak starts again."""
        state = state or {"varied": True}
        self.streak, self.observed = int(state.get("streak", 0)), int(state.get("observed", 0))
        self.constant, self.varied = state.get("constant"), bool(state.get("varied", True))


class DifficultySchedule:
    """A curriculum over a task's difficulty ``levels`` (easiest first): training starts at the
    first and moves up one level when the share of correct answers (reward >= 1) over the last
    ``window`` iterations at the current level reaches ``threshold``; the last level is kept.
    Only the iterations' shares decide, so a resumed run (:meth:`state_dict`) moves as the
    uninterrupted one."""

    def __init__(self, threshold: float, levels: Sequence[int], window: int) -> None:
        if not levels:
            raise ValueError("a difficulty schedule needs at least one level")
        self.threshold, self.levels, self.window = threshold, tuple(levels), window
        self.level = self.levels[0]
        self.recent: list[float] = []  # the accuracies of the last iterations at this level

    def observe(self, accuracy: float) -> bool:
        """Record one iteration's accuracy; True when the level rose (the train env must follow)."""
        self.recent = [*self.recent, accuracy][-self.window:]
        at = self.levels.index(self.level)
        if len(self.recent) < self.window or float(np.mean(self.recent)) < self.threshold or at + 1 == len(self.levels):
            return False
        logger.info("difficulty %d -> %d: %.0f%% correct over the last %d iterations", self.level,
                    self.levels[at + 1], 100 * float(np.mean(self.recent)), self.window)
        self.level, self.recent = self.levels[at + 1], []
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["level"] not in self.levels:
            raise ValueError(f"checkpoint difficulty {state['level']!r} is not one of the levels {self.levels}")
        self.level, self.recent = state["level"], [float(x) for x in state["recent"]]
