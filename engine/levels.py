"""Low / normal / high: measurements placed against norms.

The reference pipeline calibrates cut points per corpus (tertiles; pitch also per gender,
paper-notes §3), which `train/` will compute; a single clip in the app has no corpus, so
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
    source: str = "default norms (engine/levels.py)"

    def levels(self, median_hz: float | None, level_dbfs: float | None,
               articulation_sps: float | None, gender: str | None = None) -> Levels:
        """Place the three measurements; `gender` is 'male', 'female' or None (pooled)."""
        key = (gender or "pooled").lower()
        pitch_cuts = self.pitch_hz.get(key, self.pitch_hz["pooled"])
        return Levels(
            pitch=_place(median_hz, pitch_cuts, ("low", "normal", "high")),
            energy=_place(level_dbfs, self.energy_dbfs, ("low", "normal", "high")),
            speed=_place(articulation_sps, self.articulation_sps, ("slow", "normal", "fast")),
        )


def _place(value: float | None, cuts: tuple[float, float], names: tuple[str, str, str]):
    if value is None:
        return None
    low, high = cuts
    return names[0] if value < low else names[2] if value > high else names[1]


DEFAULT_NORMS = LevelNorms()
