"""Judges of reasoning quality: the deterministic prosody-fact judge on literal reasoning, the
model judge's answer parsing and caching."""

import pytest

from engine.audio import from_array
from engine.prosody import analyze, synth
from train.judges import ModelJudge, ProsodyFactJudge, parse_scores
from train.rewards import CRITERIA, reasoning_reward

GROUNDED = ("The speaker's pitch is high and rising towards the end, and the voice is loud. "
            "The pace is fast with no pauses, and the voice quality is clear and steady. "
            "Such an energetic, lively delivery with a rising intonation suggests surprise, "
            "because the quick, high contour conveys sudden excitement rather than fear or anger. "
            "Nothing in the loudness or tempo points to sadness.")
WRONG = ("The pitch is low and falling, the voice is soft and the pace is slow. "
         "This suggests sadness.")


@pytest.fixture(scope="module")
def excited():
    x = synth.harmonic(lambda t: 260 * (420 / 260) ** (t / 2), 2.0, syllable_hz=6.0, level_dbfs=-12)
    return analyze(from_array(x, 16000))


def test_fact_judge_rewards_grounded_reasoning(excited):
    judge = ProsodyFactJudge()
    good, bad = judge.score(GROUNDED, {}, excited), judge.score(WRONG, {}, excited)
    assert set(good) == set(CRITERIA) and all(1 <= v <= 5 for v in good.values())
    assert good["factual_alignment"] > 4 and bad["factual_alignment"] < 2
    assert good["caption_completeness"] == 5.0  # pitch, loudness, pace, intonation, voice
    assert good["interpretative_quality"] == 5.0 and good["fluency_structure"] > 4
    assert bad["fluency_structure"] < good["fluency_structure"]  # 19 words is short
    assert reasoning_reward(good) > reasoning_reward(bad)


def test_fact_judge_uses_record_labels_without_audio():
    judge = ProsodyFactJudge()
    record = {"pitch_level": "low", "energy_level": "low", "speed_level": "slow", "intonation": "falling"}
    assert judge.score(WRONG, record)["factual_alignment"] == 5.0
    assert judge.score(GROUNDED, record)["factual_alignment"] < 2
    assert judge.score("It is sad.", record)["factual_alignment"] == 2.0  # no cue cited


def test_level_claims_are_held_to_the_records_calibrated_labels_before_absolute_norms():
    """Once: with a report, the judge used absolute pooled norms, which call most women's voices
    "high" and punished correct reasoning. Now a level the record's labels calibrate (per corpus,
    pitch per corpus and gender) decides; the report, placed for the record's gender, the rest."""
    judge = ProsodyFactJudge()
    woman = analyze(from_array(synth.harmonic(230, 2.0, syllable_hz=4.0), 16000), voice="female")
    said = "The pitch is high."
    assert judge.score(said, {"gender": "Female"}, woman)["factual_alignment"] == 1.0  # normal for her
    calibrated = {"gender": "Female", "pitch_level": "high"}  # high within her corpus and gender
    assert judge.score(said, calibrated, woman)["factual_alignment"] == 5.0
    loud = "She speaks loudly and the pitch rises."
    assert judge.score(loud, {"energy_level": "high"}, woman)["factual_alignment"] == 1.0 + 4.0 * 0.5
    assert judge.score("She speaks loudly.", {}, woman)["factual_alignment"] == 2.0  # gain: unchecked


def test_repetition_lowers_fluency():
    judge = ProsodyFactJudge()
    varied = judge.score(GROUNDED, {})["fluency_structure"]
    looping = judge.score(" ".join(["the pitch is high"] * 20), {})["fluency_structure"]
    assert looping < varied - 1


@pytest.mark.parametrize("text,ok", [
    ('{"factual_alignment": 4, "interpretative_quality": 3, "caption_completeness": 5, '
     '"fluency_structure": 2}', True),
    ('Sure! Here it is:\n```json\n{"factual_alignment": 4.5, "interpretative_quality": 3, '
     '"caption_completeness": 5, "fluency_structure": 9}\n```', True),
    ("factual_alignment: 2\ninterpretative_quality - 3\ncaption_completeness = 4\n"
     "fluency_structure: 5", True),
    ('{"factual_alignment": 4}', False), ("no idea", False)])
def test_model_answers_are_parsed_robustly(text, ok):
    scores = parse_scores(text)
    assert (scores is not None) == ok
    if ok:
        assert set(scores) == set(CRITERIA) and all(1 <= v <= 5 for v in scores.values())
    if "9}" in text:
        assert scores["fluency_structure"] == 5.0  # clamped


def test_model_judge_runs_a_local_model_and_caches(tiny_checkpoint, tmp_path, monkeypatch):
    """The tiny checkpoint's language model as the judge: its answers are noise, so the score is
    None (callers fall back to the fact judge), but the whole path runs and the cache is used."""
    # a text-only causal LM with the tiny tokenizer: the thinker's text model, saved as Qwen2
    from transformers import AutoConfig, Qwen2Config, Qwen2ForCausalLM
    thinker_text = AutoConfig.from_pretrained(tiny_checkpoint).thinker_config.text_config
    cfg = Qwen2Config(vocab_size=thinker_text.vocab_size, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    judge_dir = tmp_path / "judge"
    Qwen2ForCausalLM(cfg).save_pretrained(judge_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (judge_dir / name).write_bytes((tiny_checkpoint / name).read_bytes())
    cache = tmp_path / "cache.json"
    judge = ModelJudge(str(judge_dir), device="cpu", cache_path=str(cache), max_new_tokens=8)
    first = judge.score(GROUNDED, {"pitch_level": "high"})
    assert first is None and cache.exists() and len(judge.cache) == 1
    again = ModelJudge(str(judge_dir), device="cpu", cache_path=str(cache))
    calls = []
    monkeypatch.setattr(again.model, "generate", lambda **kw: calls.append(kw))
    assert again.score(GROUNDED, {"pitch_level": "high"}) is None and calls == []  # from the cache
