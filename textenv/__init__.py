"""textenv: reinforcement learning for language models, the Gymnasium way.

``import textenv`` registers the tasks below; ``gym.make("textenv:TextSummarize-v0")`` imports
this module itself. Entry points are strings, so nothing heavy is imported until an env is made.
"""

from gymnasium.envs.registration import register

__version__ = "0.1.0"

_ENV = "textenv.env:TextEnv"
_VEC = "textenv.vector:TextVectorEnv"

register(id="TextSummarize-v0", entry_point=_ENV, vector_entry_point=_VEC,
         kwargs={"task": "textenv.task_factories:summarize"})
register(id="TextSentiment-v0", entry_point=_ENV, vector_entry_point=_VEC,
         kwargs={"task": "textenv.task_factories:sentiment"})
register(id="TextReasoning-v0", entry_point=_ENV, vector_entry_point=_VEC,
         kwargs={"task": "textenv.task_factories:reasoning"})
# Arithmetic a 135M model cannot do in its head (reasoning-gym's defaults, level 5), without and with a
# calculator: the tools suite's pair (evals.run --suite tools). 104 tokens after the prompt hold the
# longest test problem's call, result and answer (a demonstration), with none to spare for a retry.
register(id="TextReasoningHard-v0", entry_point=_ENV, vector_entry_point=_VEC,
         kwargs={"task": "textenv.task_factories:reasoning", "difficulty": 5})
register(id="TextReasoningTools-v0", entry_point=_ENV, vector_entry_point=_VEC,
         kwargs={"task": "textenv.task_factories:reasoning", "difficulty": 5, "tools": ("calculator",),
                 "max_new_tokens": 104})
register(id="TextQA-v0", entry_point=_ENV, vector_entry_point=_VEC,
         kwargs={"task": "textenv.task_factories:qa"})
register(id="TextDialogue-v0", entry_point=_ENV, vector_entry_point=_VEC,
         kwargs={"task": "textenv.task_factories:dialogue"})
register(id="TextCount-v0", entry_point=_ENV, vector_entry_point=_VEC,
         kwargs={"task": "textenv.task_factories:count"})

ENV_IDS = ("TextSummarize-v0", "TextSentiment-v0", "TextReasoning-v0", "TextReasoningHard-v0", "TextReasoningTools-v0",
           "TextQA-v0", "TextDialogue-v0", "TextCount-v0")

__all__ = ["ENV_IDS", "__version__"]
