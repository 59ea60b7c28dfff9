"""What-if prosody: the same clip with its pitch, pitch range, tempo or loudness changed.

Praat's PSOLA re-synthesis (a Manipulation object: glottal pulses, a pitch tier and a duration
tier, re-synthesised by overlap-add), so the voice stays the speaker's own:

    from engine.prosody.manipulate import manipulate
    higher = manipulate(clip, pitch_shift_st=4)          # +4 semitones
    monotone = manipulate(clip, pitch_range=0.0)         # every pitch point at the median
    question = manipulate(clip, tilt_st=8)               # a rise of 8 st from start to end
    faster = manipulate(clip, tempo=1.25, gain_db=-6)    # 1.25x as fast, 6 dB softer

    python -m engine manipulate IN.wav OUT.wav --pitch-shift 4 --tempo 1.25

Order of operations: the range is scaled about the speaker's median F0 (in the log domain, so
range 0.5 halves the semitone spread), a tilt adds a straight line in semitones across the clip
(from -tilt/2 to +tilt/2: positive rises, negative falls), then the contour is shifted, the time
axis rescaled, and the gain applied. This powers the app's prosody lab and the comparative-prosody
training data.
"""

from __future__ import annotations

import math

import numpy as np

from engine.audio import AudioError, Clip, from_array
from engine.prosody.pitch import FRAME_STEP_S, SECOND_PASS, frame_times, track_pitch

SHIFT_LIMIT_ST = 24.0  # two octaves either way: beyond that PSOLA sounds like a different creature
RANGE_LIMITS = (0.0, 4.0)  # 0 = monotone, 1 = unchanged, 4 = four times the semitone spread
TEMPO_LIMITS = (0.25, 4.0)  # playback speed factor: 2 = twice as fast
TILT_LIMIT_ST = 24.0  # start-to-end slope added to the contour
GAIN_LIMIT_DB = 60.0


def manipulate(clip: Clip, pitch_shift_st: float = 0.0, pitch_range: float = 1.0,
               tempo: float = 1.0, gain_db: float = 0.0, tilt_st: float = 0.0,
               resynthesize: bool = False) -> Clip:
    """Re-synthesise `clip` with its F0 shifted by `pitch_shift_st` semitones, its pitch range
    scaled by `pitch_range` about the median, a rise (or fall) of `tilt_st` semitones added from
    start to end, its tempo multiplied by `tempo` (duration divided) and its level changed by
    `gain_db`. Without a pitch or time change the samples are kept as they are, unless
    `resynthesize`: then they go through PSOLA all the same, so that an unchanged version
    carries the same re-synthesis artefacts as its changed siblings (training data must not let
    a model find the original by its cleanness). Raises `ValueError` for settings out of range
    and `AudioError` when the pitch is to change but the clip has no voiced speech."""
    _check("pitch_shift_st", pitch_shift_st, -SHIFT_LIMIT_ST, SHIFT_LIMIT_ST)
    _check("tilt_st", tilt_st, -TILT_LIMIT_ST, TILT_LIMIT_ST)
    _check("pitch_range", pitch_range, *RANGE_LIMITS)
    _check("tempo", tempo, *TEMPO_LIMITS)
    _check("gain_db", gain_db, -GAIN_LIMIT_DB, GAIN_LIMIT_DB)
    x = clip.samples
    if resynthesize or pitch_shift_st != 0.0 or pitch_range != 1.0 or tempo != 1.0 or tilt_st != 0.0:
        x = _psola(clip, pitch_shift_st, pitch_range, tempo, tilt_st)
    if gain_db != 0.0:
        x = x * np.float32(10.0 ** (gain_db / 20.0))
    name = f"{clip.source} (manipulated)" if clip.source else None
    # the input passed the length limits already; a slower tempo may lengthen it past them
    return from_array(np.asarray(x, np.float32), clip.sample_rate_hz, max_seconds=math.inf,
                      min_seconds=0.0, source=name)


def _psola(clip: Clip, shift_st: float, range_factor: float, tempo: float,
           tilt_st: float) -> np.ndarray:
    import parselmouth
    from parselmouth.praat import call

    times = frame_times(clip.duration_s)
    track = track_pitch(clip.samples, clip.sample_rate_hz, times)
    is_voiced = np.isfinite(track.f0_hz)
    voiced = track.f0_hz[is_voiced]
    pitch_change = shift_st != 0.0 or range_factor != 1.0 or tilt_st != 0.0
    if voiced.size < 3:
        if pitch_change:
            raise AudioError("the clip has no voiced speech, so there is no pitch to change")
        floor, ceiling = 75.0, 600.0  # Praat's defaults; only the time axis changes
    else:
        median = float(np.median(voiced))
        floor = max(SECOND_PASS[0] * median, 30.0)
        ceiling = max(SECOND_PASS[1] * median, float(voiced.max()) * 1.1)
    sound = parselmouth.Sound(clip.samples.astype(np.float64), clip.sample_rate_hz)
    manipulation = call(sound, "To Manipulation", FRAME_STEP_S, floor, ceiling)
    if pitch_change:
        tier = call(manipulation, "Extract pitch tier")
        if range_factor != 1.0:
            call(tier, "Formula", f"{median!r} * (self / {median!r}) ^ {float(range_factor)!r}")
        if tilt_st != 0.0:
            first, last = (float(t) for t in times[is_voiced][[0, -1]])
            call(tier, "Formula", f"self * 2 ^ ({float(tilt_st)!r} * ((x - {first!r}) / "
                                  f"{max(last - first, 1e-3)!r} - 0.5) / 12)")
        if shift_st != 0.0:
            call(tier, "Shift frequencies", sound.xmin, sound.xmax, float(shift_st), "semitones")
        call([tier, manipulation], "Replace pitch tier")
    if tempo != 1.0:
        durations = call("Create DurationTier", "tempo", sound.xmin, sound.xmax)
        call(durations, "Add point", sound.xmin, 1.0 / float(tempo))
        call([manipulation, durations], "Replace duration tier")
    out = call(manipulation, "Get resynthesis (overlap-add)")
    return out.values[0].astype(np.float32)


def _check(name: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}; got {value!r}")
