"""Low / normal / high: measurements placed against norms, and every threshold behind a prosody word.

One home for the words: `describe` (the summary a person reads), `engine.grounding` (the check of
the model's claims) and `train.label` (the calibrated training labels) all place values with
`place` and the cut points below, so a summary that says "a moderate range" can never sit beside
a claim "a wide pitch range" marked supported (tests/test_grounding.py checks the agreement).

The reference pipeline calibrates cut points per corpus (tertiles; pitch also per gender,
docs/paper.md §3), which `train/` will compute; a single clip in the app has no corpus, so
`DEFAULT_NORMS` holds documented defaults, replaceable by calibrated `LevelNorms` later.
Sources of the defaults:
- pitch: adult speaking F0 averages ~120 Hz for men and ~210 Hz for women (Traunmüller &
  Eriksson 1995, "The frequency range of the voice fundamental in the speech of male and female
  adults"), and ~260 Hz for children of 6-11 (Lee, Potamianos & Narayanan 1999, JASA 105:1455);
  the cuts sit about half a between-speaker standard deviation either side, widened for
  emotional speech. A pitch is low or high only for a voice type: one pooled scale would call
  every ordinary woman's voice high and many men's low, which teaches a bias. The voice type is
  given (male / female / child) or assumed from the clip (`assume_voice`, "auto") only where
  its median F0 is typical of one adult voice and not the other; elsewhere (155-175 Hz, a high
  man's or a low woman's voice; over 240 Hz, a child, a woman's raised voice or a man's shout)
  the pitch is described in Hz and semitones without a level.
- energy: speech recorded at a sensible gain sits around -23 dBFS RMS while speaking (EBU R128
  loudness target, -23 LUFS); +-6 dB either side. Recording gain, not the speaker, decides
  dBFS, so these words describe the recording ("a quiet recording"), never the speaker's voice.
- speed: English articulation rate is ~4-5 syllables/s for read and conversational speech
  (Jacewicz et al. 2010, JASA 128:839; de Jong & Wempe 2009 report similar counts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Pitch range (p5-p95, semitones) and intonation dynamics share the reference pipeline's cuts
# (docs/paper.md §3): under 3 st flat / narrow, over 9 st expressive / wide.
FLAT_RANGE_ST = 3.0
EXPRESSIVE_RANGE_ST = 9.0
RANGE_WORDS = ("narrow", "moderate", "wide")
# Voice quality, common clinical reference points (Praat's manual; Teixeira et al. 2013):
ROUGH_HNR_DB = 7.0  # harmonics-to-noise ratio under this sounds breathy or hoarse
IRREGULAR_JITTER = 0.01  # local jitter over 1 % sounds unsteady or trembling
# Whispered speech: little of the speech is voiced, or what is voiced is mostly noise
WHISPER_VOICED_FRACTION = 0.3  # share of speech frames with a pitch
WHISPER_HNR_DB = 3.0


@dataclass(frozen=True)
class Levels:
    pitch: str | None  # low / normal / high, None when unmeasurable
    energy: str | None
    speed: str | None


VOICE_TYPES = ("auto", "male", "female", "child")  # what a user may choose; "auto" assumes one
TYPICAL_F0_HZ = {"male": 120.0, "female": 210.0, "child": 260.0}  # sources above
# "auto": a median F0 in one of these ranges (Hz) is typical of that voice and not of the other
# adult voice (2+ between-speaker standard deviations, ~2 semitones, from the other's mean)
AUTO_VOICE_HZ = {"male": (0.0, 155.0), "female": (175.0, 240.0)}
VOICE_NOUNS = {"male": "a man", "female": "a woman", "child": "a child"}  # "high for a woman"


@dataclass(frozen=True)
class VoiceType:
    """Whose norms place the pitch: chosen, or assumed from the clip."""

    requested: str  # "auto", "male", "female" or "child"
    assumed: str | None  # the voice type whose cut points were used; None: no pitch level
    reason: str  # in words, e.g. "assuming a typical female voice (median 230 Hz)"


def assume_voice(requested: str | None, median_hz: float | None,
                 unmeasured: str = "no reliable pitch") -> VoiceType:
    """The voice type whose norms place a pitch: the requested one, or for "auto" (and None) the
    one the median F0 points to where it is unambiguous (AUTO_VOICE_HZ), else none; `unmeasured`
    says why when there is no median to go by. ValueError names the choices for anything else."""
    choice = (requested or "auto").strip().lower()
    if choice not in VOICE_TYPES:
        raise ValueError(f"The voice type must be one of {', '.join(VOICE_TYPES)}; got {requested!r}.")
    if choice != "auto":
        return VoiceType(choice, choice, f"{VOICE_NOUNS[choice]}'s voice (chosen)")
    if median_hz is None:
        return VoiceType("auto", None, f"none assumed: {unmeasured}")
    for voice, (low, high) in AUTO_VOICE_HZ.items():
        if low <= median_hz <= high:
            return VoiceType("auto", voice, f"assuming {VOICE_NOUNS[voice]}'s voice (median "
                                            f"{median_hz:.0f} Hz; choose another if that is wrong)")
    return VoiceType("auto", None, f"none assumed: a median of {median_hz:.0f} Hz fits more than "
                                   "one (a man, a woman or a child); choose one for a pitch level")


def has_unplaced_pitch(report) -> bool:
    """A reliable pitch in found speech that has no level only because no voice type was
    assumed (or the norms lack the chosen one): described in Hz and semitones instead."""
    return report.speech_found and report.pitch.reliable and report.levels.pitch is None


def semitones_from_typical(median_hz: float) -> dict[str, float]:
    """Semitones from each voice type's typical F0 to `median_hz` (positive: above)."""
    return {v: 12.0 * math.log2(median_hz / hz) for v, hz in TYPICAL_F0_HZ.items()}


@dataclass(frozen=True)
class LevelNorms:
    """Cut points (low_below, high_above) per attribute; pitch per voice type ('pooled': for
    calibrated corpus norms whose groups have no voice type)."""

    pitch_hz: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "male": (105.0, 145.0), "female": (180.0, 245.0), "child": (230.0, 295.0)})
    energy_dbfs: tuple[float, float] = (-29.0, -17.0)
    articulation_sps: tuple[float, float] = (3.5, 5.0)
    source: str = "default norms (engine/prosody/levels.py)"

    def levels(self, median_hz: float | None, level_dbfs: float | None,
               articulation_sps: float | None, voice: str | None = None) -> Levels:
        """Place the three measurements; the pitch by the cuts of `voice` ('male', 'female',
        'child'; None: 'pooled' where these norms have it, else no pitch level)."""
        pitch_cuts = self.pitch_hz.get((voice or "pooled").lower())
        return Levels(
            pitch=place(median_hz, pitch_cuts, LEVEL_WORDS["pitch"]),
            energy=place(level_dbfs, self.energy_dbfs, LEVEL_WORDS["energy"]),
            speed=place(articulation_sps, self.articulation_sps, LEVEL_WORDS["speed"]),
        )


LEVEL_WORDS = {"pitch": ("low", "normal", "high"), "energy": ("low", "normal", "high"),
               "speed": ("slow", "normal", "fast")}  # the EmotionCoT label values (docs/paper.md §2)


def place(value: float | None, cuts, names: tuple[str, str, str]) -> str | None:
    """names[0] below cuts[0], names[2] above cuts[1], names[1] between (bounds included);
    None when the value or the cuts are missing."""
    if value is None or cuts is None:
        return None
    low, high = cuts
    return names[0] if value < low else names[2] if value > high else names[1]


def range_level(range_st: float | None) -> str | None:
    """"narrow", "moderate" or "wide" for a pitch range in semitones."""
    return place(range_st, (FLAT_RANGE_ST, EXPRESSIVE_RANGE_ST), RANGE_WORDS)


def is_rough(hnr_db: float | None) -> bool | None:
    """Breathy or hoarse: too little harmonic energy (None when HNR was not measured)."""
    return None if hnr_db is None else hnr_db < ROUGH_HNR_DB


def is_unsteady(jitter_local: float | None) -> bool | None:
    """Unsteady or trembling: irregular periods (None when jitter was not measured)."""
    return None if jitter_local is None else jitter_local > IRREGULAR_JITTER


def is_whisper(voiced_fraction: float | None, hnr_db: float | None) -> bool | None:
    """Whispered: little voicing, or voicing that is mostly noise (None without speech)."""
    if voiced_fraction is None:
        return None
    return voiced_fraction < WHISPER_VOICED_FRACTION or (hnr_db is not None
                                                         and hnr_db < WHISPER_HNR_DB)


DEFAULT_NORMS = LevelNorms()
