"""Is the explanation grounded in the audio? Prosodic claims in the reasoning vs what was measured.

`check(reasoning, report) -> list[Claim]` finds phrases like "a rising pitch", "speaks quickly",
"a trembling voice" with a small documented lexicon (LEXICON below: attribute, claimed value,
phrases), notices a negation just before a phrase ("not loud", "no pauses"), and compares each
claim with the ProsodyReport:
- supported: the measurement agrees (the claimed level, shape or quality was measured);
- contradicted: it was measured and disagrees;
- not measured: the measurement is missing or unreliable (silence, too little voicing).
Each claim carries the measured value in words, so a reader can judge for themselves.

What a claim is checked against (levels and thresholds: engine/prosody/levels.py):
pitch level -> levels.pitch, placed for the report's voice type (chosen, or assumed from the clip;
none assumed: "not measured"); pitch range -> range in semitones (wide > 9 st, narrow < 3 st);
rising / falling -> the intonation shape; loudness -> not checked (the recording's level is set
by its gain as much as by the voice; the level is shown beside the claim);
pace -> levels.speed (articulation rate); pauses -> pause count; trembling -> local jitter
(> 1 %); breathy / hoarse -> HNR (< 7 dB); whisper -> voicing (< 30 % of speech voiced) or HNR
(< 3 dB). The summary (describe) uses the same thresholds, so the two never disagree. The model
may mean "higher than this speaker's usual pitch": one clip cannot show a speaker's usual, so its
words are held to population norms, and the measured value is shown.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from engine.prosody import ProsodyReport
from engine.prosody.levels import VOICE_NOUNS, has_unplaced_pitch, is_rough, is_unsteady, is_whisper, range_level

NEGATION_WINDOW = 3  # words before a phrase searched for a negation
NEGATIONS = {"not", "no", "never", "without", "lacks", "lacking", "isn't", "wasn't", "aren't",
             "doesn't", "didn't", "nor", "neither", "hardly", "barely", "rather than", "instead of"}

# attribute, claimed value, phrases (regular expressions, matched on word boundaries)
LEXICON: list[tuple[str, str, tuple[str, ...]]] = [
    ("pitch_level", "high", (r"high[- ]pitched", r"high(?:er)? pitch", r"pitch (?:is|was|seems|sounds) "
                             r"(?:quite |very |rather )?(?:high|elevated|raised)", r"elevated pitch",
                             r"raised pitch", r"shrill", r"squeaky")),
    ("pitch_level", "low", (r"low[- ]pitched", r"low(?:er)? pitch", r"deep(?:er)? voice",
                            r"pitch (?:is|was|seems|sounds) (?:quite |very |rather )?low")),
    ("pitch_range", "wide", (r"wide (?:pitch )?range", r"varied (?:pitch|intonation)",
                             r"pitch vari(?:es|ation|ability)", r"(?:lively|animated|expressive|"
                             r"dynamic|sing-?song) (?:intonation|pitch|prosody|tone|voice)",
                             r"fluctuating pitch", r"pitch fluctuat\w*")),
    ("pitch_range", "narrow", (r"monotone?", r"monotonous", r"flat (?:intonation|pitch|tone|prosody)",
                               r"narrow (?:pitch )?range", r"little (?:pitch )?variation",
                               r"(?:pitch|intonation|tone) (?:is|was|stays|remains) (?:quite |very )?flat")),
    ("contour", "rising", (r"rising (?:pitch|intonation|tone|contour|inflection)",
                           r"(?:pitch|intonation|tone) ris(?:es|ing)", r"upward (?:inflection|intonation)",
                           r"upspeak", r"rises at the end", r"goes up at the end",
                           r"(?<=and )rising", r"(?<=is )rising")),  # "pitch is high and rising"
    ("contour", "falling", (r"falling (?:pitch|intonation|tone|contour|inflection)",
                            r"(?:pitch|intonation|tone) (?:falls|falling|drops|dropping)",
                            r"downward (?:inflection|intonation)", r"falls at the end",
                            r"drops at the end", r"(?<=and )falling", r"(?<=is )falling")),
    ("loudness", "loud", (r"loud(?:ly|er)?", r"raised voice", r"shout\w*", r"yell\w*",
                          r"high (?:energy|volume|intensity)", r"forceful(?:ly)?",
                          r"(?:loudness|volume|energy|intensity) (?:is|was) (?:quite |very )?high")),
    ("loudness", "soft", (r"soft(?:ly)?", r"quiet(?:ly)?", r"low (?:energy|volume|intensity)",
                          r"subdued", r"hushed", r"weak voice",
                          r"(?:loudness|volume|energy|intensity) (?:is|was) (?:quite |very )?low")),
    ("pace", "fast", (r"fast(?:er)? (?:pace|rate|tempo|speech|speaking)", r"rapid(?:ly)?",
                      r"quick(?:ly)?", r"hurried(?:ly)?", r"speaks fast", r"rushed")),
    ("pace", "slow", (r"slow(?:er)? (?:pace|rate|tempo|speech|speaking)", r"slowly",
                      r"drawn[- ]out", r"sluggish", r"speaks slow", r"unhurried", r"deliberate pace")),
    ("pauses", "present", (r"pauses?", r"paused", r"hesitat\w*", r"halting", r"broken speech")),
    ("pauses", "absent", (r"fluent(?:ly)?", r"without (?:any )?pauses?", r"continuous(?:ly)?")),
    ("voice", "trembling", (r"trembl\w*", r"shak(?:y|ing) voice", r"quiver\w*", r"tremor",
                            r"voice (?:shakes|cracks|cracking)", r"wavering")),
    ("voice", "breathy", (r"breathy", r"airy", r"hoarse", r"raspy", r"husky")),
    ("voice", "whisper", (r"whisper(?:s|ed|ing|y)?",)),
]
_PATTERNS = [(attr, value, re.compile(rf"\b(?:{p})\b", re.IGNORECASE))
             for attr, value, phrases in LEXICON for p in phrases]
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class Claim:
    text: str  # the phrase as written in the reasoning
    start: int  # character span in the reasoning
    end: int
    attribute: str  # pitch_level, pitch_range, contour, loudness, pace, pauses, voice
    value: str  # what is claimed (high, low, wide, rising, loud, fast, trembling ...)
    negated: bool  # "not loud": the claim is that the value does not hold
    verdict: str  # "supported", "contradicted" or "not measured"
    measured: str  # the measurement in words, e.g. "median 212 Hz (high)"

    def to_dict(self) -> dict:
        return asdict(self)


def find_claims(text: str) -> list[tuple[str, str, int, int, bool]]:
    """(attribute, value, start, end, negated) for every lexicon phrase in `text`; overlapping
    matches keep the longest."""
    hits = []
    for attr, value, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            hits.append((m.start(), m.end(), attr, value))
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
    kept: list[tuple[int, int, str, str]] = []
    for h in hits:
        if kept and h[0] < kept[-1][1]:
            continue  # overlaps a longer or earlier phrase
        kept.append(h)
    return [(attr, value, a, b, _negated(text, a, attr, value)) for a, b, attr, value in kept]


def check(reasoning: str, report: ProsodyReport) -> list[Claim]:
    """Every prosodic claim in `reasoning`, checked against `report`."""
    claims = []
    for attr, value, a, b, negated in find_claims(reasoning):
        holds, measured = _MEASURE[attr](report, value)
        if holds is None:
            verdict = "not measured"
        else:
            verdict = "supported" if holds != negated else "contradicted"
        claims.append(Claim(reasoning[a:b], a, b, attr, value, negated, verdict, measured))
    return claims


def agreement(claims: list[Claim]) -> float | None:
    """Share of the checkable claims that the measurements support (None without any)."""
    checked = [c for c in claims if c.verdict != "not measured"]
    return sum(c.verdict == "supported" for c in checked) / len(checked) if checked else None


def _negated(text: str, start: int, attr: str, value: str) -> bool:
    if attr == "pauses" and value == "absent":
        return False  # "without pauses" is itself the claim
    before = _WORD.findall(text[:start].lower())[-NEGATION_WINDOW:]
    window = " ".join(before)
    return any(n in before or (" " in n and n in window) for n in NEGATIONS)


def _pitch_level(r: ProsodyReport, value: str):
    if has_unplaced_pitch(r):
        return None, f"median {r.pitch.median_hz:.0f} Hz; no level without a voice type (choose one)"
    if r.levels.pitch is None:
        return None, "pitch not reliably measured"
    return r.levels.pitch == value, (f"median {r.pitch.median_hz:.0f} Hz ({r.levels.pitch} for "
                                     f"{VOICE_NOUNS.get(r.voice_type.assumed, 'pooled norms')})")


def _pitch_range(r: ProsodyReport, value: str):
    rng = r.pitch.range_st
    if rng is None or not r.pitch.reliable:
        return None, "pitch range not reliably measured"
    level = range_level(rng)
    return level == value, f"range {rng:.1f} semitones ({level})"


def _contour(r: ProsodyReport, value: str):
    i = r.intonation
    if i.label in ("too_short", "uncertain") or i.shape is None:
        return None, f"intonation {i.label.replace('_', ' ')}"
    ends = {"rising": ("rising", "falling-rising"), "falling": ("falling", "rising-falling")}
    return i.shape in ends[value], f"intonation {i.label} ({i.delta_st:+.1f} st start to end)"


def _loudness(r: ProsodyReport, value: str):
    """Never checked: the recording's level is set by its gain as much as by the voice (an angry
    actor recorded quietly is loud at -43 dBFS), so a claim about vocal effort is shown beside
    the recording level, not judged by it."""
    if r.levels.energy is None:
        return None, "no speech level measured"
    return None, (f"recording level {r.energy.level_dbfs:.0f} dBFS: set by the microphone's gain "
                  "as much as by the voice, so it cannot tell how loudly the person spoke")


def _pace(r: ProsodyReport, value: str):
    if r.levels.speed is None:
        return None, "speaking rate not measured"
    return r.levels.speed == value, (f"{r.rate.articulation_rate_sps:.1f} syllables/s "
                                     f"({r.levels.speed})")


def _pauses(r: ProsodyReport, value: str):
    if r.rate.articulation_rate_sps is None:
        return None, "no speech found"
    present = r.rate.pause_count > 0
    return present == (value == "present"), f"{r.rate.pause_count} pause(s), {r.rate.pause_s:.1f} s"


def _voice(r: ProsodyReport, value: str):
    v = r.voice
    if value == "whisper":
        if r.pitch.voiced_fraction is None:
            return None, "no speech found"
        hnr = f", HNR {v.hnr_db:.0f} dB" if v.hnr_db is not None else ""
        measured = f"{100 * r.pitch.voiced_fraction:.0f} % of speech voiced{hnr}"
        return is_whisper(r.pitch.voiced_fraction, v.hnr_db), measured
    if value == "trembling":
        if v.jitter_local is None:
            return None, "jitter not measured"
        return is_unsteady(v.jitter_local), f"jitter {100 * v.jitter_local:.2f} %"
    if v.hnr_db is None:
        return None, "HNR not measured"
    return is_rough(v.hnr_db), f"HNR {v.hnr_db:.1f} dB"


_MEASURE = {"pitch_level": _pitch_level, "pitch_range": _pitch_range, "contour": _contour,
            "loudness": _loudness, "pace": _pace, "pauses": _pauses, "voice": _voice}
