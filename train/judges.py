"""Judges of reasoning quality: four 1-5 scores per completion, for GRPO-PTR's reasoning reward.

The paper's trained reward model (Qwen2.5-Omni-3B on 101.4K scored examples) is not public, so:
- `ProsodyFactJudge` (the default, and what the tests use): deterministic and cheap.
  factual_alignment: the reasoning's prosodic claims checked by engine.grounding against the
  measured ProsodyReport, or against the record's labels when no report is given: 1 + 4 x the
  share supported (2 when it makes no checkable claim: it cites no cue from the audio);
  interpretative_quality: 1, +2 for naming an emotion, +2 for linking cues to it ("suggests",
  "indicates", "because" ...); caption_completeness: 1 + 4 x the share of the five prosodic
  dimensions mentioned (pitch, loudness, pace, intonation, voice quality); fluency_structure:
  1 + 2 for a length within 50-200 words (less for shorter, or longer) + 2 x the share of distinct
  word trigrams (repetition lowers it).
- `ModelJudge`: any local Hugging Face chat model prompted with the written rubric (RUBRIC);
  its answer is parsed from JSON (or "criterion: N" lines) and cached. An unparseable answer
  gives None, and callers fall back to the fact judge.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Protocol

from engine.grounding import find_claims
from engine.reasoning.options import GenerationOptions
from engine.reasoning.parse import SYNONYMS
from train.rewards import CRITERIA

DIMENSIONS = {  # the five prosodic dimensions and words that mention them
    "pitch": r"pitch|high-pitched|low-pitched|deep voice|f0",
    "loudness": r"loud\w*|soft\w*|quiet\w*|volume|energy|intensity|shout\w*",
    "pace": r"pace|tempo|rate|fast|slow\w*|quick\w*|rapid\w*|hurried|pause\w*",
    "intonation": r"intonation|ris(?:e|es|ing)|fall(?:s|ing)|contour|monoton\w*|inflection|melod\w*",
    "voice quality": r"breath\w*|tremb\w*|shak\w*|hoarse|tense|whisper\w*|creak\w*|voice quality",
}
LINKS = r"suggest\w*|indicat\w*|convey\w*|because|reflect\w*|consistent with|points? to|signals?|implies"
EMOTION_WORDS = r"\b(?:" + "|".join(re.escape(w) for ws in SYNONYMS.values() for w in ws) + r")\b"
RECORD_FIELDS = {"pitch_level": "pitch_level", "loudness": "energy_level", "pace": "speed_level",
                 "contour": "intonation"}
RUBRIC = """You grade the reasoning of a speech emotion recogniser. Score each criterion from 1 (poor) to 5 (excellent):
- factual_alignment: the acoustic cues it cites (pitch, loudness, pace, intonation, voice quality) match the facts given;
- interpretative_quality: it connects those cues to the emotion convincingly;
- caption_completeness: it covers the relevant prosodic and vocal cues;
- fluency_structure: it is clear, well organised and not repetitive.
Facts measured from the audio: {facts}
Reasoning to grade: {reasoning}
Answer with JSON only, e.g. {{"factual_alignment": 4, "interpretative_quality": 3, "caption_completeness": 4, "fluency_structure": 5}}."""


class Judge(Protocol):
    def score(self, reasoning: str, record: dict[str, Any], report=None) -> dict[str, float] | None:
        """The four criteria's scores in 1..5 (None if the judge could not score)."""
        ...


class ProsodyFactJudge:
    """Scores from measured facts and text statistics (see the module docstring)."""

    def score(self, reasoning: str, record: dict[str, Any], report=None) -> dict[str, float]:
        text = reasoning.lower()
        return {"factual_alignment": self._facts(reasoning, record, report),
                "interpretative_quality": 1.0 + 2.0 * bool(re.search(EMOTION_WORDS, text))
                + 2.0 * bool(re.search(rf"\b(?:{LINKS})\b", text)),
                "caption_completeness": 1.0 + 4.0 * sum(bool(re.search(rf"\b(?:{p})\b", text))
                                                        for p in DIMENSIONS.values()) / len(DIMENSIONS),
                "fluency_structure": self._fluency(text)}

    @staticmethod
    def _facts(reasoning: str, record: dict[str, Any], report) -> float:
        """1 + 4 x the share of checkable claims that hold. A claim about a level (pitch,
        loudness, pace) is checked against the record's calibrated label (train.label: tertiles
        per corpus, pitch per corpus and gender) when it has one; everything else, and levels
        the record lacks, against the measured report (pitch placed for the record's gender:
        engine.prosody.levels' voice types), or the record's labels when no report is given."""
        verdicts = []
        for claim in _checked(reasoning, report):
            attr, value, negated = claim[:3]
            field = RECORD_FIELDS.get(attr)
            truth = record.get(field) if field else None
            if truth is not None and (report is None or attr != "contour"):
                wanted = {"loud": "high", "soft": "low"}.get(value, value)
                holds = truth == wanted or (attr == "contour" and truth.startswith(wanted))
                verdicts.append(holds != negated)
            elif claim[3] in ("supported", "contradicted"):
                verdicts.append(claim[3] == "supported")
        share = sum(verdicts) / len(verdicts) if verdicts else None
        return 2.0 if share is None else 1.0 + 4.0 * share

    @staticmethod
    def _fluency(text: str) -> float:
        words = re.findall(r"[a-z']+", text)
        n = len(words)
        length = 1.0 if 50 <= n <= 200 else (n / 50 if n < 50 else max(0.0, 1 - (n - 200) / 200))
        trigrams = list(zip(words, words[1:], words[2:]))
        distinct = len(set(trigrams)) / len(trigrams) if trigrams else 0.0
        return 1.0 + 2.0 * length + 2.0 * distinct


def _checked(reasoning: str, report) -> list[tuple[str, str, bool, str | None]]:
    """(attribute, value, negated, the report's verdict or None) for every claim."""
    if report is None:
        return [(attr, value, negated, None) for attr, value, _, _, negated in find_claims(reasoning)]
    from engine.grounding import check

    return [(c.attribute, c.value, c.negated, c.verdict) for c in check(reasoning, report)]


def parse_scores(text: str) -> dict[str, float] | None:
    """The four scores from a judge model's answer: JSON first, then "criterion: N" pairs;
    clamped to 1..5; None if any criterion is missing."""
    found: dict[str, float] = {}
    for blob in re.findall(r"\{[^{}]*\}", text, re.S):
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        found = {k: data[k] for k in CRITERIA if isinstance(data.get(k), (int, float))}
        if len(found) == len(CRITERIA):
            break
    if len(found) < len(CRITERIA):
        for c in CRITERIA:
            m = re.search(rf"{c}\W+(\d+(?:\.\d+)?)", text, re.I)
            if m:
                found.setdefault(c, float(m.group(1)))
    if len(found) < len(CRITERIA):
        return None
    return {c: min(5.0, max(1.0, float(found[c]))) for c in CRITERIA}


class ModelJudge:
    """A local chat model grading with RUBRIC; answers cached by content (in memory, and in a
    JSON file when `cache_path` is given)."""

    def __init__(self, model: str, device: str = "auto", cache_path: str | None = None,
                 max_new_tokens: int = 96) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=False)
        self.model = AutoModelForCausalLM.from_pretrained(model, trust_remote_code=False,
                                                          device_map=None if device == "cpu" else device)
        self.model.eval()
        self.max_new_tokens = max_new_tokens
        self.cache_path = Path(cache_path) if cache_path else None
        self.cache: dict[str, Any] = (json.loads(self.cache_path.read_text())
                                      if self.cache_path and self.cache_path.exists() else {})

    def score(self, reasoning: str, record: dict[str, Any], report=None) -> dict[str, float] | None:

        facts = _facts_text(record, report)
        key = hashlib.sha256(f"{facts}\n{reasoning}".encode()).hexdigest()
        if key not in self.cache:
            prompt = RUBRIC.format(facts=facts, reasoning=reasoning)
            messages = [{"role": "user", "content": prompt}]
            text = (self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                    if self.tokenizer.chat_template else prompt)
            ids = self.tokenizer(text, return_tensors="pt").to(self.model.device)
            out = GenerationOptions(max_new_tokens=self.max_new_tokens).generate(
                self.model, self.tokenizer, ids)
            self.cache[key] = self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:],
                                                    skip_special_tokens=True)
            if self.cache_path:
                self.cache_path.write_text(json.dumps(self.cache))
        return parse_scores(self.cache[key])


def _facts_text(record: dict[str, Any], report) -> str:
    if report is not None:
        from engine.prosody.describe import describe

        return " ".join(describe(report))
    fields = ("pitch_level", "energy_level", "speed_level", "intonation", "gender")
    return "; ".join(f"{f.replace('_', ' ')}: {record[f]}" for f in fields if record.get(f)) or "none"
