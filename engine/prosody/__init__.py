"""Prosody: what a phonetician would measure in a clip, with Praat, and the words for it.

    from engine.prosody import analyze, describe
    report = analyze(clip)            # ProsodyReport: pitch, energy, rate, intonation, voice, levels
    describe(report)                  # one plain-language sentence per aspect

    analysis.py     analyze(clip) -> ProsodyReport (speech activity, energy, rate, pauses)
    pitch.py        two-pass Praat F0 tracking with octave repair
    intonation.py   contour shape and dynamics by the reference pipeline's rules
    levels.py       low / normal / high against norms, and every threshold behind a prosody word
    describe.py     the report in words a teacher would use
    manipulate.py   Praat PSOLA re-synthesis with changed pitch, range, tilt, tempo, level
    synth.py        test signals with known prosody (harmonic tones, espeak-ng speech)

Nothing here imports torch.
"""

from engine.prosody.analysis import ProsodyReport, analyze
from engine.prosody.describe import describe

__all__ = ["ProsodyReport", "analyze", "describe"]
