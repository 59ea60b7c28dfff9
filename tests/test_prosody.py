"""Praat prosody analysis on signals whose truth is known (engine.prosody.synth, espeak-ng)."""

import json

import numpy as np
import pytest

from engine.audio import from_array
from engine.prosody import analyze, synth

SR = 16_000


def report(x, sr=SR, **kw):
    return analyze(from_array(np.asarray(x, np.float32), sr), **kw)


def glide(start_hz, end_hz, seconds=2.0, **kw):
    """A syllable-modulated harmonic sound whose F0 moves exponentially from start to end."""
    return synth.harmonic(lambda t: start_hz * (end_hz / start_hz) ** (t / seconds), seconds,
                          syllable_hz=4.0, **kw)


def arch(base_hz, peak_st, seconds=2.0, up=True):
    """F0 rising to +peak_st semitones mid-utterance and back (or the mirror image)."""
    sign = 1 if up else -1
    return synth.harmonic(lambda t: base_hz * 2 ** (sign * peak_st * np.sin(np.pi * t / seconds) / 12),
                          seconds, syllable_hz=4.0)


# --- pitch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("f0", [80.0, 110.0, 150.0, 200.0, 260.0, 330.0])
@pytest.mark.parametrize("kind", ["full", "missing_fundamental", "flat_tilt", "steep_tilt"])
def test_f0_of_harmonic_signals_within_2_percent(f0, kind):
    kw = {"full": {}, "missing_fundamental": {"harmonics": range(2, 12)},
          "flat_tilt": {"tilt_db_per_octave": 0.0}, "steep_tilt": {"tilt_db_per_octave": -12.0}}[kind]
    r = report(synth.harmonic(f0, 1.5, syllable_hz=4.0, **kw))
    assert r.pitch.reliable
    assert r.pitch.median_hz == pytest.approx(f0, rel=0.02)
    assert r.pitch.p5_hz == pytest.approx(f0, rel=0.02)
    assert r.pitch.p95_hz == pytest.approx(f0, rel=0.02)
    assert r.pitch.range_st < 0.5
    assert r.pitch.voiced_fraction > 0.9


def test_pitch_range_in_semitones_matches_a_known_glide():
    # an exponential glide over one octave: p5..p95 covers 90 % of it = 10.8 st
    r = report(glide(120, 240, 3.0))
    assert r.pitch.range_st == pytest.approx(10.8, abs=0.8)
    assert r.pitch.median_hz == pytest.approx(120 * 2 ** 0.5, rel=0.03)


def test_no_octave_errors_on_a_low_male_voice():
    # 70 Hz sits below the second-pass floor of a 55-500 Hz first guess gone wrong; every voiced
    # frame must be near 70 Hz, none halved or doubled
    r = report(synth.harmonic(70.0, 2.0, syllable_hz=3.0, harmonics=range(1, 30)))
    f = r.contours.f0_hz[np.isfinite(r.contours.f0_hz) & r.contours.speech]
    assert f.size > 100
    assert np.all(np.abs(12 * np.log2(f / 70.0)) < 1.0)


def test_octave_repair_moves_isolated_jumps_back():
    from engine.prosody.pitch import repair_octaves

    f = np.full(40, 150.0)
    f[10] = 300.0  # a doubling
    f[25] = 75.0  # a halving
    f[30:33] = np.nan
    out = repair_octaves(f)
    assert out[10] == pytest.approx(150.0) and out[25] == pytest.approx(150.0)
    assert np.isnan(out[30:33]).all()
    np.testing.assert_allclose(np.delete(out, [10, 25, 30, 31, 32]), 150.0)


# --- silence and unmeasurable ----------------------------------------------------------------

def test_digital_silence_is_unmeasurable_not_guessed():
    r = report(np.zeros(SR * 2, np.float32))
    assert r.pitch.median_hz is None and not r.pitch.reliable
    assert r.energy.level_dbfs is None
    assert r.intonation.label == "too_short"
    assert r.rate.articulation_rate_sps is None
    assert r.voice.jitter_local is None and r.voice.hnr_db is None
    assert r.levels.pitch is None and r.levels.energy is None and r.levels.speed is None
    assert not r.contours.speech.any()
    assert np.isnan(r.contours.f0_hz).all()
    assert np.all(r.contours.intensity_db >= -120.0)  # floored, never -300
    json.dumps(r.to_dict())  # NaN-free JSON


def test_noise_has_no_pitch():
    rng = np.random.default_rng(1)
    r = report(0.05 * rng.standard_normal(SR * 2).astype(np.float32))
    assert not r.pitch.reliable
    assert r.intonation.label in ("too_short", "uncertain")


def test_very_short_voicing_is_too_short():
    x = np.concatenate([synth.silence(0.5), synth.harmonic(150, 0.2), synth.silence(0.5)])
    r = report(x)
    assert r.intonation.label == "too_short"
    assert r.intonation.shape is None
    assert r.pitch.median_hz == pytest.approx(150, rel=0.02)  # measured, but from 20 frames:
    assert not r.pitch.reliable and r.levels.pitch is None  # fewer than 25, so no level
    assert r.levels.speed is None


# --- energy ------------------------------------------------------------------------------------

def test_energy_level_is_the_rms_of_speech_in_dbfs():
    r = report(synth.harmonic(150, 2.0, level_dbfs=-23.0))
    assert r.energy.level_dbfs == pytest.approx(-23.0, abs=0.3)


@pytest.mark.parametrize("gain_db", [-12.0, 6.0])
def test_energy_tracks_gain(gain_db):
    x = synth.harmonic(150, 2.0, syllable_hz=4.0, level_dbfs=-26.0)
    base = report(x).energy.level_dbfs
    louder = report(x * 10 ** (gain_db / 20)).energy.level_dbfs
    assert louder - base == pytest.approx(gain_db, abs=0.2)


def test_energy_and_articulation_rate_unchanged_by_silence_padding(espeak_sentence):
    x, sr = espeak_sentence
    plain = report(x, sr)
    padded = report(np.concatenate([np.zeros(sr * 2, np.float32), x, np.zeros(sr * 3, np.float32)]), sr)
    assert padded.energy.level_dbfs == pytest.approx(plain.energy.level_dbfs, abs=0.5)
    assert padded.rate.articulation_rate_sps == pytest.approx(plain.rate.articulation_rate_sps, rel=0.05)
    assert padded.rate.syllables_per_s == pytest.approx(plain.rate.syllables_per_s, rel=0.05)
    assert padded.pitch.median_hz == pytest.approx(plain.pitch.median_hz, rel=0.01)
    assert padded.intonation.label == plain.intonation.label


def test_energy_unchanged_by_noisy_padding(espeak_sentence):
    # low-level room noise rather than digital zeros around the speech
    x, sr = espeak_sentence
    rng = np.random.default_rng(0)

    def noise(s):
        return (10 ** (-65 / 20) * rng.standard_normal(int(s * sr))).astype(np.float32)

    padded = report(np.concatenate([noise(1.5), x, noise(1.5)]), sr)
    plain = report(x, sr)
    assert padded.energy.level_dbfs == pytest.approx(plain.energy.level_dbfs, abs=0.5)
    assert padded.energy.noise_floor_dbfs < -60
    assert padded.energy.snr_db > 30


# --- rate and pauses -----------------------------------------------------------------------------

def test_syllable_rate_counts_amplitude_syllables():
    # 4 syllable-like amplitude bumps per second for 3 s
    r = report(synth.harmonic(140, 3.0, syllable_hz=4.0))
    assert r.rate.articulation_rate_sps == pytest.approx(4.0, abs=0.7)


def test_faster_espeak_speech_has_a_higher_articulation_rate(espeak_sentence):
    text = "Seven slow sailors sang softly beside the silver sea tonight"
    slow = report(*synth.espeak(text, rate_wpm=120))
    fast = report(*synth.espeak(text, rate_wpm=260))
    assert fast.rate.articulation_rate_sps > 1.4 * slow.rate.articulation_rate_sps
    # the same words: a comparable syllable count (espeak's text has 16 syllables)
    assert abs(fast.rate.syllable_count - slow.rate.syllable_count) <= 4
    assert 10 <= slow.rate.syllable_count <= 22


@pytest.mark.parametrize("n", [5, 7, 10])
@pytest.mark.parametrize("ripple_hz, ripple", [(13, 0.0), (13, 0.45), (16, 0.45), (20, 0.45),
                                               (7, 0.2), (8, 0.2), (9, 0.2), (10, 0.2)])
@pytest.mark.parametrize("level_dbfs", [-20.0, -50.0])
def test_syllables_with_ripples_inside_the_vowels_count_once(n, ripple_hz, ripple, level_dbfs):
    """Expressive speech ripples inside a vowel as F0 moves its harmonics across the formants; de
    Jong & Wempe's 2 dB dip counted every ripple (10 syllables with an 8 dB ripple at 13 Hz: 19).
    Covered: ripples faster than 12.5 Hz (inside the 80 ms spacing) of any depth, and slower ones
    up to 3.5 dB; slower, deeper ones look like syllables to any intensity method (analysis.py)."""
    r = report(synth.syllables(n, ripple=ripple, ripple_hz=ripple_hz, level_dbfs=level_dbfs))
    assert r.rate.syllable_count == n
    assert len(r.rate.nuclei_s) == n and all(np.diff(r.rate.nuclei_s) > 0.2)


def test_the_syllable_count_ignores_gain_and_moderate_noise():
    x = synth.syllables(8, ripple=0.3)
    rng = np.random.default_rng(1)
    noisy = x + (np.sqrt(np.mean(x ** 2)) * 10 ** (-20 / 20) * rng.standard_normal(len(x))).astype(np.float32)
    assert report(x).rate.syllable_count == report(x * 10 ** (-35 / 20)).rate.syllable_count == 8
    assert report(noisy).rate.syllable_count == 8


def test_espeak_sentences_are_counted_within_10_percent_of_their_text():
    """Truth: the CMU dictionary's syllables of each text (train.phonemes), at three speaking rates
    and two voices."""
    from train.phonemes import count_syllables

    texts = ["The quick brown fox jumps over the lazy dog.",
             "Nobody knows what happened to the little boat yesterday.",
             "Please call Stella and ask her to bring these things with her from the store."]
    errors = []
    for text in texts:
        truth = count_syllables(text)
        for voice, rate in (("en-us", 140), ("en-us+f3", 175), ("en-us", 230)):
            r = report(*synth.espeak(text, voice=voice, rate_wpm=rate))
            errors.append(abs(r.rate.syllable_count - truth) / truth)
    assert np.mean(errors) <= 0.10, errors


def test_nuclei_are_voiced_peaks_inside_speech(espeak_sentence):
    r = report(*espeak_sentence)
    c = r.contours
    idx = np.rint((np.asarray(r.rate.nuclei_s) - 0.005) / 0.01).astype(int)
    assert len(idx) == r.rate.syllable_count > 5
    assert c.speech[idx].all() and np.isfinite(c.f0_hz[idx]).all()
    assert r.to_dict(contours=False)["rate"]["nuclei_s"] == list(r.rate.nuclei_s)


def test_pauses_are_counted_and_timed():
    voiced = synth.harmonic(150, 1.0, syllable_hz=4.0)
    x = np.concatenate([voiced, synth.silence(0.5), voiced, synth.silence(0.8), voiced])
    r = report(x)
    assert r.rate.pause_count == 2
    assert r.rate.pause_s == pytest.approx(1.3, abs=0.12)
    (a1, b1), (a2, b2) = r.rate.pauses
    assert a1 == pytest.approx(1.0, abs=0.08) and b2 == pytest.approx(3.3, abs=0.08)
    assert r.rate.speech_s == pytest.approx(3.0, abs=0.15)


# --- intonation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("start,end,label", [(120, 190, "rising"), (220, 130, "falling")])
def test_glides_are_rising_or_falling(start, end, label):
    r = report(glide(start, end, 2.0))
    assert r.intonation.label == label
    assert r.intonation.confidence == pytest.approx(1.0)
    sign = 1 if end > start else -1
    assert sign * r.intonation.delta_st > 2.0


@pytest.mark.parametrize("up,label", [(True, "rising-falling"), (False, "falling-rising")])
def test_arches_are_turns(up, label):
    assert report(arch(160, 6.0, 2.0, up=up)).intonation.label == label


def test_steady_pitch_is_flat_and_a_wide_wandering_one_expressive():
    assert report(synth.harmonic(160, 2.0, syllable_hz=4.0)).intonation.label == "flat"
    wobble = synth.harmonic(lambda t: 180 * 2 ** (7 * np.sin(2 * np.pi * 2.0 * t) / 12), 2.0,
                            syllable_hz=4.0)
    r = report(wobble)
    assert r.intonation.dynamics == "expressive" and r.intonation.label == "expressive"


@pytest.mark.parametrize("make,label", [(lambda s: glide(120, 200, s), "rising"),
                                        (lambda s: glide(230, 140, s), "falling"),
                                        (lambda s: arch(150, 6.0, s), "rising-falling")])
def test_contour_label_unchanged_by_clip_duration(make, label):
    assert [report(make(s)).intonation.label for s in (1.2, 2.0, 4.0)] == [label] * 3


def _cut(x, spans, fill):
    y = x.copy()
    for a, b in spans:
        y[int(a * SR):int(b * SR)] = fill(int(b * SR) - int(a * SR))
    return y


@pytest.mark.parametrize("make,label", [(lambda: glide(120, 200, 2.5), "rising"),
                                        (lambda: glide(230, 140, 2.5), "falling"),
                                        (lambda: arch(150, 6.0, 2.5), "rising-falling")])
def test_contour_label_unchanged_by_unvoiced_gaps_and_pauses(make, label):
    x = make()
    rng = np.random.default_rng(3)
    fricatives = _cut(x, [(0.6, 0.7), (1.4, 1.52), (2.0, 2.1)],
                      lambda n: (0.03 * rng.standard_normal(n)).astype(np.float32))
    paused = _cut(x, [(0.8, 1.15), (1.6, 1.95)], lambda n: np.zeros(n, np.float32))
    assert report(x).intonation.label == label
    assert report(fricatives).intonation.label == label
    r = report(paused)
    assert r.rate.pause_count == 2
    assert r.intonation.label == label
    assert r.intonation.confidence == pytest.approx(0.49, abs=0.01)  # 0.7 per pause


def test_many_pauses_make_the_label_uncertain():
    voiced = glide(120, 200, 0.5)
    x = np.concatenate([np.concatenate([voiced, synth.silence(0.4)]) for _ in range(7)])
    r = report(x)
    assert r.rate.pause_count == 6
    assert r.intonation.label == "uncertain"


# --- stereo, rates, levels ----------------------------------------------------------------------

def test_stereo_equals_mono_and_sample_rate_does_not_matter():
    import soxr

    mono = glide(130, 200, 2.0)
    stereo = np.stack([mono, mono], axis=1)
    at44 = soxr.resample(mono, SR, 44_100).astype(np.float32)
    a, b, c = report(mono), report(stereo), report(at44, 44_100)
    assert b.to_dict() == a.to_dict()
    assert c.pitch.median_hz == pytest.approx(a.pitch.median_hz, rel=0.005)
    assert c.intonation.label == a.intonation.label
    assert c.energy.level_dbfs == pytest.approx(a.energy.level_dbfs, abs=0.2)


@pytest.mark.parametrize("f0, voice, assumed, level", [
    (95, "auto", "male", "low"), (125, "auto", "male", "normal"), (150, "auto", "male", "high"),
    (230, "auto", "female", "normal"), (200, "auto", "female", "normal"),
    (165, "auto", None, None), (290, "auto", None, None),  # a high man, a low woman; a child, a shout
    (165, "female", "female", "low"), (165, "male", "male", "high"), (290, "child", "child", "normal"),
    (290, "female", "female", "high"), (230, "male", "male", "high")])
def test_pitch_levels_follow_the_voice_type(f0, voice, assumed, level):
    """An ordinary woman's voice is not "a high voice": without a voice type the level is given
    only where the pitch is typical of one voice type (assumed, and said), else none."""
    from engine.prosody import describe

    r = report(synth.harmonic(f0, 1.5, syllable_hz=4.0), voice=voice)
    assert (r.voice_type.requested, r.voice_type.assumed, r.levels.pitch) == (voice, assumed, level)
    pitch = describe(r)[0]
    if assumed is None:
        assert "no level" in pitch and "semitones above a typical man's" in pitch
        assert not any(w in pitch for w in ("a high voice", "a low voice", "a medium voice"))
    else:
        noun = {"male": "a man", "female": "a woman", "child": "a child"}[assumed]
        assert f"a {'medium' if level == 'normal' else level} voice for {noun}" in pitch
        assert ("assumed from the clip" in pitch) == (voice == "auto")
    assert r.to_dict(contours=False)["voice_type"]["assumed"] == assumed


def test_an_unknown_voice_type_is_refused_by_name():
    with pytest.raises(ValueError, match="auto, male, female, child"):
        report(synth.harmonic(150, 1.0, syllable_hz=4.0), voice="baritone")


def test_energy_words_describe_the_recording_not_the_speaker():
    from engine.prosody import describe
    from engine.prosody.levels import LevelNorms

    quiet = report(synth.harmonic(150, 1.5, level_dbfs=-40.0, syllable_hz=4.0))
    assert quiet.levels.energy == "low"
    loudness = next(line for line in describe(quiet) if line.startswith("Loudness"))
    assert "a quiet recording" in loudness and "gain" in loudness and "soft" not in loudness
    custom = LevelNorms(energy_dbfs=(-50.0, -45.0))
    assert report(synth.harmonic(150, 1.5, level_dbfs=-40.0, syllable_hz=4.0),
                  norms=custom).levels.energy == "high"


@pytest.mark.parametrize("kind", ["tone", "square", "noise", "quarter-second tone"])
def test_a_signal_without_speech_rhythm_is_measured_but_not_called_speech(kind):
    """Once: a square wave was "loud, -0 dB above the background, 0.0 syllables per second"."""
    from engine.prosody import describe

    rng = np.random.default_rng(0)
    t = np.arange(SR * 2) / SR
    x = {"tone": 0.5 * np.sin(2 * np.pi * 440 * t), "square": 0.9 * np.sign(np.sin(2 * np.pi * 200 * t)),
         "noise": 0.3 * rng.standard_normal(SR * 2),
         "quarter-second tone": 0.3 * np.sin(2 * np.pi * 130 * t[: SR // 4])}[kind]
    r = report(x.astype(np.float32))
    assert not r.speech_found and r.levels.pitch is r.levels.energy is r.levels.speed is None
    summary = describe(r)
    assert len(summary) == 1 and summary[0].startswith("No speech found")
    assert "loud" not in summary[0] and "syllables per second" not in summary[0]
    assert r.to_dict(contours=False)["speech_found"] is False


def test_speech_with_its_rhythm_is_speech(espeak_sentence):
    r = report(*espeak_sentence)
    assert r.speech_found and r.energy.snr_db > 20 and r.levels.energy is not None


def test_voice_quality_is_measured_and_sensible():
    clean = report(synth.harmonic(150, 2.0, syllable_hz=4.0))
    assert clean.voice.jitter_local is not None and clean.voice.jitter_local < 0.005
    assert 0 <= clean.voice.shimmer_local < 0.3


@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_hnr_falls_as_noise_is_added(f0):
    """Once: 25.8 dB clean and 26.1 dB at 20 dB SNR (the estimate saturated). White noise at
    10 dB SNR leaves ~10 dB of harmonics over noise."""
    x = synth.harmonic(f0, 2.0, syllable_hz=4.0)
    rng = np.random.default_rng(0)

    def at(snr_db):
        noise = np.sqrt(np.mean(x ** 2)) * 10 ** (-snr_db / 20) * rng.standard_normal(len(x))
        return report((x + noise).astype(np.float32)).voice.hnr_db

    clean, snr20, snr10 = report(x).voice.hnr_db, at(20), at(10)
    assert clean > snr20 + 5 > snr10 + 10
    assert 5 <= snr10 <= 15 and 12 <= snr20 <= 25


def test_hnr_agrees_with_praats_harmonicity(espeak_sentence):
    """The reference path: Praat's own Harmonicity (cc) on the recording's rate, mean over its
    periodic frames."""
    import parselmouth
    from parselmouth.praat import call

    x, sr = espeak_sentence
    harmonicity = parselmouth.Sound(x.astype(np.float64), sr).to_harmonicity_cc(0.01, 75, 0.1, 1.0)
    praat = call(harmonicity, "Get mean", 0, 0)
    assert report(x, sr).voice.hnr_db == pytest.approx(praat, abs=2.0)


def test_contours_share_a_10ms_axis_and_serialise():
    r = report(glide(120, 200, 2.0))
    c = r.contours
    assert len(c.time_s) == len(c.f0_hz) == len(c.intensity_db) == len(c.speech) == 200
    np.testing.assert_allclose(np.diff(c.time_s), 0.01)
    d = r.to_dict()
    assert set(d["contours"]) >= {"time_s", "f0_hz", "intensity_db"}
    voiced = [v for v in d["contours"]["f0_hz"] if v is not None]
    assert min(voiced) == pytest.approx(120, rel=0.05) and max(voiced) == pytest.approx(200, rel=0.05)
    semis = np.array([v for v in d["contours"]["f0_st"] if v is not None])
    assert abs(np.median(semis)) < 0.3
    json.loads(json.dumps(d))


def test_frame_levels_match_a_direct_computation():
    from engine.prosody.analysis import frame_levels
    from engine.prosody.pitch import frame_times

    x = np.random.default_rng(0).standard_normal(16_037).astype(np.float32) * 0.1
    times = frame_times(len(x) / SR)
    padded = np.concatenate([np.zeros(200), x, np.zeros(400)])
    direct = [10 * np.log10(np.mean(padded[int(round(t * SR)):int(round(t * SR)) + 400] ** 2))
              for t in times]  # 25 ms = 400 samples centred on t
    np.testing.assert_allclose(frame_levels(x, SR, times), direct, atol=1e-4)


def test_smoothing_matches_scipy_savgol():
    from scipy.signal import savgol_filter

    from engine.prosody.intonation import smooth

    y = np.cumsum(np.random.default_rng(0).standard_normal(57))
    np.testing.assert_allclose(smooth(y), savgol_filter(y, 9, 2, mode="interp"), atol=1e-9)
