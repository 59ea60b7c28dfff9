"""Training recipes (train.config): one validated base for SFT and GRPO-PTR; every mistake is
refused with the key named, and the shipped recipes load."""

import json
from pathlib import Path

import pytest

from train import grpo_ptr, sft

RECIPES = Path(__file__).resolve().parents[1] / "train" / "recipes"
BASE = {"model": "m", "data": "d.jsonl", "output_dir": "out"}


def write(tmp_path, **keys):
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps({**BASE, **keys}))
    return path


def test_the_shipped_recipes_load_with_named_reward_weights():
    s = sft.Recipe.load(RECIPES / "sft_prosody.yaml")
    g = grpo_ptr.Recipe.load(RECIPES / "grpo_ptr.yaml")
    assert s.mode == g.mode == "qlora" and s.learning_rate == 1e-4 and g.learning_rate == 1e-5
    assert g.reward_weights == {"format": 0.3, "outcome": 1.0, "reasoning": 0.5}
    assert g.generation.temperature == 1.0 and g.generation.max_new_tokens == 512


@pytest.mark.parametrize("cls", [sft.Recipe, grpo_ptr.Recipe])
@pytest.mark.parametrize("keys,named", [
    ({"mode": "qlroa"}, "mode"),  # once silently trained LoRA
    ({"train_parts": ["llm", "decoder"]}, "train_parts"),
    ({"train_parts": "llm"}, "train_parts"),
    ({"lora_r": 8.5}, "lora_r"),
    ({"lora_r": 0}, "lora_r"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"learning_rate": 0}, "learning_rate"),
    ({"gradient_checkpointing": "yes"}, "gradient_checkpointing"),
    ({"lora_dropout": 1.0}, "lora_dropout"),
    ({"seed": None}, "seed"),
    ({"learning_rat": 1e-4}, "learning_rat"),
])
def test_a_bad_key_or_value_is_refused_with_the_key_named(tmp_path, cls, keys, named):
    with pytest.raises(ValueError, match=named):
        cls.load(write(tmp_path, **keys))


def test_numbers_written_as_yaml_strings_are_numbers(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: m\ndata: d\noutput_dir: o\nlearning_rate: 1e-6\nmax_steps: 10\n")
    r = grpo_ptr.Recipe.load(path)
    assert r.learning_rate == 1e-6 and isinstance(r.learning_rate, float) and r.max_steps == 10


def test_a_missing_required_key_is_named(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: m\ndata: d\n")
    with pytest.raises(ValueError, match="output_dir"):
        sft.Recipe.load(path)


@pytest.mark.parametrize("keys,named", [
    ({"tasks": {"emotion": 1.0, "poetry": 0.5}}, "poetry"),
    ({"tasks": {"emotion": 0.0}}, "tasks"),
    ({"batch_size": 0}, "batch_size"),
    ({"merge": True, "mode": "qlora"}, "merge"),
])
def test_sft_specific_checks(tmp_path, keys, named):
    with pytest.raises(ValueError, match=named):
        sft.Recipe.load(write(tmp_path, **keys))


@pytest.mark.parametrize("keys,named", [
    ({"reward_weights": {"format": 0.3, "outcom": 1.0}}, "outcom"),
    ({"reward_weights": [0.3, 1.0, 0.5]}, "reward_weights"),  # by name now, not by position
    ({"reasoning_weights": {"fluency": 1.0}}, "fluency"),
    ({"reasoning_weights": {"factual_alignment": 0.5}}, "sum to 1"),
    ({"learning_rate": "inf"}, "learning_rate"),
    ({"num_generations": 1}, "num_generations"),
    ({"temperature": 0.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
])
def test_grpo_specific_checks(tmp_path, keys, named):
    with pytest.raises(ValueError, match=named):
        grpo_ptr.Recipe.load(write(tmp_path, **keys))


def test_reward_weights_not_given_keep_the_papers(tmp_path):
    r = grpo_ptr.Recipe.load(write(tmp_path, reward_weights={"reasoning": 0.25}))
    assert r.reward_weights == {"format": 0.3, "outcome": 1.0, "reasoning": 0.25}


def test_recipes_made_in_code_are_checked_too():
    with pytest.raises(ValueError, match="mode"):
        sft.Recipe(**BASE, mode="QLoRA")
