"""textenv tasks and rewards inside TRL (agents.trl_adapter): the dataset, the reward adapter, and a
few real GRPOTrainer steps on the tiny model."""

import json

import gymnasium as gym
import pytest

from agents.trl_adapter import task_dataset, trl_reward
from textenv.rewards import RewardError


@pytest.fixture(scope="module")
def count_setup():
    env = gym.make("TextCount-v0", model="tiny")
    return env.unwrapped.setup


def test_dataset_rows_are_the_envs_prompts_with_references_and_metadata(count_setup):
    ds = task_dataset("TextCount-v0", "validation", model="tiny", tokenizer=count_setup.tokenizer, limit=5)
    setup = gym.make("TextCount-v0", model="tiny", split="validation", tokenizer=count_setup.tokenizer).unwrapped.setup
    assert len(ds) == 5 and set(ds.column_names) == {"prompt", "references", "metadata", "index"}
    for row in ds:
        ex = setup.examples[row["index"]]
        assert row["prompt"] == setup.prompt_text(ex)
        assert row["references"] == list(ex.references) and json.loads(row["metadata"]) == dict(ex.metadata)
    with pytest.raises(ValueError, match="limit"):
        task_dataset("TextCount-v0", limit=0, model="tiny", tokenizer=count_setup.tokenizer)


def test_the_adapted_reward_scores_what_the_env_scores(count_setup):
    ds = task_dataset("TextCount-v0", "train", model="tiny", tokenizer=count_setup.tokenizer, limit=3)
    texts = [" 5 6 7 8 9 10 11", " 3 2 1", " 45 46 47 48"]
    reward = trl_reward("TextCount-v0")
    assert reward.__name__ == "increasing"
    got = reward(prompts=ds["prompt"], completions=texts, references=ds["references"], metadata=ds["metadata"],
                 trainer_state=None)
    expected = [count_setup.score([count_setup.completion(i, count_setup.tokenizer.encode(t), True)])[0][0]
                for i, t in enumerate(texts)]
    assert got == pytest.approx(expected) and got[0] > got[1]
    conversational = reward(prompts=[[{"role": "user", "content": p}] for p in ds["prompt"]],
                            completions=[[{"role": "assistant", "content": t}] for t in texts],
                            references=ds["references"], metadata=ds["metadata"])
    assert conversational == got
    with pytest.raises(RewardError, match="non-finite"):
        trl_reward(lambda cs: [float("nan")] * len(cs))(prompts=["p"], completions=["c"])


def test_a_few_grpo_trainer_steps_on_the_tiny_model(tmp_path, count_setup):
    trl = pytest.importorskip("trl")
    from textenv.models import load_model

    _, model = load_model("tiny", tokenizer=count_setup.tokenizer)
    ds = task_dataset("TextCount-v0", "train", model="tiny", tokenizer=count_setup.tokenizer, limit=16)
    args = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2,
                          max_completion_length=8, max_steps=2, report_to=[], use_cpu=True, logging_steps=1,
                          save_strategy="no", bf16=False, learning_rate=1e-3)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[trl_reward("TextCount-v0")], train_dataset=ds, args=args,
                              processing_class=count_setup.tokenizer)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/increasing/mean" in h]
    assert len(logs) == 2 and all(0.0 <= h["rewards/increasing/mean"] <= 1.0 for h in logs)


def test_the_vs_trl_benchmark_runs_each_side_in_its_own_process():
    pytest.importorskip("trl")
    from evals.benchmarks.vs_trl import main

    result = main(["--model", "tiny", "--env", "TextCount-v0", "--prompts", "1", "--samples", "2",
                   "--max-new-tokens", "4", "--iterations", "2"])
    assert result["textenv"] > 0 and result["trl"] > 0
    assert result["ratio"] == pytest.approx(result["textenv"] / result["trl"])
    assert 0.1 < result["textenv_peak_rss_gb"] < 20 and 0.1 < result["trl_peak_rss_gb"] < 20  # each child's own


_TINY_PPO = ["--algo", "ppo", "--model", "tiny", "--env", "TextCount-v0", "--prompts", "2", "--samples", "1",
             "--max-new-tokens", "4", "--iterations", "2"]


def test_the_vs_trl_ppo_textenv_side_trains_on_a_built_reward_model():
    pytest.importorskip("trl")
    from evals.benchmarks.vs_trl import main

    result = main([*_TINY_PPO, "--side", "textenv"])
    assert result["median"] > 0 and 0.1 < result["peak_rss_gb"] < 20


def test_the_vs_trl_ppo_trl_side_runs_where_trl_has_ppo_and_says_what_to_install_where_not():
    pytest.importorskip("trl")
    from evals.benchmarks.vs_trl import main

    try:
        import trl.experimental.ppo  # noqa: F401  (TRL <= 1.12)
    except ImportError:
        with pytest.raises(ImportError, match=r"trl.experimental.ppo \(1.12 or earlier; this is "):
            main([*_TINY_PPO, "--side", "trl"])
    else:
        assert main([*_TINY_PPO, "--side", "trl"])["median"] > 0


def test_the_vs_trl_benchmark_refuses_a_reward_model_for_grpo_and_a_group_of_one():
    pytest.importorskip("trl")
    from evals.benchmarks.vs_trl import main

    with pytest.raises(ValueError, match="--reward-model is for --algo ppo"):
        main(["--model", "tiny", "--reward-model", "/nonexistent"])
    with pytest.raises(ValueError, match=r"--samples >= 2 \(--algo grpo\)"):
        main(["--model", "tiny", "--samples", "1"])


def test_a_plain_string_reference_counts_as_one_reference_not_its_characters():
    text = "the cat sat on the mat"
    reward = trl_reward("rougeL")
    assert reward(prompts=["p"], completions=[text], references=[text]) == pytest.approx([1.0])
    assert reward(prompts=["p"], completions=[text], references=[[text]]) == pytest.approx([1.0])
    assert reward(prompts=["p"], completions=[text], references=[None]) == reward(prompts=["p"], completions=[text])
    with pytest.raises(TypeError, match="references must be a string or a list of strings"):
        reward(prompts=["p"], completions=[text], references=[[1, 2]])
