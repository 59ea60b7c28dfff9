"""Reading the model's output: an incremental `<think>`/`<answer>` parser and label normalisation.

The released model writes `<think> reasoning </think><answer> label </answer>` (docs/paper.md §1),
but a stream arrives in arbitrary chunks and models drift, so the parser is lenient:
- tags may be split across chunks (a trailing "<", "</ans" ... is held back until it resolves);
- tags are matched case-insensitively;
- text before any tag counts as reasoning (a missing `<think>`); an `<answer>` closes an open
  `<think>` (a missing `</think>`); the end of the stream closes an open answer;
- text outside the tags is kept apart ("other") and makes the format invalid;
- with several answers the last one counts (models correct themselves), and `n_answers` says so.
Labels are normalised: case, punctuation, articles and filler ("the emotion is ...") are dropped,
synonyms mapped ("disgust" -> contempt, "anger" -> angry, "happiness" -> happy ...), and anything
else is kept raw with the label "unknown".

    p = StreamParser()
    for chunk in chunks: for seg in p.feed(chunk): show(seg.kind, seg.text)
    p.finish(); p.result().label
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.reasoning.prompts import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN

TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
_TAG_RE = re.compile("|".join(re.escape(t) for t in TAGS), re.IGNORECASE)
_NO_TAG = r"(?:(?!</?(?:think|answer)>).)*"  # any text without a tag in it
_FORMAT_RE = re.compile(rf"^\s*<think>{_NO_TAG}</think>\s*<answer>{_NO_TAG}</answer>\s*$",
                        re.IGNORECASE | re.DOTALL)

# Words a model uses for each label (lower case; multi-word phrases allowed).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrality", "calm", "calmness"),
    "happy": ("happy", "happiness", "joy", "joyful", "glad", "cheerful", "delighted"),
    "sad": ("sad", "sadness", "sorrow", "sorrowful", "unhappy", "melancholy"),
    "angry": ("angry", "anger", "mad", "furious", "rage", "irritated", "annoyed"),
    "contempt": ("contempt or disgust", "contempt", "contemptuous", "disgust", "disgusted",
                 "disdain", "scorn"),
    "confused": ("confused", "confusion", "puzzled", "puzzlement", "uncertain"),
    "whisper": ("whisper", "whispering", "whispered"),
    "surprise": ("surprise", "surprised", "astonished", "astonishment", "amazed", "amazement"),
    "fear": ("fear", "fearful", "afraid", "scared", "frightened", "anxious", "anxiety", "terrified"),
}
_WORD_TO_LABEL = {w: label for label, words in SYNONYMS.items() for w in words}
_FILLER = re.compile(r"\b(the|an?|emotion|emotions|expressed|is|of|this|audio|clip|speaker|"
                     r"label|answer|final|i think|it is|it's|sounds?|seems?)\b")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Segment:
    kind: str  # "think", "answer" or "other" (text outside the tags)
    text: str


@dataclass(frozen=True)
class ParsedOutput:
    think: str  # the reasoning, stripped
    answer: str | None  # the raw text of the last answer, stripped; None if there was none
    label: str | None  # one of LABELS, "unknown", or None without an answer
    format_ok: bool  # exactly <think>...</think><answer>...</answer>, nothing else around
    n_answers: int  # how many answers were given
    other: str  # text outside the tags, stripped


def normalize_label(text: str | None) -> str | None:
    """Map an answer's text to one of the nine labels, "unknown" if it names none (or several
    different ones), None for no answer at all."""
    if text is None:
        return None
    t = re.sub(r"[^a-z\s-]", " ", text.lower())
    t = re.sub(r"\s+", " ", _FILLER.sub(" ", t)).strip()
    if not t:
        return UNKNOWN
    if t in _WORD_TO_LABEL:
        return _WORD_TO_LABEL[t]
    found = []
    for phrase in sorted(_WORD_TO_LABEL, key=len, reverse=True):  # longest first
        if re.search(rf"\b{re.escape(phrase)}\b", t):
            found.append(_WORD_TO_LABEL[phrase])
            t = re.sub(rf"\b{re.escape(phrase)}\b", " ", t)
    distinct = set(found)
    return distinct.pop() if len(distinct) == 1 else UNKNOWN


def format_ok(text: str) -> bool:
    """True when `text` is exactly `<think>...</think><answer>...</answer>` (whitespace aside)."""
    return _FORMAT_RE.match(text) is not None


class StreamParser:
    """Feed chunks of generated text; get back segments of reasoning, answer and other text."""

    def __init__(self) -> None:
        self._held = ""  # text that may be the start of a tag
        self._state = "pre"  # pre (nothing yet), think, answer, outside
        self._text: list[str] = []  # everything fed, for the format check
        self._think: list[str] = []
        self._other: list[str] = []
        self._answers: list[list[str]] = []
        self._finished = False

    def feed(self, chunk: str) -> list[Segment]:
        """Consume a chunk; return the segments it completes (possibly none)."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        self._text.append(chunk)
        buf, out = self._held + chunk, []
        while True:
            m = _TAG_RE.search(buf)
            if not m:
                break
            self._emit(buf[: m.start()], out)
            self._switch(m.group(0).lower())
            buf = buf[m.end():]
        cut = _partial_tag_start(buf)
        self._emit(buf[:cut], out)
        self._held = buf[cut:]
        return out

    def finish(self) -> list[Segment]:
        """End of stream: flush held text, close an open answer."""
        out: list[Segment] = []
        if not self._finished:
            self._emit(self._held, out)
            self._held = ""
            self._finished = True
        return out

    def result(self) -> ParsedOutput:
        answers = ["".join(a).strip() for a in self._answers]
        answer = answers[-1] if answers else None
        return ParsedOutput(think="".join(self._think).strip(), answer=answer,
                            label=normalize_label(answer), format_ok=format_ok("".join(self._text)),
                            n_answers=len(answers), other="".join(self._other).strip())

    def _switch(self, tag: str) -> None:
        if tag == THINK_OPEN:
            self._state = "think"
        elif tag == THINK_CLOSE:
            self._state = "outside"
        elif tag == ANSWER_OPEN:
            self._answers.append([])
            self._state = "answer"
        elif tag == ANSWER_CLOSE:
            self._state = "outside"

    def _emit(self, text: str, out: list[Segment]) -> None:
        if not text:
            return
        if self._state in ("pre", "think"):
            self._think.append(text)
            kind = "think"
        elif self._state == "answer":
            self._answers[-1].append(text)
            kind = "answer"
        else:
            self._other.append(text)
            kind = "other"
        if out and out[-1].kind == kind:
            out[-1] = Segment(kind, out[-1].text + text)
        else:
            out.append(Segment(kind, text))


def parse(text: str) -> ParsedOutput:
    """Parse a complete output in one go."""
    p = StreamParser()
    p.feed(text)
    p.finish()
    return p.result()


def _partial_tag_start(buf: str) -> int:
    """Index from which `buf` could still become a tag (len(buf) if it cannot)."""
    start = buf.rfind("<")
    if start == -1:
        return len(buf)
    tail = buf[start:].lower()
    return start if any(tag.startswith(tail) for tag in TAGS) and len(tail) < 9 else len(buf)
