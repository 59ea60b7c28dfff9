"""The OpenAI chat-completions request as engine.serve reads it: checked, or refused by name.

    from engine.protocol import ApiError, clip_and_messages, options, refuse_unsupported, top_logprobs
    refuse_unsupported(body)                         # stop, tools, n > 1 ...: ApiError(400)
    clip, messages = clip_and_messages(body, 120.0)  # the one audio part; None: the released prompt
    options(body), top_logprobs(body)                # GenerationOptions; None or 0-20

Every refusal is an ApiError carrying the HTTP status and the reason in words; engine.serve
turns it into OpenAI's error object. The audio comes as OpenAI and vLLM send it: an
`input_audio` part (base64 and a format) or a `data:` `audio_url` (the server fetches nothing).
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile

from engine.reasoning.prompts import AUDIO_PREFIX, QUESTION, SYSTEM_PROMPT

MAX_TOKENS = 8192  # the most new tokens one request may ask for
MAX_TEXT_CHARS = 4000  # the most text (system prompt + question) one request may send
DATA_URL = re.compile(r"^data:audio/([\w.+-]+)?(?:;[^,]*)?;base64,(.*)$", re.DOTALL)


class ApiError(Exception):
    """A refusal: an HTTP status and the reason in words (OpenAI's error object)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def clip_and_messages(body: dict, max_seconds: float):
    """The one audio part of the conversation, as a Clip, and the conversation for the model
    (None: the released one, byte for byte)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list")
    audio, system, question = [], [], []
    for m in messages:
        if not isinstance(m, dict):
            raise ApiError(400, "each message must be an object with a role and content")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise ApiError(400, "a message's content must be text or a list of parts")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_audio", "audio_url"):
                audio.append(part)
            elif kind == "text" and isinstance(part.get("text"), str):
                (system if m.get("role") == "system" else question).append(part["text"])
            else:
                raise ApiError(400, f"unsupported content part {kind!r}: send text and one audio "
                                    "part (input_audio or a data: audio_url)")
    if len(audio) != 1:
        raise ApiError(400, f"send exactly one audio part; got {len(audio)}")
    text = system + question
    if sum(map(len, text)) > MAX_TEXT_CHARS:
        raise ApiError(400, f"the messages' text is over {MAX_TEXT_CHARS} characters: this model "
                            "answers one question about one clip")
    if any("<|" in t for t in text):
        raise ApiError(400, "the text holds a special token (<|...|>): send plain text")
    clip = load_clip(audio[0], max_seconds)
    released = (not system or system == [SYSTEM_PROMPT]) and \
        (not question or question in ([AUDIO_PREFIX + QUESTION], [QUESTION]))
    if released:  # what engine.remote sends: the released prompt, byte for byte
        return clip, None
    return clip, [
        {"role": "system", "content": [{"type": "text", "text": "\n".join(system) or SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "audio"}, {"type": "text",
                                                         "text": "\n".join(question) or AUDIO_PREFIX + QUESTION}]}]


def load_clip(part: dict, max_seconds: float):
    from engine.audio import AudioError, load_audio

    if not isinstance(part, dict):
        raise ApiError(400, "the audio must be a content part: {\"type\": \"input_audio\", ...}")

    if part.get("type") == "audio_url":
        url = (part.get("audio_url") or {}).get("url", "")
        m = DATA_URL.match(url) if isinstance(url, str) else None
        if not m:
            raise ApiError(400, "audio_url must be a data: URL (data:audio/wav;base64,...); "
                                "the server fetches nothing")
        fmt, data = m.group(1) or "wav", m.group(2)
    else:
        spec = part.get("input_audio") or {}
        fmt, data = spec.get("format") or "wav", spec.get("data")
    if not isinstance(data, str) or not data:
        raise ApiError(400, "the audio part holds no data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "the audio data is not valid base64") from None
    suffix = "." + re.sub(r"[^a-z0-9]", "", str(fmt).lower().replace("x-", ""))[:8]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(raw)
        f.flush()
        try:
            return load_audio(f.name, max_seconds=max_seconds)
        except AudioError as exc:
            raise ApiError(400, str(exc)) from None


def refuse_unsupported(body: dict) -> None:
    """Fields this server would otherwise ignore, misleading the client: refused by name."""
    for key in ("stop", "tools", "tool_choice", "functions", "response_format"):
        if body.get(key):
            raise ApiError(400, f"{key} is not supported by this server")
    if body.get("n") not in (None, 1):
        raise ApiError(400, "n must be 1: one answer per request")


def top_logprobs(body: dict) -> int | None:
    """How many alternatives per token to return (None: no log-probabilities), as OpenAI
    reads the two fields: `top_logprobs` only together with `logprobs: true`."""
    from engine.reasoning.logprobs import MAX_TOP

    wanted, top = body.get("logprobs"), body.get("top_logprobs")
    if wanted not in (None, True, False):
        raise ApiError(400, f"logprobs must be true or false; got {wanted!r}")
    if top is not None:
        if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP:
            raise ApiError(400, f"top_logprobs must be a whole number from 0 to {MAX_TOP}; got {top!r}")
        if not wanted:
            raise ApiError(400, "top_logprobs needs logprobs: true")
    return (top or 0) if wanted else None


def options(body: dict):
    """Generation options from the request; a field sent as null means its default."""
    from engine.reasoning.options import GenerationOptions

    def value(*keys, default):
        for key in keys:
            if body.get(key) is not None:
                return body[key]
        return default

    tokens = value("max_completion_tokens", "max_tokens", default=1024)
    try:
        if not isinstance(tokens, int) or isinstance(tokens, bool) or not 1 <= tokens <= MAX_TOKENS:
            raise ValueError(f"max_tokens must be a whole number from 1 to {MAX_TOKENS}; got {tokens!r}")
        seed = value("seed", default=None)
        return GenerationOptions(max_new_tokens=tokens, temperature=float(value("temperature", default=0.0)),
                                 top_p=float(value("top_p", default=1.0)),
                                 seed=None if seed is None else int(seed))
    except (TypeError, ValueError) as exc:
        raise ApiError(400, str(exc)) from None
