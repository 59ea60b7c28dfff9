"""The prosody of a clip in words a teacher would use: `describe(report) -> list[str]`.

One sentence per aspect (pitch, range and intonation, loudness, pace and pauses, voice), each
with the number it rests on, so a listener can check the words against the plot. Every threshold
behind a word is in engine/prosody/levels.py, shared with the grounding check of the model's
claims: the range words follow the intonation dynamics (< 3 st narrow, > 9 st wide), the voice
words common clinical reference points (HNR under 7 dB breathy or hoarse, jitter over 1 %
unsteady).
"""

from __future__ import annotations

from engine.prosody.analysis import ProsodyReport
from engine.prosody.levels import (
    TYPICAL_F0_HZ,
    VOICE_NOUNS,
    has_unplaced_pitch,
    is_rough,
    is_unsteady,
    range_level,
    semitones_from_typical,
)

_SPREAD = {"narrow": "narrow, close to a monotone", "moderate": "moderate",
           "wide": "wide and lively"}

_SHAPES = {
    "rising": "rises towards the end (as in a question or surprise)",
    "falling": "falls towards the end (as in a statement or finality)",
    "rising-falling": "rises and then falls, an arch over the utterance",
    "falling-rising": "dips and rises again, a scooped contour",
    "flat": "stays level without a clear rise or fall",
    "expressive": "moves a lot without one overall direction",
    "uncertain": "cannot be judged reliably (too broken up by pauses or short voicing)",
    "too_short": "cannot be judged: too little voiced speech",
}


def describe(report: ProsodyReport) -> list[str]:
    """Plain-language sentences about pitch, intonation, loudness, pace and voice quality."""
    p, e, r, i, v, lv = (report.pitch, report.energy, report.rate, report.intonation,
                         report.voice, report.levels)
    if e.level_dbfs is not None and not report.speech_found:
        found = f" A steady pitch of {p.median_hz:.0f} Hz was measured." if p.median_hz else ""
        return [f"No speech found: the level stays within {max(e.snr_db, 0):.0f} dB of the "
                "background, with none of the rise and fall of syllables, as in a steady tone, hum "
                f"or noise; it is not described as a voice.{found}"]
    lines = []
    if p.median_hz is None:
        lines.append("Pitch: no voiced speech was found, so pitch cannot be measured.")
    else:
        spread = _SPREAD[range_level(p.range_st)]
        caveat = "" if p.reliable else " (little voicing: treat with care)"
        lines.append(f"Pitch: {_pitch_words(report)}; the range is "
                     f"{spread} ({p.range_st:.1f} semitones){caveat}.")
    lines.append(f"Intonation: the melody {_SHAPES[i.label]}"
                 + (f", changing {i.delta_st:+.1f} semitones from start to end." if i.delta_st is not None
                    else "."))
    if e.level_dbfs is None:
        lines.append("Loudness: the clip is silent.")
    else:
        recording = _level(lv.energy, "a quiet recording", "a recording at an ordinary level",
                           "a loud recording")
        lines.append(f"Loudness: {recording} ({e.level_dbfs:.0f} dB re full scale while speaking, "
                     f"{e.snr_db:.0f} dB above the background; the microphone's gain sets this "
                     "as much as the voice does).")
    if r.articulation_rate_sps is not None:
        pauses = ("no pauses" if r.pause_count == 0 else
                  f"{r.pause_count} pause{'s' if r.pause_count > 1 else ''} ({r.pause_s:.1f} s in all)")
        lines.append(f"Pace: {_level(lv.speed, 'slow', 'ordinary', 'fast')}, "
                     f"{r.articulation_rate_sps:.1f} syllables per second while speaking, {pauses}.")
    if v.hnr_db is not None:
        words = ["breathy or hoarse" if is_rough(v.hnr_db) else "clear"]
        if is_unsteady(v.jitter_local):
            words.append("unsteady")
        jitter = f", jitter {100 * v.jitter_local:.1f} %" if v.jitter_local is not None else ""
        lines.append(f"Voice: {' and '.join(words)} (harmonics-to-noise {v.hnr_db:.0f} dB{jitter}).")
    return lines


def _pitch_words(report: ProsodyReport) -> str:
    """"a high voice for a woman ..., around 290 Hz", or without a voice type the Hz and the
    semitones from a typical woman's and man's voice, with no level."""
    p, level, vt = report.pitch, report.levels.pitch, report.voice_type
    if level and vt.assumed:
        assumed = " (assumed from the clip: choose the voice type if wrong)" \
            if vt.requested == "auto" else ""
        return (f"{_level(level)} voice for {VOICE_NOUNS[vt.assumed]}{assumed}, around "
                f"{p.median_hz:.0f} Hz")
    if has_unplaced_pitch(report):
        st = semitones_from_typical(p.median_hz)
        return (f"around {p.median_hz:.0f} Hz ({_signed(st['female'])} a typical woman's "
                f"{TYPICAL_F0_HZ['female']:.0f} Hz, {_signed(st['male'])} a typical man's "
                f"{TYPICAL_F0_HZ['male']:.0f} Hz; no level, as this pitch fits more than one voice "
                "type: choose one to get a level)")
    return f"around {p.median_hz:.0f} Hz"  # no level, no guess


def _signed(semitones: float) -> str:
    return f"{abs(semitones):.1f} semitones {'above' if semitones >= 0 else 'below'}"



def _level(level: str | None, low: str = "a low", normal: str = "a medium",
           high: str = "a high") -> str:
    return {"low": low, "slow": low, "normal": normal, "high": high, "fast": high}.get(level or "",
                                                                                       "unmeasured")
