"""The example clips in assets/examples: one sentence said several ways, with known prosody.

    python -m app.examples          # (re)make them; needs espeak-ng (apt-get install espeak-ng)

How they are made (so a teacher can say what changed): espeak-ng speaks the sentence with its own
pitch, range, rate and amplitude controls, and Praat's PSOLA (engine.prosody.manipulate) changes the
neutral take's pitch, range, tempo and loudness by known amounts. They are synthetic speech:
good for showing how prosody is measured; the model's emotion for them is whatever it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = ROOT / "assets" / "examples"
SENTENCE = "I really did not expect to see you here today."

# file name, what it is, espeak-ng settings (None: a PSOLA variant of the neutral take)
EXAMPLES: list[tuple[str, str, dict | None]] = [
    ("neutral.flac", "espeak-ng defaults: a plain statement", dict()),
    ("excited.flac", "higher, livelier, faster, louder (espeak pitch 75, range 200 %, 200 wpm)",
     dict(pitch=75, pitch_range_pct=200, rate_wpm=200, amplitude=160)),
    ("subdued.flac", "lower, flatter, slower, softer (espeak pitch 25, range 30 %, 125 wpm)",
     dict(pitch=25, pitch_range_pct=30, rate_wpm=125, amplitude=45)),
    ("neutral_rising.flac", "neutral take, PSOLA: a 10-semitone rise added from start to end "
     "(a question-like contour)", None),
    ("neutral_up5_fast.flac", "neutral take, PSOLA: +5 semitones, range x1.8, 1.25x faster", None),
    ("neutral_monotone_slow.flac", "neutral take, PSOLA: monotone (range 0), 0.8x slower, -8 dB",
     None),
]
PSOLA = {"neutral_rising.flac": dict(tilt_st=10.0),
         "neutral_up5_fast.flac": dict(pitch_shift_st=5.0, pitch_range=1.8, tempo=1.25),
         "neutral_monotone_slow.flac": dict(pitch_range=0.0, tempo=0.8, gain_db=-8.0)}


def example_paths() -> list[str]:
    """The example files that exist, in display order."""
    return [str(EXAMPLE_DIR / name) for name, _, _ in EXAMPLES if (EXAMPLE_DIR / name).exists()]


def make() -> None:
    import soundfile as sf

    from engine.audio import from_array
    from engine.prosody import synth
    from engine.prosody.manipulate import manipulate

    EXAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    neutral = None
    for name, what, settings in EXAMPLES:
        if settings is not None:
            x, sr = synth.espeak(SENTENCE, **settings)
            clip = from_array(x, sr, source=name)
            neutral = clip if name == "neutral.flac" else neutral
        else:
            clip = manipulate(neutral, **PSOLA[name])
        samples = np.clip(clip.samples, -1.0, 1.0)
        sf.write(EXAMPLE_DIR / name, samples, clip.sample_rate_hz, subtype="PCM_16")
        print(f"{name}: {what} ({clip.duration_s:.1f} s)")


if __name__ == "__main__":
    make()
