"""Prosodic claims in the reasoning, checked against measured prosody (literal sentences, real
analyses of synthetic signals whose prosody is known)."""

import numpy as np
import pytest

from engine.audio import from_array
from engine.grounding import agreement, check, find_claims
from engine.prosody import analyze, synth


def report_of(x, voice="auto"):
    return analyze(from_array(x, 16000), voice=voice)


@pytest.fixture(scope="module")
def high_rising_loud():
    # 200 -> 420 Hz over 2 s (12.8 st, p5-p95 ~11.5 st: wide), -12 dBFS while speaking; a woman
    return report_of(synth.harmonic(lambda t: 200 * (420 / 200) ** (t / 2), 2.0, syllable_hz=4.0,
                                    level_dbfs=-12.0), voice="female")


@pytest.fixture(scope="module")
def low_flat_soft():
    return report_of(synth.harmonic(90.0, 2.0, syllable_hz=4.0, level_dbfs=-36.0))


@pytest.fixture(scope="module")
def paused():
    v = synth.harmonic(150, 1.0, syllable_hz=4.0)
    return report_of(np.concatenate([v, synth.silence(0.6), v]))


def verdicts(claims):
    return [(c.attribute, c.value, c.negated, c.verdict) for c in claims]


def test_claims_that_match_the_audio_are_supported(high_rising_loud):
    claims = check("The pitch is high and rising, and the voice is loud, with a wide pitch range.",
                   high_rising_loud)
    assert verdicts(claims) == [("pitch_level", "high", False, "supported"),
                                ("contour", "rising", False, "supported"),
                                ("loudness", "loud", False, "not measured"),
                                ("pitch_range", "wide", False, "supported")]
    assert claims[0].measured == "median 290 Hz (high for a woman)"
    assert agreement(claims) == 1.0


def test_pitch_claims_are_checked_for_the_reports_voice_type():
    """230 Hz is high for a man and ordinary for a woman; with no voice type assumed (290 Hz
    fits a woman's raised voice, a child, a man's shout) a pitch claim cannot be checked."""
    x = synth.harmonic(230, 1.5, syllable_hz=4.0)
    said = "The pitch is high."
    assert check(said, report_of(x, "male"))[0].verdict == "supported"
    woman = check(said, report_of(x))[0]  # auto: a typical female voice
    assert woman.verdict == "contradicted" and "(normal for a woman)" in woman.measured
    unclear = check(said, report_of(synth.harmonic(290, 1.5, syllable_hz=4.0)))[0]
    assert unclear.verdict == "not measured" and "no level without a voice type" in unclear.measured


def test_the_same_claims_are_contradicted_by_a_low_flat_soft_voice(low_flat_soft):
    claims = check("A high-pitched, loud voice with a rising intonation and wide range.", low_flat_soft)
    assert [c.verdict for c in claims] == ["contradicted", "not measured", "contradicted", "contradicted"]
    assert [c.text for c in claims] == ["high-pitched", "loud", "rising intonation", "wide range"]
    assert agreement(claims) == 0.0
    ok = check("The speaker has a deep voice, speaks softly and in a monotone.", low_flat_soft)
    assert verdicts(ok) == [("pitch_level", "low", False, "supported"),
                            ("loudness", "soft", False, "not measured"),
                            ("pitch_range", "narrow", False, "supported")]


def test_loudness_claims_are_shown_beside_the_recording_level_not_judged_by_it(low_flat_soft):
    """The gain sets dBFS as much as the voice: an angry actor recorded quietly is loud at -43
    dBFS, and the reward must not punish the model for saying so."""
    quiet = report_of(synth.harmonic(150, 1.5, level_dbfs=-45.0, syllable_hz=4.0))
    for said in ("He speaks in a loud voice.", "She speaks softly.", "The voice is not loud at all."):
        [c] = check(said, quiet)
        assert c.verdict == "not measured" and "recording level -45 dBFS" in c.measured
        assert "gain" in c.measured
    assert agreement(check("He speaks in a loud voice.", quiet)) is None


def test_negation_flips_the_claim(high_rising_loud, low_flat_soft):
    [c] = check("It is not a high-pitched voice.", low_flat_soft)
    assert c.negated and c.verdict == "supported"
    [c] = check("It is not a high-pitched voice.", high_rising_loud)
    assert c.negated and c.verdict == "contradicted"


def test_pauses(paused, high_rising_loud):
    assert verdicts(check("There is a long pause in the middle.", paused)) == \
        [("pauses", "present", False, "supported")]
    assert check("She speaks without pauses.", paused)[0].verdict == "contradicted"
    assert check("She speaks without pauses.", high_rising_loud)[0].verdict == "supported"
    [c] = check("There are no pauses.", paused)
    assert c.negated and c.verdict == "contradicted" and c.measured.startswith("1 pause")


def test_voice_quality_claims(low_flat_soft):
    rng = np.random.default_rng(0)
    x = synth.harmonic(150, 2.0, syllable_hz=4.0)
    noisy = report_of(x + (0.15 * rng.standard_normal(len(x))).astype(np.float32))  # SNR ~2 dB
    assert check("a breathy, hoarse quality", noisy)[0].verdict == "supported"
    assert check("a breathy, hoarse quality", low_flat_soft)[0].verdict == "contradicted"
    [t] = check("her voice is trembling", low_flat_soft)
    assert t.value == "trembling" and t.verdict == "contradicted" and "jitter" in t.measured
    whisper = report_of((0.05 * rng.standard_normal(32000)).astype(np.float32))
    assert check("She is whispering.", whisper)[0].verdict == "supported"
    assert check("She is whispering.", low_flat_soft)[0].verdict == "contradicted"


def test_silence_leaves_claims_unmeasured():
    silent = report_of(np.zeros(32000, np.float32))
    claims = check("high pitch, loud, fast pace, rising intonation, trembling", silent)
    assert [c.verdict for c in claims] == ["not measured"] * 5
    assert agreement(claims) is None


def test_lexicon_matching_details():
    text = "A fast pace. The high-pitched voice; loudness is high. Speaks quickly, rapidly."
    found = [(a, v, text[s:e]) for a, v, s, e, _ in find_claims(text)]
    assert found == [("pace", "fast", "fast pace"), ("pitch_level", "high", "high-pitched"),
                     ("loudness", "loud", "loudness is high"), ("pace", "fast", "quickly"),
                     ("pace", "fast", "rapidly")]
    assert find_claims("The emotion is happy; the words are about a picnic.") == []
    assert find_claims("LOUD and Rising Intonation")[0][:2] == ("loudness", "loud")


def test_claims_serialise():
    report = report_of(synth.harmonic(150, 1.0, syllable_hz=4.0))
    d = check("loud", report)[0].to_dict()
    assert set(d) == {"text", "start", "end", "attribute", "value", "negated", "verdict", "measured"}


@pytest.mark.parametrize("range_st", [0.5, 2.9, 3.1, 6.4, 8.9, 9.1, 14.0])
def test_the_summary_and_the_claim_check_use_the_same_range_words(high_rising_loud, range_st):
    """A summary saying "moderate (6.4 semitones)" never sits beside a supported "wide range"."""
    from dataclasses import replace

    from engine.prosody import describe

    report = replace(high_rising_loud, pitch=replace(high_rising_loud.pitch, range_st=range_st))
    summary = describe(report)[0]
    wide, narrow = (check(f"The speaker has a {w}.", report)[0].verdict
                    for w in ("wide pitch range", "narrow pitch range"))
    assert ("wide and lively" in summary) == (wide == "supported")
    assert ("narrow, close to a monotone" in summary) == (narrow == "supported")
    assert ("moderate" in summary) == (wide == narrow == "contradicted")


@pytest.mark.parametrize("hnr_db,jitter", [(3.0, 0.002), (6.9, 0.02), (7.1, 0.009), (20.0, 0.011)])
def test_the_summary_and_the_claim_check_use_the_same_voice_words(high_rising_loud, hnr_db, jitter):
    from dataclasses import replace

    from engine.prosody import describe

    report = replace(high_rising_loud,
                     voice=replace(high_rising_loud.voice, hnr_db=hnr_db, jitter_local=jitter))
    voice = describe(report)[-1]
    assert voice.startswith("Voice:")
    assert ("breathy or hoarse" in voice) == (check("a breathy voice", report)[0].verdict == "supported")
    assert ("unsteady" in voice) == (check("a trembling voice", report)[0].verdict == "supported")
