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
  adults"); the cuts sit about half a between-speaker standard deviation either side, widened
  for emotional speech. Without a known gender the pooled cuts split the mixed population.
- energy: speech recorded at a sensible gain sits around -23 dBFS RMS while speaking (EBU R128
  loudness target, -23 LUFS); +-6 dB either side. Recording gain moves this: calibrate per corpus.
- speed: English articulation rate is ~4-5 syllables/s for read and conversational speech
  (Jacewicz et al. 2010, JASA 128:839; de Jong & Wempe 2009 report similar counts).
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class LevelNorms:
    """Cut points (low_below, high_above) per attribute; pitch per gender ('pooled' if unknown)."""

    pitch_hz: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "male": (105.0, 145.0), "female": (180.0, 245.0), "pooled": (130.0, 200.0)})
    energy_dbfs: tuple[float, float] = (-29.0, -17.0)
    articulation_sps: tuple[float, float] = (3.5, 5.0)
    source: str = "default norms (engine/prosody/levels.py)"

    def levels(self, median_hz: float | None, level_dbfs: float | None,
               articulation_sps: float | None, gender: str | None = None) -> Levels:
        """Place the three measurements; `gender` is 'male', 'female' or None (pooled)."""
        key = (gender or "pooled").lower()
        pitch_cuts = self.pitch_hz.get(key, self.pitch_hz["pooled"])
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
