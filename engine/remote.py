"""Reasoning from a remote OpenAI-compatible server, as the local engine gives it.

    from engine.remote import RemoteReasoner
    remote = RemoteReasoner("http://gpu-box:8000/v1", api_key="KEY")   # engine.serve, or vLLM
    remote.check()                      # the model it serves; RemoteUnavailable saying why
    for event in remote.stream(clip, options):   # TextDelta ..., Answer, Done: Reasoner's events
        ...

The app (`--backend URL`) and the CLI (`analyze --backend URL`) use it in place of a local
Reasoner: prosody and the grounding check stay local. The clip goes as a WAV `input_audio` part
with the released system prompt and question sent explicitly (engine.serve recognises them as
the released prompt, byte for byte; vLLM would otherwise use the checkpoint's default system
prompt); the streamed text is parsed
into think / answer exactly as local text is (engine.reasoning.parse).

The nine confidences: from this project's server (engine.serve, recognised by its model list's
`owned_by`), its `emotion` extension, computed as the local engine does. From any other server
(vLLM), its log-probabilities: the stream asks for `logprobs` with the 20 best alternatives
(OpenAI's and vLLM's bound), and `first_token_scores` reads them at the first token of the
answer: each alternative that begins exactly one label's spelling gives that label its
probability, and the nine are normalised over what was found. An approximation, said in
`Answer.scores_note`: the engine scores each label's whole spelling (mean log-probability of all
its tokens), this only the first token, and a label outside the 20 best gets 0. Where the
model wrote no answer, or the server sent no log-probabilities, there are no scores, and the
note says why. A server that is down, slow or answers garbage raises RemoteUnavailable within
the timeout, with the reason.
"""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from collections.abc import Iterator

from engine.audio import Clip
from engine.reasoning.options import GenerationOptions
from engine.reasoning.parse import StreamParser
from engine.reasoning.prompts import ANSWER_OPEN, AUDIO_PREFIX, LABEL_SPELLINGS, QUESTION, SYSTEM_PROMPT
from engine.reasoning.reasoner import Answer, Done, GenerationError, TextDelta

API_KEY_ENV = "ET_BACKEND_KEY"
CONNECT_TIMEOUT_S = 5.0  # a backend that does not answer this fast is reported down
READ_TIMEOUT_S = 120.0  # the longest silence between two chunks of a stream
FINISH = {"stop": "eos", "length": "length"}  # OpenAI finish_reason -> the engine's stop_reason
TOP_LOGPROBS = 20  # alternatives asked per token: OpenAI's and vLLM's (default) maximum
OWNER = "emotionthinker"  # engine.serve's `owned_by`: a server with the `emotion` extension
LOGPROB_NOTE = ("confidences from the backend's log-probabilities of each label's first token "
                "(an approximation of the engine's whole-label scores)")


class RemoteUnavailable(GenerationError):
    """The backend is down, refuses, or answers something that is not a chat completion."""


class RemoteReasoner:
    def __init__(self, url: str, api_key: str | None = None, model: str | None = None,
                 confidences: str = "auto") -> None:
        """`confidences`: "auto" (the `emotion` extension from engine.serve, log-probabilities
        from any other server), "extension" or "logprobs" (that way whatever the server)."""
        import httpx
        from openai import OpenAI

        if confidences not in ("auto", "extension", "logprobs"):
            raise ValueError(f"confidences must be auto, extension or logprobs; got {confidences!r}")
        self.url, self.model, self.confidences = url.rstrip("/"), model, confidences
        self.extension: bool | None = None  # the server sends the `emotion` extension
        self.no_logprobs = False  # the server refused `logprobs` once: not asked again
        timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        self.client = OpenAI(base_url=self.url, api_key=api_key or "none", max_retries=0,
                             timeout=timeout)

    def check(self) -> str:
        """The model the backend serves (the first it lists, unless one was named)."""
        try:
            listed = self.client.models.list(timeout=CONNECT_TIMEOUT_S).data
            served = [m.id for m in listed]
        except Exception as exc:  # noqa: BLE001 - connection refused, timeout, 401, garbage ...
            raise RemoteUnavailable(f"the backend {self.url} does not answer: {_why(exc)}") from None
        owners = {m.id: getattr(m, "owned_by", None) for m in listed}
        if not served:
            raise RemoteUnavailable(f"the backend {self.url} serves no model")
        if self.model is None:
            self.model = served[0]
        elif self.model not in served:
            raise RemoteUnavailable(f"the backend {self.url} does not serve {self.model} "
                                    f"(it serves {', '.join(served)})")
        self.extension = (self.confidences == "extension" or
                          (self.confidences == "auto" and owners.get(self.model) == OWNER))
        return self.model

    def _create(self, ask: dict, **request):
        """The streaming chat completion; a server that refuses `logprobs` is asked again
        without them (its answers then come without confidences, and the note says why)."""
        try:
            return self.client.chat.completions.create(**request, **ask)
        except Exception as exc:  # noqa: BLE001 - only a refusal of logprobs is retried
            if not ask or not _refuses_logprobs(exc):
                raise
            self.no_logprobs = True
            return self.client.chat.completions.create(**request)

    def stream(self, clip: Clip, options: GenerationOptions | None = None, *,
               stop: threading.Event | None = None, **fields) -> Iterator[TextDelta | Answer | Done]:
        """Reasoner.stream's events for `clip`, from the backend; keyword `fields` override
        single options (`stream(clip, max_new_tokens=256)`) as there."""
        from dataclasses import fields as option_fields
        from dataclasses import replace

        known = {f.name for f in option_fields(GenerationOptions)}
        unknown = set(fields) - known - {"score", "wait_s", "queued"}  # local-engine-only knobs
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}")
        options = replace(options or GenerationOptions(), **{k: v for k, v in fields.items() if k in known})
        model = self.model if self.extension is not None else self.check()
        start = time.perf_counter()
        parser, first, usage, finish, emotion, n_chunks = StreamParser(), None, None, None, None, 0
        tokens: list[tuple[str, list[tuple[str, float]]]] = []  # (token, its alternatives)
        ask = {} if self.extension or self.no_logprobs else {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
        try:
            stream = self._create(
                ask, model=model, stream=True, max_tokens=options.max_new_tokens,
                temperature=options.temperature, top_p=options.top_p, seed=options.seed,
                messages=[{"role": "system", "content": SYSTEM_PROMPT},  # explicit: vLLM would
                          {"role": "user", "content": [                      # use its own default
                              {"type": "input_audio", "input_audio": {"data": _wav_base64(clip),
                                                                      "format": "wav"}},
                              {"type": "text", "text": AUDIO_PREFIX + QUESTION}]}])
            with stream:
                for chunk in stream:
                    if stop is not None and stop.is_set():
                        finish = "stopped"
                        break  # leaving the stream closes the connection: the server stops
                    extra = chunk.model_extra or {}
                    if "error" in extra:
                        raise RemoteUnavailable(f"the backend failed: {extra['error']}")
                    emotion = extra.get("emotion") or emotion
                    usage = chunk.usage or usage
                    for choice in chunk.choices:
                        finish = choice.finish_reason or finish
                        for t in (choice.logprobs.content or []) if choice.logprobs else []:
                            tokens.append((t.token, [(a.token, a.logprob) for a in t.top_logprobs or []]))
                        text = choice.delta.content if choice.delta else None
                        if text:
                            first = first or time.perf_counter()
                            n_chunks += 1
                            for segment in parser.feed(text):
                                yield TextDelta(segment.kind, segment.text)
        except RemoteUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - down, timed out, refused, not a chat completion
            raise RemoteUnavailable(f"the backend {self.url} failed: {_why(exc)}") from None
        for segment in parser.finish():
            yield TextDelta(segment.kind, segment.text)
        parsed = parser.result()
        if self.extension:
            scores = dict((emotion or {}).get("scores") or {})
            note = "" if scores else "no confidences: the backend sent none"
        elif tokens:
            scores, note = first_token_scores(tokens)
        else:
            scores, note = {}, "no confidences: the backend returns no log-probabilities"
        yield Answer(label=parsed.label, raw=parsed.answer, scores=scores,
                     scored_label=max(scores, key=scores.get) if scores else None, forced=False,
                     format_ok=parsed.format_ok, think=parsed.think, scores_note=note)
        end = time.perf_counter()
        n = usage.completion_tokens if usage is not None else n_chunks
        decode_s = end - (first or end)
        yield Done(ttft_s=(first or end) - start, n_tokens=n,
                   tok_per_s=(n - 1) / decode_s if decode_s > 0 and n > 1 else 0.0,
                   stop_reason=FINISH.get(finish, finish or "stopped"), total_s=end - start,
                   prompt_tokens=usage.prompt_tokens if usage is not None else 0, audio_tokens=0,
                   decoder=f"remote {self.url}")


_BEFORE_LABEL = " \t\n\"'*_`"  # what a model may write between <answer> and the label


def _refuses_logprobs(exc: Exception) -> bool:
    """A 400 that names log-probabilities: a server that does not offer them."""
    return getattr(exc, "status_code", None) == 400 and "logprob" in _why(exc).lower()


def first_token_scores(tokens: list[tuple[str, list[tuple[str, float]]]]) -> tuple[dict[str, float], str]:
    """(label -> probability, note) from a completion's log-probabilities: (token text, its
    alternatives as (text, logprob)) in order. Read at the answer's first token (after the last
    `<answer>` and any whitespace); see the module docstring. Empty scores, with the reason,
    when the text has no answer or no alternative begins a label."""
    import math

    text = "".join(t for t, _ in tokens)
    found = list(re.finditer(re.escape(ANSWER_OPEN), text, re.IGNORECASE))
    if not found:
        return {}, "no confidences: the model wrote no answer"
    start, end = found[-1].end(), 0
    for token, alternatives in tokens:
        begin, end = end, end + len(token)
        if end <= start or not any(ch.isalnum() for ch in token[max(0, start - begin):]):
            continue  # still the tag, or what a model puts before a label: space, quotes, "**"
        tag_part = token[:max(0, start - begin)]  # a token may join the tag's end to the label
        mass = dict.fromkeys(LABEL_SPELLINGS, 0.0)
        for alt, logprob in alternatives:
            if not alt.startswith(tag_part):
                continue
            begun = alt[len(tag_part):].lstrip(_BEFORE_LABEL).lower()
            owners = {label for label, spellings in LABEL_SPELLINGS.items()
                      if begun and any(s.startswith(begun) or begun.startswith(s) for s in spellings)}
            if len(owners) == 1:  # a token shared by two labels ("s": sad, surprise) says neither
                mass[owners.pop()] += math.exp(logprob)
        total = sum(mass.values())
        if total <= 0:
            return {}, "no confidences: no label among the backend's likeliest first tokens"
        return {label: m / total for label, m in mass.items()}, LOGPROB_NOTE
    return {}, "no confidences: the answer is empty"


def _wav_base64(clip: Clip) -> str:
    import soundfile as sf

    from engine.audio import to_pcm16

    buf = io.BytesIO()
    sf.write(buf, to_pcm16(clip.samples)[0], clip.sample_rate_hz, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def _why(exc: Exception) -> str:
    """The reason in one line: the server's own message when it sent one."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else None
        if message:
            return f"{message} (HTTP {getattr(exc, 'status_code', '?')})"
    return f"{type(exc).__name__}: {exc}"
