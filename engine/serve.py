"""An OpenAI-compatible HTTP server around the engine: the model on a GPU box, pages anywhere.

    python -m engine.serve --model ddwang2000/EmotionThinker            # 127.0.0.1:8000
    python -m engine.serve --model DIR --host 0.0.0.0 --api-key KEY     # any other address: a key
    emotionthinker-serve ...                                            # the same, installed

It speaks the protocol the ecosystem speaks (OpenAI's chat completions, which vLLM serves too):
- POST /v1/chat/completions: `messages` with one audio part, as OpenAI and vLLM accept it:
  {"type": "input_audio", "input_audio": {"data": BASE64, "format": "wav" | "mp3" | ...}} or
  {"type": "audio_url", "audio_url": {"url": "data:audio/...;base64,..."}} (data URLs only: the
  server fetches nothing). `stream: true` sends `chat.completion.chunk` server-sent events, then
  `data: [DONE]`. `max_tokens` (or `max_completion_tokens`), `temperature`, `top_p`, `seed`,
  `logprobs` / `top_logprobs` (0-20): each content token's log-probability under the model's
  raw logits, as OpenAI lays them out (`choices[0].logprobs.content`: token, logprob, bytes,
  top_logprobs). They are computed when the answer ends (engine.reasoning.logprobs), so a
  stream sends them all in its closing chunk, not with each text chunk.
  Without a system message or a question, the released model's prompt is used byte for byte;
  with them, they replace its system prompt or question. The answer's nine confidences come
  back in an extension field, `emotion` (on the last chunk when streaming).
- POST /v1/emotion (extension): a clip (`audio`: the same content part, or `audio_base64` and
  `format`) -> the prosody report, the reasoning, the label, nine scores, the checked claims and
  the timing, as one JSON object.
- GET /v1/models, GET /health.
Limits, each refusal a JSON error with its HTTP status: loopback only unless an API key is set
(401 without it), bodies over `--max-body-mb` (413), clips the engine refuses (400: empty, too
long, not audio ...), text over 4000 characters or holding special tokens (400), fields it does
not implement (`stop`, `tools`, `n` > 1 ...: 400, never silently ignored), more
than `--max-streams` requests at once (429, taken before the body is read), an unexpected
failure (500, a JSON error, the traceback only in the log). A request running over
`--timeout-s` is ended (its text so far is sent, `finish_reason` "length", `stop_detail`
"timeout"). A client that goes away, streaming or not, ends its generation at the next token,
which frees its place.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Request  # at module level: FastAPI reads the handlers' annotations here

from engine.audio import MAX_SECONDS
from engine.guard import LoopbackGuard, is_loopback
from engine.protocol import ApiError, clip_and_messages, load_clip, options, refuse_unsupported, top_logprobs

logger = logging.getLogger("engine.serve")

API_KEY_ENV = "ET_API_KEY"
@dataclass(frozen=True)
class ServeSettings:
    model_name: str  # what /v1/models lists and responses name
    api_key: str | None = None  # required as "Authorization: Bearer KEY" when set
    max_body_mb: float = 50.0  # larger bodies are refused (413)
    max_seconds: float = MAX_SECONDS  # longer clips are refused (400)
    max_streams: int = 16  # requests running or waiting at once; more get 429
    timeout_s: float = 600.0  # a request running longer is ended


def create_app(reasoner, settings: ServeSettings):
    """The FastAPI app around a Reasoner (engine.reasoning.reasoner)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="EmotionThinker (OpenAI-compatible)", docs_url=None, redoc_url=None)
    slots = threading.BoundedSemaphore(settings.max_streams)

    @app.exception_handler(ApiError)
    async def refuse(_request, exc: ApiError):
        return JSONResponse({"error": {"message": exc.message, "type": exc.kind, "code": exc.status}},
                            status_code=exc.status)

    @app.exception_handler(Exception)
    async def defect(_request, exc: Exception):  # never a traceback to the client
        logger.error("request failed", exc_info=exc)
        return JSONResponse({"error": {"message": f"internal error ({type(exc).__name__})",
                                       "type": "server_error", "code": 500}}, status_code=500)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": settings.model_name, "waiting": reasoner.waiting()}

    @app.get("/v1/models")
    async def models(request: Request):
        _authorise(request, settings)
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model",
                                            "created": 0, "owned_by": "emotionthinker"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        _authorise(request, settings)
        slot = _Slot(slots, settings)  # first: a crowd of uploads is refused before it is read
        try:
            body = await _json_body(request, settings)
            run = await run_in_threadpool(_chat_run, reasoner, body, settings)
        except BaseException:
            slot.release()
            raise
        if body.get("stream"):
            # the slot is freed when the stream ends, when the client leaves before it starts
            # (the background task runs either way), or when the generator closes: once
            return StreamingResponse(_sse(run, settings.model_name, slot), media_type="text/event-stream",
                                     background=BackgroundTask(slot.release))
        try:
            text = await _watching(request, run, run_in_threadpool)
        finally:
            slot.release()
        return _completion(run, text, settings.model_name)

    @app.post("/v1/emotion")
    async def emotion(request: Request):
        _authorise(request, settings)
        slot = _Slot(slots, settings)
        try:
            body = await _json_body(request, settings)
            part = body.get("audio") or {"type": "input_audio", "input_audio": {
                "data": body.get("audio_base64"), "format": body.get("format", "wav")}}
            clip = await run_in_threadpool(load_clip, part, settings.max_seconds)
            return await run_in_threadpool(_explain, reasoner, clip, options(body), settings.timeout_s)
        finally:
            slot.release()

    return app


class _Slot:
    """One of the server's `max_streams` places, taken now (429 when none is free) and given
    back exactly once, whichever path gets there first."""

    def __init__(self, slots: threading.BoundedSemaphore, settings: ServeSettings) -> None:
        if not slots.acquire(blocking=False):
            raise ApiError(429, f"{settings.max_streams} requests are running or waiting: try again "
                                "shortly", "rate_limit_error")
        self._slots, self._lock, self._held = slots, threading.Lock(), True

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._slots.release()


def _chat_run(reasoner, body: dict, settings: ServeSettings) -> _Run:
    """Everything that can be refused, done before an answer starts (off the event loop)."""
    refuse_unsupported(body)
    top = top_logprobs(body)
    clip, messages = clip_and_messages(body, settings.max_seconds)
    return _Run(reasoner, clip, messages, options(body), settings.timeout_s, top)


async def _watching(request, run: _Run, run_in_threadpool) -> str:
    """Collect a whole answer, ending it if the client goes away meanwhile."""
    import asyncio

    task = asyncio.ensure_future(run_in_threadpool(run.collect))
    while not task.done():
        await asyncio.wait({task}, timeout=0.5)
        if not task.done() and await request.is_disconnected():
            run.stop.set()
    return task.result()


class _Run:
    """One request's generation, collected or streamed, ended by a timeout or a gone client.
    Its prompt and audio features are built at once (a prompt the processor refuses is a 400
    before any answer starts)."""

    def __init__(self, reasoner, clip, messages, options, timeout_s: float,
                 top_logprobs: int | None = None) -> None:
        self.reasoner, self.timeout_s, self.stop = reasoner, timeout_s, threading.Event()
        self.answer = self.done = None
        self.timed_out = False
        try:
            self.request = reasoner.prepare(clip, options, stop=self.stop, messages=messages,
                                            logprobs=top_logprobs)
        except ValueError as exc:
            raise ApiError(400, f"the prompt cannot be built: {exc}") from None

    def chunks(self):
        """The raw text as written, chunk by chunk (a generator: closing it ends the run)."""
        from engine.reasoning.reasoner import Answer, Done, TextDelta

        timer = threading.Timer(self.timeout_s, self._time_out)
        timer.start()
        self.reasoner.enqueue(self.request)
        try:
            for event in self.reasoner.events(self.request, raw=True):
                if isinstance(event, TextDelta):
                    yield event.text
                elif isinstance(event, Answer):
                    self.answer = event
                elif isinstance(event, Done):
                    self.done = event
        finally:
            timer.cancel()
            self.stop.set()
            self.reasoner.release(self.request)

    def collect(self) -> str:
        return "".join(self.chunks())

    def _time_out(self) -> None:
        self.timed_out = True
        self.stop.set()

    @property
    def finish_reason(self) -> str:
        """OpenAI's values only: a timeout is "length" (cut short), said in `stop_detail`."""
        if self.timed_out:
            return "length"
        return "length" if self.done is not None and self.done.stop_reason == "length" else "stop"

    @property
    def stop_detail(self) -> str:
        return "timeout" if self.timed_out else (self.done.stop_reason if self.done else "stopped")

    def emotion(self) -> dict[str, Any] | None:
        a = self.answer
        return None if a is None else {"label": a.label, "scored_label": a.scored_label,
                                       "scores": a.scores, "format_ok": a.format_ok}

    def logprobs(self) -> dict[str, Any] | None:
        """OpenAI's `logprobs` object for the content tokens (special tokens, which the text
        leaves out, are left out here too); None when not asked for."""
        if self.request.top_logprobs is None or (self.done is not None and self.done.logprobs_error):
            return None  # asked for but failed: null, and `logprobs_error` says why
        from engine.reasoning.logprobs import token_bytes

        tokenizer = self.reasoner.tokenizer
        special = set(tokenizer.all_special_ids)
        kept = [t for t in (self.done.logprobs if self.done else ()) if t.token_id not in special]
        ids = sorted({t.token_id for t in kept} | {i for t in kept for i, _ in t.top})
        spelled = dict(zip(ids, token_bytes(tokenizer, ids)))

        def entry(token_id: int, logprob: float) -> dict[str, Any]:
            raw = spelled[token_id]
            return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob,
                    "bytes": list(raw)}

        return {"content": [{**entry(t.token_id, t.logprob),
                             "top_logprobs": [entry(i, lp) for i, lp in t.top]} for t in kept],
                "refusal": None}

    def logprobs_error(self) -> dict[str, str]:
        """{"logprobs_error": why} when log-probabilities were asked for and failed, else {}."""
        why = self.done.logprobs_error if self.done is not None else None
        return {"logprobs_error": why} if why and self.request.top_logprobs is not None else {}

    def usage(self) -> dict[str, int]:
        d = self.done
        prompt = d.prompt_tokens if d else 0
        completion = d.n_tokens if d else 0
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}


def _completion(run: _Run, text: str, model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": run.logprobs(), "finish_reason": run.finish_reason}],
            "usage": run.usage(), "emotion": run.emotion(), "stop_detail": run.stop_detail,
            **run.logprobs_error()}


def _sse(run: _Run, model: str, slot: _Slot):
    """Server-sent chat.completion.chunk events (a sync generator: Starlette iterates it in a
    thread, and closes it when the client goes away, which ends the generation)."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None, logprobs: dict | None = None, **extra) -> str:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                             "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        for text in run.chunks():
            yield chunk({"content": text})
        yield chunk({}, run.finish_reason, run.logprobs(), usage=run.usage(), emotion=run.emotion(),
                    stop_detail=run.stop_detail, **run.logprobs_error())
        yield "data: [DONE]\n\n"
    except Exception as exc:  # noqa: BLE001 - the stream has begun: the error goes in it
        logger.exception("generation failed")
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error'}})}\n\n"
    finally:
        slot.release()


def _explain(reasoner, clip, options, timeout_s: float) -> dict[str, Any]:
    """/v1/emotion: everything at once (prosody, reasoning, label, scores, claims, timing)."""
    from engine.grounding import agreement, check
    from engine.prosody import analyze
    from engine.prosody.describe import describe

    report = analyze(clip)
    run = _Run(reasoner, clip, None, options, timeout_s)
    text = run.collect()
    answer, done = run.answer, run.done
    claims = check(answer.think, report) if answer else []
    return {"prosody": report.to_dict(contours=False), "summary": describe(report),
            "reasoning": {"text": text, "think": answer.think if answer else None,
                          "answer": answer.raw if answer else None},
            "emotion": run.emotion(), "claims": [c.to_dict() for c in claims],
            "grounding_agreement": agreement(claims), "finish_reason": run.finish_reason,
            "timing": None if done is None else {"ttft_s": done.ttft_s, "tok_per_s": done.tok_per_s,
                                                 "n_tokens": done.n_tokens, "total_s": done.total_s}}


def _authorise(request, settings: ServeSettings) -> None:
    if settings.api_key is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode()):
        raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                       "authentication_error")


async def _json_body(request, settings: ServeSettings) -> dict[str, Any]:
    limit = int(settings.max_body_mb * 2**20)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is {int(declared) / 2**20:.1f} MB; the limit is "
                            f"{settings.max_body_mb:g} MB")
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > limit:
            raise ApiError(413, f"the body is over the limit of {settings.max_body_mb:g} MB")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def start(reasoner, settings: ServeSettings, port: int, host: str = "127.0.0.1"):
    """The server in a daemon thread of this process, started (for tests and benchmarks):
    returns the uvicorn.Server; `server.should_exit = True` stops it."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(reasoner, settings), host=host, port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, name="engine-serve", daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.environ.get("ET_MODEL"), required=os.environ.get("ET_MODEL") is None,
                    help="hub id or checkpoint directory")
    ap.add_argument("--quant", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                    help=f"required from clients as a Bearer token (or ${API_KEY_ENV}); needed to bind "
                         "any address but loopback")
    ap.add_argument("--max-body-mb", type=float, default=50.0)
    ap.add_argument("--max-seconds", type=float, default=MAX_SECONDS)
    ap.add_argument("--max-streams", type=int, default=16)
    ap.add_argument("--timeout-s", type=float, default=600.0)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--no-compile", action="store_true")
    a = ap.parse_args(argv)
    if not is_loopback(a.host) and not a.api_key:
        ap.error(f"binding {a.host} (not loopback) needs an API key: --api-key or ${API_KEY_ENV}")
    import uvicorn

    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Reasoner

    loaded = load_model(a.model, quant=a.quant, device=a.device,
                        progress=lambda m: logger.info("%s", m))
    reasoner = Reasoner(loaded, compile=False if a.no_compile else None, max_batch=a.max_batch)
    settings = ServeSettings(model_name=str(a.model), api_key=a.api_key, max_body_mb=a.max_body_mb,
                             max_seconds=a.max_seconds, max_streams=a.max_streams, timeout_s=a.timeout_s)
    app = create_app(reasoner, settings)
    # on loopback, the app's own guard: no other Host (DNS rebinding), no other page's POSTs
    app.add_middleware(LoopbackGuard, enabled=is_loopback(a.host))
    uvicorn.run(app, host=a.host, port=a.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
