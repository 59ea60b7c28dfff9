"""Streaming emotion reasoning: `Reasoner(loaded).stream(clip)` yields what the model writes.

    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Reasoner, TextDelta, Answer, Done
    reasoner = Reasoner(load_model())
    for event in reasoner.stream(clip, max_new_tokens=1024):
        if isinstance(event, TextDelta): print(event.text, end="")        # think / answer / other
        elif isinstance(event, Answer): print(event.label, event.scores)   # after the reasoning
        elif isinstance(event, Done): print(event.tok_per_s)               # timing, last

The prompt is the released model's, byte for byte (engine.reasoning.prompts). The model runs on
one thread, the scheduler (engine.reasoning.scheduler), which serves requests in arrival order
and, with the engine's own decode loop, several at once (`max_batch`; arrivals join the running
batch between two of its steps); each
caller's stream decodes its tokens incrementally (no per-token re-decoding of the whole text).
The audio, image and video placeholder tokens can never be sampled.

Concurrency: any number of callers may stream at once. A caller waits in line until its request
is admitted to a batch, up to `wait_s` seconds (None: as long as it takes), then gets
`ReasonerBusy`; with `queued=True` it sees its place in line as `Queued(position)` events
meanwhile. Cancelling: set the `stop` event, or simply stop iterating (close the generator): a
waiting request leaves the line, a running one ends at its next token and the others in its batch
go on. An exception inside generation reaches every caller of that batch as `GenerationError`; a
dead scheduler never leaves a caller waiting.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from engine.audio import SAMPLE_RATE_HZ, Clip
from engine.reasoning.decoder import Decoder
from engine.reasoning.logprobs import MAX_TOP, TokenLogprob
from engine.reasoning.options import GenerationOptions
from engine.reasoning.parse import StreamParser
from engine.reasoning.prompts import build_messages
from engine.reasoning.scheduler import Finished, Request, Scheduler

if TYPE_CHECKING:
    from engine.reasoning.model import LoadedModel

POLL_S = 0.25  # how often a waiting caller checks its place in line and that the model lives
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queued:
    position: int  # 1 = the next request the model will serve


@dataclass(frozen=True)
class TextDelta:
    kind: str  # "think", "answer" or "other" (text outside the tags); "raw" with `raw=True`
    text: str


@dataclass(frozen=True)
class Answer:
    label: str | None  # the label the model wrote (normalised), "unknown", or None if it gave none
    raw: str | None  # the answer's text as written
    scores: dict[str, float]  # probability per label (sums to 1); empty when not scored
    scored_label: str | None  # the most probable label by `scores`
    forced: bool  # scores computed after appending the answer tag (no answer was generated)
    format_ok: bool  # the output was exactly <think>...</think><answer>...</answer>
    think: str  # the whole reasoning
    scores_note: str = ""  # where `scores` came from when not the engine's own label scoring, or
    #   why there are none (a remote backend: engine.remote)


@dataclass(frozen=True)
class Done:
    ttft_s: float  # from the call to the first generated token (features + prefill)
    n_tokens: int  # tokens generated
    tok_per_s: float  # decode speed after the first token, stalls excluded
    stop_reason: str  # "eos", "length" (max_new_tokens), or "stopped"
    total_s: float  # the whole call, scoring included
    prompt_tokens: int
    audio_tokens: int
    score_s: float = 0.0  # time spent scoring the nine labels
    token_ids: tuple[int, ...] = ()  # the generated token ids, special tokens included
    decoder: str = "generate"  # "compiled", "static" (the engine's loop, eager) or "generate"
    compile_s: float = 0.0  # of ttft_s and the decode time, seconds spent compiling
    batch: int = 1  # requests that had shared its batch when it ended (itself and any that joined)
    queued_s: float = 0.0  # of ttft_s, seconds spent waiting in line
    stalled_s: float = 0.0  # decoding time lost to stalls (process stopped or starved): not in tok_per_s
    logprobs: tuple[TokenLogprob, ...] = ()  # one per generated token, with `logprobs=` asked (else empty)
    logprobs_error: str | None = None  # why they are missing although asked for


ReasoningEvent = TextDelta | Answer | Done  # what Reasoner.stream yields


class ReasonerBusy(RuntimeError):
    """Another generation holds the model and did not finish within the wait."""


class GenerationError(RuntimeError):
    """Generation failed inside the worker; the original exception is the __cause__."""


class Reasoner:
    """Streams the thinker's reasoning about a clip; see the module docstring."""

    def __init__(self, loaded: LoadedModel, *, audio_prefix: bool = True,
                 compile: bool | None = None, static_cache: bool | None = None,
                 max_batch: int = 8) -> None:
        """How it decodes (the same tokens every way): `static_cache` chooses the engine's own
        loop (engine.reasoning.decoder) over transformers' `generate`, and `compile` compiles
        that loop's step. By default both are on with CUDA and off elsewhere: the compiled step
        is what makes a GPU fast, while on a CPU the static cache's full-bucket attention costs
        more than it saves (bench/reasoning.py --deep: eager loop 95 tok/s, generate 139,
        compiled 153) and a compile takes longer than most single clips. `max_batch`: how many
        requests may decode together (the engine's loop only; `generate` serves one at a time)."""
        self.loaded = loaded
        self.model, self.processor = loaded.model, loaded.processor
        self.tokenizer = self.processor.tokenizer
        self.prompt = self.processor.apply_chat_template(
            build_messages(audio_prefix), add_generation_prompt=True, tokenize=False)
        if compile is None:
            compile = self.model.device.type == "cuda"
        if static_cache is None:
            static_cache = compile
        self.decoder = Decoder(self.model, self.tokenizer, compile=compile) if static_cache else None
        self.scheduler = Scheduler(self.model, self.processor, self.prompt, self.decoder, max_batch)

    def inputs(self, clip: Clip, prompt: str | None = None):
        """The prompt's model inputs for `clip` (the released prompt unless another is given),
        on the model's device."""
        batch = self.processor(text=prompt or self.prompt, audio=[clip.samples], return_tensors="pt")
        device = self.model.device
        return batch.to(device)

    def waiting(self) -> int:
        """Requests in line for the model (not yet admitted to a batch)."""
        return self.scheduler.waiting()

    def busy(self) -> bool:
        """The model is serving a batch, or requests wait for one."""
        return self.scheduler.busy()

    def stream(self, clip: Clip, options: GenerationOptions | None = None, *,
               stop: threading.Event | None = None, score: bool = True,
               wait_s: float | None = None, queued: bool = False, raw: bool = False,
               messages: list[dict] | None = None, logprobs: int | None = None,
               **fields: Any) -> Iterator[Queued | ReasoningEvent]:
        """Yield TextDelta events as the model writes, then an Answer, then Done (and first,
        with `queued`, Queued(position) while waiting in line). `options` (default: greedy,
        2048 tokens) says how to generate; keyword `fields` override single options
        (`stream(clip, max_new_tokens=256)`). `raw`: the text as written, tags and all, as
        TextDelta("raw", ...), instead of think / answer segments. `messages`: another
        conversation than the released one (a system prompt, a question; one audio part).
        `logprobs`: Done.logprobs holds each token's log-probability and this many (0-20) best
        alternatives (engine.reasoning.logprobs). See the module docstring for stopping and
        concurrency."""
        request = self.submit(clip, options, stop=stop, score=score, messages=messages,
                              logprobs=logprobs, **fields)
        try:
            yield from self.events(request, wait_s=wait_s, queued=queued, raw=raw)
        finally:
            self.release(request)

    def submit(self, clip: Clip, options: GenerationOptions | None = None, *,
               stop: threading.Event | None = None, score: bool = True,
               messages: list[dict] | None = None, logprobs: int | None = None,
               **fields: Any) -> Request:
        """Join the line now; `events(request)` then streams it, and `release(request)` must
        follow (stream() does all three)."""
        request = self.prepare(clip, options, stop=stop, score=score, messages=messages,
                               logprobs=logprobs, **fields)
        self.enqueue(request)
        return request

    def prepare(self, clip: Clip, options: GenerationOptions | None = None, *,
                stop: threading.Event | None = None, score: bool = True,
                messages: list[dict] | None = None, logprobs: int | None = None,
                **fields: Any) -> Request:
        """A request with its audio features computed, not yet in line: for callers that join
        in one step with a check of their own (the app's bounded line), via `enqueue`."""
        if logprobs is not None and not 0 <= logprobs <= MAX_TOP:
            raise ValueError(f"logprobs asks for 0 to {MAX_TOP} alternatives per token; got {logprobs}")
        options = replace(options or GenerationOptions(), **fields)
        t_call = time.perf_counter()  # the time to first token counts the audio features too
        prompt = None if messages is None else self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False)
        return Request(self.inputs(clip, prompt), clip.samples, options, stop, score,
                       t_call=t_call, prompt=prompt, top_logprobs=logprobs)

    def enqueue(self, request: Request) -> None:
        """Put a prepared request in line."""
        request.t_submit = time.perf_counter()
        self.scheduler.submit(request)

    def release(self, request: Request) -> None:
        """The caller is done with `request`: out of the line, or its generation ends."""
        request.cancel.set()
        self.scheduler.withdraw(request)

    def events(self, request: Request, *, wait_s: float | None = None,
               queued: bool = False, raw: bool = False) -> Iterator[Queued | ReasoningEvent]:
        """The events of a submitted request (see stream)."""
        stop, t_call = request.stop, request.t_call
        last = None
        while not request.admitted.wait(POLL_S):
            if stop is not None and stop.is_set():
                return  # left the line without running
            if wait_s is not None and time.perf_counter() - request.t_submit > wait_s:
                raise ReasonerBusy(f"the model is busy with other clips (waited {wait_s:g} s)")
            if not self.scheduler.alive:
                raise GenerationError("the model's scheduler died without a word")
            position = self.scheduler.position(request)
            if queued and position is not None and position != last:
                last = position
                yield Queued(position)
        parser, decoder = StreamParser(), _IncrementalDecoder(self.tokenizer)
        ids: list[int] = []
        for batch in self._tokens(request):  # all the tokens that arrived since the last look
            ids.extend(batch)
            text = decoder.push(batch)
            segments = parser.feed(text)
            if raw and text:
                yield TextDelta("raw", text)
            for segment in () if raw else segments:
                yield TextDelta(segment.kind, segment.text)
        finished: Finished = request.out.get()
        tail = decoder.flush()
        segments = parser.feed(tail) + parser.finish()
        if raw and tail:
            yield TextDelta("raw", tail)
        for segment in () if raw else segments:
            yield TextDelta(segment.kind, segment.text)
        parsed = parser.result()
        scores = finished.scores
        probs = scores.probs if scores else {}
        yield Answer(label=parsed.label, raw=parsed.answer, scores=probs,
                     scored_label=max(probs, key=probs.get) if probs else None,
                     forced=bool(scores and scores.forced), format_ok=parsed.format_ok,
                     think=parsed.think)
        n = len(ids)
        reason = request.stop_reason or "stopped"
        t_first = request.t_first  # when chosen, not when read
        decode_s, stalled_s = request.decode_time()
        inputs = request.inputs
        audio_tokens = int((inputs["input_ids"] == self.model.config.audio_token_index).sum())
        yield Done(ttft_s=(t_first or time.perf_counter()) - t_call, n_tokens=n,
                   tok_per_s=(n - 1) / decode_s if decode_s > 0 else 0.0, stop_reason=reason,
                   total_s=time.perf_counter() - t_call,
                   prompt_tokens=int(inputs["input_ids"].shape[1]), audio_tokens=audio_tokens,
                   score_s=finished.score_s, token_ids=tuple(ids), decoder=finished.path,
                   compile_s=finished.compile_s, batch=finished.batch,
                   queued_s=request.t_admitted - request.t_submit, stalled_s=stalled_s,
                   logprobs=finished.logprobs, logprobs_error=finished.logprobs_error)

    def warmup(self, seconds: float = 1.0, max_new_tokens: int = 4,
               budgets: tuple[int, ...] = ()) -> float:
        """Run one short generation so that first-call costs (allocations, kernels) are paid at
        load time, and compile the decode step for a 10 s clip with each token budget in
        `budgets` (when compiling), alone and as a full batch; returns the wall time in seconds."""
        import numpy as np

        from engine.audio import from_array
        from engine.prosody.synth import harmonic

        clip = from_array(harmonic(150.0, seconds).astype(np.float32), SAMPLE_RATE_HZ)
        t0 = time.perf_counter()
        for _ in self.stream(clip, GenerationOptions(max_new_tokens=max_new_tokens), score=False):
            pass
        if budgets and self.decoder and self.decoder.compile:
            ten_s = from_array(harmonic(150.0, 10.0).astype(np.float32), SAMPLE_RATE_HZ)
            prompt_tokens = self.inputs(ten_s)["input_ids"].shape[1]
            with self.scheduler.model_lock:
                for budget in budgets:
                    for batch in sorted({1, self.scheduler.max_batch}):
                        self.decoder.warmup(prompt_tokens, budget, batch)
        return time.perf_counter() - t0

    def _tokens(self, request: Request) -> Iterator[list[int]]:
        """Lists of token ids: everything queued at each look, so that a consumer which falls
        behind decodes several tokens at once instead of competing with the model per token.
        Stops before the request's Finished, which it leaves in the queue; raises its error."""
        while True:
            try:
                items = [request.out.get(timeout=POLL_S)]
            except queue.Empty:
                if not self.scheduler.alive:
                    raise GenerationError("the model's scheduler died without a word") from None
                continue
            while not isinstance(items[-1], Finished):
                try:
                    items.append(request.out.get_nowait())
                except queue.Empty:
                    break
            tokens = [t for item in items if not isinstance(item, Finished) for t in item]
            if tokens:
                yield tokens
            if isinstance(items[-1], Finished):
                finished = items[-1]
                if finished.error is not None:
                    raise GenerationError(f"generation failed: {finished.error}") from finished.error
                request.out.put(finished)
                return


class _IncrementalDecoder:
    """Token ids -> text, a few tokens at a time (as text-generation-inference does): only the
    last tokens are re-decoded, and a partial UTF-8 character waits for its next byte."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.ids, self.text = tokenizer, [], ""
        self.prefix_offset = self.read_offset = 0

    def push(self, tokens: list[int]) -> str:
        self.ids.extend(tokens)
        return self._advance(final=False)

    def flush(self) -> str:
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        decode = lambda a, b: self.tokenizer.decode(self.ids[a:b], skip_special_tokens=True)  # noqa: E731
        before = decode(self.prefix_offset, self.read_offset)
        after = decode(self.prefix_offset, len(self.ids))
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            new = after[len(before):]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            self.text += new
            return new
        return ""
