"""Words on the screen: the prosody summary, the model's status, the reasoning, the claims."""

from __future__ import annotations

import html
import re

from engine.audio import Clip
from engine.prosody import ProsodyReport
from engine.prosody.describe import describe

# plain marks that every system font has (no colour-emoji font needed)
VERDICT_MARK = {"supported": "✓ supported", "contradicted": "✗ **contradicted**",
                "not measured": "– not measured"}
STATE_MARK = {"loading": "○", "ready": "●", "unavailable": "✗", "off": "○"}


def summary_markdown(report: ProsodyReport, clip: Clip) -> str:
    """The plain-language prosody summary, with facts about the recording."""
    notes = []
    if clip.clipped:
        notes.append("the recording is clipped (too loud for the microphone)")
    if clip.silent:
        notes.append("the recording is silent")
    if clip.source_channels > 1:
        notes.append(f"{clip.source_channels} channels mixed to mono")
    head = f"**{clip.duration_s:.1f} s** at {clip.source_rate_hz} Hz"
    if report.speech_found and report.pitch.reliable:
        head += f" · voice type: {html.escape(report.voice_type.reason, quote=False)}"
    body = "\n".join(f"- {line}" for line in describe(report))
    tail = f"\n\n_Note: {'; '.join(notes)}._" if notes else ""
    return f"{head}\n\n{body}{tail}"


def status_markdown(state: str, message: str) -> str:
    words = {"loading": "Loading the model", "ready": "Model ready",
             "unavailable": "Model unavailable — prosody still works", "off": "Prosody only"}
    return f"{STATE_MARK.get(state, '')} **{words.get(state, state)}:** {html.escape(message, quote=False)}"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>])")  # CommonMark's escapable punctuation


def reasoning_markdown(think: str, answer: str | None = None, waiting: int | None = None) -> str:
    if waiting is not None:
        return (f"_Waiting for the model: you are {_ordinal(waiting)} in line…_" if waiting > 1
                else "_Waiting for the model: you are next…_")
    text = plain(think.strip()) or "_…_"
    if answer is not None:
        text += f"\n\n**Answer:** {plain(answer)}"
    return text


def plain(text: str) -> str:
    """The model's words shown as text, never as markup: HTML escaped, and every Markdown
    character backslash-escaped, so a link or an image it writes is not fetched or followed."""
    return _MARKDOWN.sub(r"\\\1", html.escape(text, quote=False))


def claims_markdown(claims: list) -> str:
    if not claims:
        return "_The reasoning makes no prosodic claim that can be checked._"
    rows = ["| the reasoning says | verdict | measured |", "| --- | --- | --- |"]
    for c in claims:
        said = ("not " if c.negated else "") + f"“{plain(c.text)}”"
        rows.append(f"| {said} | {VERDICT_MARK[c.verdict]} | {html.escape(c.measured, quote=False)} |")
    checked = [c for c in claims if c.verdict != "not measured"]
    share = (f"\n\n{sum(c.verdict == 'supported' for c in checked)} of {len(checked)} checkable "
             "claims agree with the measurements." if checked else "")
    return "\n".join(rows) + share


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def imitation_markdown(result) -> str:
    """The imitation's scores as a table a student reads: score, the measure, what to change."""
    rows = ["| | score | measured | feedback |", "| --- | --- | --- | --- |"]
    for s in result.scores:
        score = "–" if s.score is None else f"**{s.score:.0f}**"
        rows.append(f"| {s.name} | {score} | {html.escape(s.measure, quote=False)} | "
                    f"{html.escape(s.feedback, quote=False)} |")
    overall = "–" if result.overall is None else f"{result.overall:.0f} / 100"
    return f"**Overall: {overall}**\n\n" + "\n".join(rows)


def failures_markdown(failures) -> str:
    """The files a batch could not analyse, each with its reason (empty when none failed)."""
    if not failures:
        return ""
    lines = [f"- {plain(name)}: {plain(reason)}" for name, reason in failures]
    return f"**{len(failures)} not analysed:**\n" + "\n".join(lines)
