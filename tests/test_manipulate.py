"""PSOLA what-if prosody, measured back with analyze()."""

import numpy as np
import pytest

from engine.audio import AudioError, from_array
from engine.prosody import analyze, synth
from engine.prosody.manipulate import manipulate


@pytest.fixture(scope="module")
def speech(espeak_sentence):
    x, sr = espeak_sentence
    clip = from_array(x, sr, source="sentence.wav")
    return clip, analyze(clip)


@pytest.mark.parametrize("shift", [4.0, -4.0, 7.0])
def test_pitch_shift_moves_the_median_by_that_many_semitones(speech, shift):
    clip, base = speech
    out = analyze(manipulate(clip, pitch_shift_st=shift))
    assert 12 * np.log2(out.pitch.median_hz / base.pitch.median_hz) == pytest.approx(shift, abs=0.3)
    assert out.pitch.range_st == pytest.approx(base.pitch.range_st, abs=1.0)


def test_range_zero_gives_a_flat_contour(speech):
    clip, base = speech
    out = analyze(manipulate(clip, pitch_range=0.0))
    assert base.pitch.range_st > 3.0
    assert out.pitch.range_st < 0.6
    assert out.intonation.label == "flat"
    assert out.pitch.median_hz == pytest.approx(base.pitch.median_hz, rel=0.02)


def test_range_two_doubles_the_semitone_spread(speech):
    clip, base = speech
    out = analyze(manipulate(clip, pitch_range=2.0))
    assert out.pitch.range_st == pytest.approx(2 * base.pitch.range_st, rel=0.15)


@pytest.mark.parametrize("tempo", [1.25, 0.8])
def test_tempo_changes_duration_and_rate(speech, tempo):
    clip, base = speech
    out_clip = manipulate(clip, tempo=tempo)
    out = analyze(out_clip)
    assert clip.duration_s / out_clip.duration_s == pytest.approx(tempo, rel=0.01)
    assert out.pitch.median_hz == pytest.approx(base.pitch.median_hz, rel=0.02)
    assert out.rate.articulation_rate_sps / base.rate.articulation_rate_sps == pytest.approx(tempo, rel=0.12)


@pytest.mark.parametrize("gain", [-10.0, 6.0])
def test_gain_moves_the_level_by_the_gain(speech, gain):
    clip, base = speech
    out = analyze(manipulate(clip, gain_db=gain))
    assert out.energy.level_dbfs - base.energy.level_dbfs == pytest.approx(gain, abs=0.2)


def test_combined_changes_and_source_name(speech):
    clip, base = speech
    out_clip = manipulate(clip, pitch_shift_st=3.0, tempo=1.5, gain_db=-3.0)
    out = analyze(out_clip)
    assert out_clip.source == "sentence.wav (manipulated)"
    assert out_clip.sample_rate_hz == 16_000
    assert 12 * np.log2(out.pitch.median_hz / base.pitch.median_hz) == pytest.approx(3.0, abs=0.3)
    assert clip.duration_s / out_clip.duration_s == pytest.approx(1.5, rel=0.01)
    assert out.energy.level_dbfs - base.energy.level_dbfs == pytest.approx(-3.0, abs=0.6)


def test_pitch_change_of_an_unvoiced_clip_is_a_clear_error():
    noise = from_array(0.05 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    with pytest.raises(AudioError, match="no voiced speech"):
        manipulate(noise, pitch_shift_st=2.0)
    assert manipulate(noise, gain_db=-6.0).rms_dbfs == pytest.approx(noise.rms_dbfs - 6.0, abs=0.1)


@pytest.mark.parametrize("kw", [{"pitch_shift_st": 30}, {"tempo": 0}, {"tempo": float("nan")},
                                {"pitch_range": -1}, {"gain_db": 100}, {"tempo": "fast"}])
def test_settings_out_of_range_are_rejected(kw):
    clip = from_array(synth.harmonic(150, 1.0), 16000)
    with pytest.raises(ValueError, match=next(iter(kw))):
        manipulate(clip, **kw)


@pytest.mark.parametrize("tilt,label", [(10.0, "rising"), (-10.0, "falling")])
def test_tilt_turns_a_level_contour_into_a_rise_or_a_fall(tilt, label):
    level = from_array(synth.harmonic(150, 2.0, syllable_hz=4.0), 16000)
    out = analyze(manipulate(level, tilt_st=tilt))
    assert analyze(level).intonation.label == "flat"
    assert out.intonation.label == label
    assert out.intonation.delta_st == pytest.approx(tilt * 0.75, abs=1.5)  # quarter medians
