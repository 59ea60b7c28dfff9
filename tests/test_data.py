"""Training samples for the four SFT tasks, built from labelled records."""

import json

import numpy as np
import pytest

from engine.reasoning.prompts import QUESTION, SYSTEM_PROMPT
from train.data import assistant_text, build_samples, sample_audio


@pytest.fixture(scope="module")
def records(labelled_corpus):
    return [json.loads(line) for line in labelled_corpus.read_text().splitlines()]


def test_recipe_proportions_and_determinism(records):
    recipe = {"emotion": 2, "attributes": 1, "comparative": 1}
    a = build_samples(records, recipe, n=40, seed=3)
    assert a == build_samples(records, recipe, n=40, seed=3)
    assert a != build_samples(records, recipe, n=40, seed=4)
    tasks = [s["task"] for s in a]
    assert len(a) == 40 and tasks.count("emotion") == 20 and tasks.count("comparative") == 10
    with pytest.raises(ValueError, match="unknown tasks"):
        build_samples(records, {"karaoke": 1.0})


def test_emotion_samples_use_the_released_prompt_and_answer_format(records):
    s = build_samples(records, {"emotion": 1}, seed=0)[0]
    system, user, assistant = s["messages"]
    assert system["content"][0]["text"] == SYSTEM_PROMPT
    assert user["content"][0] == {"type": "audio"} and user["content"][1]["text"] == "<audio>" + QUESTION
    record = next(r for r in records if r["audio_path"] == s["audio"]["audio_path"])
    assert assistant_text(s) == f"<think>{record['cot_analysis']}</think><answer>{record['emotion']}</answer>"


def test_attribute_answers_are_the_measured_labels(records):
    samples = build_samples(records, {"attributes": 1}, seed=0)
    by_path = {r["audio_path"]: r for r in records}
    fields = {"pitch": "pitch_level", "loud": "energy_level", "rate": "speed_level", "intonation": "intonation"}
    for s in samples:
        question = s["messages"][-2]["content"][1]["text"]
        field = next(f for key, f in fields.items() if key in question)
        assert assistant_text(s) == by_path[s["audio"]["audio_path"]][field]
        assert question.split("options: ")[1].count(assistant_text(s)) >= 1


def test_comparative_samples_hold_versions_whose_order_is_measurable(records, labelled_corpus):
    from engine.audio import from_array
    from engine.prosody import analyze

    base = labelled_corpus.parent
    samples = [s for s in build_samples(records, {"comparative": 1}, seed=5)
               if s["id"].endswith("pitch") and "Which version" in s["messages"][-2]["content"][1]["text"]]
    s = samples[0]
    x = sample_audio(s, base)
    original = sample_audio({"audio": {"audio_path": s["audio"]["audio_path"]}}, base)
    k = len(s["audio"]["variants"])
    assert len(x) > k * len(original) * 0.9  # the versions, joined by silences
    # cut the versions apart at the silences and check the answer against measured pitch
    parts, start, gap = [], 0, int(0.4 * 16000)
    for _ in s["audio"]["variants"]:
        n = len(original)
        parts.append(x[start:start + n])
        start += n + gap
    medians = [analyze(from_array(p, 16000)).pitch.median_hz for p in parts]
    assert int(assistant_text(s)) == int(np.argmax(medians)) + 1


def test_captions_describe_what_was_measured(records):
    s = build_samples(records, {"caption": 1}, seed=0)[0]
    record = next(r for r in records if r["audio_path"] == s["audio"]["audio_path"])
    text = assistant_text(s)
    assert text.startswith(f"A {record['gender'].lower()} speaker speaks with")
    assert record["speed_level"] in text or "moderate pace" in text
