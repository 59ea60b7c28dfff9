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


def test_the_unchanged_version_is_resynthesised_and_its_place_varies(records, labelled_corpus):
    """Once: the unchanged version was the raw clip, and its missing PSOLA artefacts told it apart."""
    samples = build_samples(records, {"comparative": 1}, seed=7)
    places = set()
    for s in samples:
        amounts = [next(iter(v.values())) for v in s["audio"]["variants"]]
        assert all(len(v) == 1 for v in s["audio"]["variants"])  # every version names its change
        if 0.0 in amounts or 1.0 in amounts:
            places.add(next(i for i, a in enumerate(amounts) if a in (0.0, 1.0)))
    assert places == {0, 1, 2}  # first, middle and last all occur
    s = next(s for s in samples if {"tempo": 1.0} in s["audio"]["variants"] or
             {"pitch_shift_st": 0.0} in s["audio"]["variants"])
    x = sample_audio(s, labelled_corpus.parent)
    original = sample_audio({"audio": {"audio_path": s["audio"]["audio_path"]}}, labelled_corpus.parent)
    i = next(i for i, v in enumerate(s["audio"]["variants"]) if next(iter(v.values())) in (0.0, 1.0))
    offset = sum(len(p) for p in _parts(s, labelled_corpus.parent)[:i]) + i * int(0.4 * 16000)
    unchanged = x[offset:offset + len(original)]
    assert len(unchanged) == len(original) and not np.allclose(unchanged, original, atol=1e-4)


def _parts(sample, base):
    from engine.prosody.manipulate import manipulate
    from train.records import load_clip

    clip = load_clip(sample["audio"], base)
    return [manipulate(clip, resynthesize=True, **v).samples for v in sample["audio"]["variants"]]


def test_captions_describe_what_was_measured(records):
    s = build_samples(records, {"caption": 1}, seed=0)[0]
    record = next(r for r in records if r["audio_path"] == s["audio"]["audio_path"])
    text = assistant_text(s)
    assert text.startswith(f"A {record['gender'].lower()} speaker speaks with")
    assert record["speed_level"] in text or "moderate pace" in text


def test_training_scoring_and_evaluation_agree_on_the_label(records):
    """One corpus map for SFT targets, GRPO-PTR and evaluation, and the scores take every
    spelling the targets use (once: targets wrote "contempt", the engine scored only
    "contempt or disgust", and "frustrated" became an angry target by synonym)."""
    from engine.reasoning.parse import parse
    from engine.reasoning.prompts import LABEL_SPELLINGS

    base = dict(records[0])
    disgusted = dict(base, emotion="disgust", dataset="iemocap")
    frustrated = dict(base, emotion="frustrated", dataset="iemocap")
    [target] = build_samples([disgusted], {"emotion": 1}, seed=0)
    written = parse(assistant_text(target)).answer
    assert written == "contempt" and written in LABEL_SPELLINGS["contempt"]
    assert build_samples([frustrated], {"emotion": 1}, seed=0) == []


def test_word_stress_samples(records):
    """The paper's first SFT task (Stress-17K), missing once: which word is stressed."""
    from train.data import STRESS_QUESTION, stressed

    with_stress = [r for r in records if r.get("stressed_words")]
    assert 0.25 * len(records) <= len(with_stress) <= 0.75 * len(records)  # the corpus makes some
    samples = build_samples(records, {"stress": 1}, seed=0)
    assert samples and all(s["task"] == "stress" for s in samples)
    for s in samples:
        record = next(r for r in with_stress if r["audio_path"] == s["audio"]["audio_path"])
        [word] = record["stressed_words"]
        assert word in record["transcription"].split(" ")[record["synthesis"]["emphasis"]]
        assert assistant_text(s) == word
        assert s["messages"][-2]["content"][1]["text"] == STRESS_QUESTION.format(text=record["transcription"])
    stress17k = {"audio_path": "a.wav", "text": "I never said she stole it",
                 "words": ["I", "never", "said", "she", "stole", "it"], "stressed_index": 3}
    assert stressed(stress17k) == ("I never said she stole it", ["she"])
    [s] = build_samples([stress17k], {"stress": 1}, seed=0)
    assert assistant_text(s) == "she"
    assert build_samples([{"audio_path": "a.wav", "transcription": "no stress here"}], {"stress": 1}) == []
