"""Benchmarks, kept apart from the eval suite (as TRL keeps its scripts in ``examples/`` and nanoGPT
its ``bench.py``). Each prints numbers measured side by side in one run and asserts nothing; each
takes ``--device`` and ``--precision``.

- ``python -m evals.benchmarks.env``: is the env negligible next to the model (env-only vs model
  token-steps/s)?
- ``python -m evals.benchmarks.rollout``: rollout tokens/s of the KV-cached policy stepping the
  vector env vs ``model.generate`` vs naive re-forwarding, at batch 8, 64 and 256.
- ``python -m evals.benchmarks.sb3``: stable-baselines3 PPO / MaskablePPO / RecurrentPPO against
  ``agents.ppo`` on the same task and budget.
"""
