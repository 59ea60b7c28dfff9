"""Who runs on the model, and when: one thread serves every reasoning request, batched continuously.

    scheduler = Scheduler(model, processor, prompt, decoder, max_batch=8)
    scheduler.submit(request)      # a Request: the clip's inputs, options, stop, an output queue
    ...                            # request.out receives lists of token ids, then one Finished

Requests wait in arrival order. Whenever the model is free, the scheduler takes the first one
and, when the engine's own decode loop can serve it (engine.reasoning.decoder), up to
`max_batch` - 1 more behind it whose prompts and token budgets fit the same cache bucket; they
are prefilled together (left-padded) and decode in lockstep, each ending on its own (end of
sequence, its budget, its Stop or its client leaving) without disturbing the others. A request
that arrives meanwhile joins the running batch at its next step (continuous batching: it is
prefilled alone and placed in a free row, widening a batch that started alone to `max_batch`
rows) when its prompt is no longer than the batch's position (the static cache advances every
row at one position, so a prompt is placed to end there, left-padded) and its budget ends
within the batch's cache; the earliest such requests join first. One that cannot join keeps
its place at the head of the line and starts the next batch. A request the loop cannot serve
runs alone through transformers' `generate`.

Everything that touches the model happens on this thread, label scoring included: a row's nine
label scores are computed as soon as the row ends, between two decode steps of the others. So no
two threads ever run the model at once, and the model's own mutable state (Qwen2.5-Omni keeps
its rotary `rope_deltas` on the module) cannot be raced.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.reasoning.decoder import BATCH_SIZES, Decoder, Row
from engine.reasoning.logprobs import TokenLogprob, token_logprobs
from engine.reasoning.options import GenerationOptions, eos_ids
from engine.reasoning.scores import LabelScores, score_labels

logger = logging.getLogger(__name__)

STALL_FACTOR = 20.0  # a gap between tokens this many times the usual one is a stall ...
STALL_MIN_S = 0.5  # ... if it is also longer than this (a slow model is not stalled)


@dataclass(frozen=True)
class Finished:
    """The last item a request's queue receives."""

    path: str  # how it was decoded: "compiled", "static" (the engine's loop, eager), "generate"
    batch: int  # how many requests had shared its batch when it ended (those that joined included)
    compile_s: float  # seconds its batch spent compiling the decode step
    scores: LabelScores | None  # the nine label scores (None when not asked for, or on error)
    score_s: float  # seconds spent scoring
    error: BaseException | None = None  # what went wrong inside, if anything
    logprobs: tuple[TokenLogprob, ...] = ()  # per generated token, when the request asked
    logprobs_error: str | None = None  # why they could not be computed (the answer stands)


@dataclass(eq=False)
class Request:
    """One clip's reasoning, as the scheduler sees it."""

    inputs: Any  # the prompt's BatchFeature for this clip alone, on the model's device
    samples: np.ndarray  # the clip (16 kHz), to build a batch's inputs with the others
    options: GenerationOptions
    stop: threading.Event | None  # the user's Stop
    score: bool  # compute the nine label scores when it ends
    out: queue.Queue = field(default_factory=queue.Queue)  # lists of token ids, then a Finished
    cancel: threading.Event = field(default_factory=threading.Event)  # the caller went away
    admitted: threading.Event = field(default_factory=threading.Event)  # it left the line
    tokens: list[int] = field(default_factory=list)  # what it generated so far
    t_call: float = field(default_factory=time.perf_counter)  # when it was asked for
    t_submit: float = field(default_factory=time.perf_counter)  # when it joined the line
    t_admitted: float | None = None  # when it left the line for a batch
    t_first: float | None = None  # when its first token was chosen
    t_last: float | None = None  # when its last token was chosen
    gaps: list[float] = field(default_factory=list)  # seconds between consecutive tokens
    waited: set[int] = field(default_factory=set)  # indices of gaps that include another request
    #   joining its batch (the batch waits for that prefill: a real wait, never a stall)
    joining: bool = False  # a request is joining its batch now (the next gap includes that)
    finished: bool = False  # its Finished was sent
    prompt: str | None = None  # its own prompt text (None: the scheduler's, the released one)
    stop_reason: str | None = None  # "eos", "length" or "stopped", decided when it ended
    top_logprobs: int | None = None  # compute each token's log-probability and this many
    #   alternatives when it ends (engine.reasoning.logprobs); None: none
    why_not_loop: str | None = None  # why the engine's loop cannot serve it ("": it can; None: not asked)

    def made(self, n: int) -> None:
        """`n` tokens were just chosen: note when."""
        now = time.perf_counter()
        if self.t_last is not None:
            if self.joining:
                self.waited.add(len(self.gaps))
            self.gaps.append(now - self.t_last)
        self.joining = False
        self.t_first = self.t_first or now
        self.t_last = now

    def decode_time(self) -> tuple[float, float]:
        """(seconds spent decoding, seconds stalled): a gap between two tokens longer than
        STALL_FACTOR times the median gap (and over STALL_MIN_S) is a stall (the process was
        stopped, or starved of CPU) and counts as one median gap; the rest is its excess. A gap
        in which another request joined the batch is never a stall: that wait is decoding time."""
        if not self.gaps:
            return 0.0, 0.0
        usual = sorted(self.gaps)[len(self.gaps) // 2]
        cap = max(STALL_FACTOR * usual, STALL_MIN_S)
        stall = [g > cap and i not in self.waited for i, g in enumerate(self.gaps)]
        stalled = sum(g - usual for g, s in zip(self.gaps, stall) if s)
        return sum(usual if s else g for g, s in zip(self.gaps, stall)), stalled

    @property
    def stops(self) -> tuple[threading.Event, ...]:
        return tuple(e for e in (self.cancel, self.stop) if e is not None)


class Scheduler:
    """The one thread that runs the model (see the module docstring)."""

    def __init__(self, model, processor, prompt: str, decoder: Decoder | None, max_batch: int = 1) -> None:
        self.model, self.processor, self.prompt = model, processor, prompt
        self.tokenizer = processor.tokenizer
        self.decoder = decoder
        if not 1 <= max_batch:
            raise ValueError(f"max_batch must be at least 1; got {max_batch}")
        self.max_batch = min(max_batch, BATCH_SIZES[-1]) if decoder is not None else 1
        self.model_lock = threading.Lock()  # held while a batch runs; warm-ups take it too
        self._pending: deque[Request] = deque()
        self._cond = threading.Condition()
        self._running = 0  # requests in the batch on the model now
        self._thread = threading.Thread(target=self._serve, name="emotionthinker-scheduler", daemon=True)
        self._thread.start()

    # --- the line --------------------------------------------------------------------------------

    def submit(self, request: Request) -> None:
        with self._cond:
            self._pending.append(request)
            self._cond.notify()

    def withdraw(self, request: Request) -> bool:
        """Take a request out of the line (True), unless it was already admitted (False)."""
        with self._cond:
            if request in self._pending:
                self._pending.remove(request)
                return True
            return False

    def position(self, request: Request) -> int | None:
        """1 for the next request to be served, 2 for the one after ... (None: not waiting)."""
        with self._cond:
            return self._pending.index(request) + 1 if request in self._pending else None

    def waiting(self) -> int:
        """Requests in line, not yet admitted to a batch."""
        with self._cond:
            return len(self._pending)

    def busy(self) -> bool:
        """A batch is on the model, or requests are waiting for one."""
        with self._cond:
            return self._running > 0 or bool(self._pending)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the thread ------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
            with self.model_lock:  # while a warm-up holds the model, arrivals gather into one batch
                batch: list[Request] = []
                try:
                    with self._cond:
                        if not self._pending:  # all who waited left the line
                            continue
                        batch, why_not = self._take()
                        self._running = len(batch)
                    for request in batch:
                        request.t_admitted = time.perf_counter()
                        request.admitted.set()
                    if why_not is None:
                        self._decode(batch)
                    else:
                        self._generate(batch[0], why_not)
                except BaseException as exc:  # noqa: BLE001 - every caller hears of it; the thread lives on
                    logger.exception("generation failed")
                    for request in batch:  # those whose rows had not ended yet
                        self._deliver(request, Finished("generate", len(batch), 0.0, None, 0.0, error=exc))
                finally:
                    with self._cond:
                        self._running = 0

    def _take(self) -> tuple[list[Request], str | None]:
        """The next batch and why the decode loop cannot serve it (None: it can): the first
        request in line, and when the loop serves it the ones right behind it that fit the same
        bucket, in arrival order. Call with the lock."""
        first = self._pending.popleft()
        batch = [first]
        why_not = "chosen" if self.decoder is None else self.decoder.unsupported(first.inputs, first.options)
        if why_not is not None:
            return batch, why_not
        while self._pending and len(batch) < self.max_batch:
            nxt = self._pending[0]
            prompt = max(r.inputs["input_ids"].shape[1] for r in batch + [nxt])
            budget = max(r.options.max_new_tokens for r in batch + [nxt])
            if self.decoder.unsupported(nxt.inputs, nxt.options) or self.decoder.bucket_for(prompt, budget) is None:
                break
            batch.append(self._pending.popleft())
        return batch, None

    def _decode(self, batch: list[Request]) -> None:
        """Decode a batch with the engine's loop; requests that arrive meanwhile and fit join it
        (appended to `batch`, so that a failure of the whole batch reaches them too)."""
        decoder = self.decoder
        path = "compiled" if decoder.compile and not decoder.compile_failed else "static"
        compile_before = decoder.compile_s
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = self.processor(text=[r.prompt or self.prompt for r in batch], audio=[r.samples for r in batch],
                                    padding=True, padding_side="left").to(self.model.device)

        def row(request: Request) -> Row:
            def emit(token: int) -> None:
                request.made(1)
                request.tokens.append(token)
                request.out.put([token])

            def end() -> None:  # between two steps of the others: score, then tell the caller
                request.stop_reason = spec.reason
                if spec.failed is not None:
                    self._deliver(request, Finished(path, len(batch), 0.0, None, 0.0, error=spec.failed))
                    return
                self._finish(request, path if not decoder.compile_failed else "static", len(batch),
                             decoder.compile_s - compile_before)

            spec = Row(request.options, emit, request.stops, on_end=end)
            return spec

        def join(position: int, room: int, length: int) -> list[tuple[Any, Row]]:
            joiners = self._joiners(position, room, length)
            for running in batch if joiners else ():  # they wait for the joiners' prefill
                running.joining = True
            batch.extend(joiners)
            return [(r.inputs, row(r)) for r in joiners]

        # compiled, a batch of 2 or more runs max_batch wide: one graph for all of them (a GPU
        # decodes 8 rows in about the time of 2: each step reads the weights once for all rows);
        # one that starts alone widens to max_batch when the first request joins it
        wide = self.max_batch if decoder.compile and len(batch) > 1 else None
        decoder.decode_batch(inputs, [row(r) for r in batch], pad_to=wide,
                             join=join if self.max_batch > 1 else None, widest=self.max_batch)

    def _joiners(self, position: int, room: int, length: int) -> list[Request]:
        """Up to `room` waiting requests that can join a running batch now: the loop serves
        them, their prompts are at most `position` tokens (they are placed to end where the
        batch stands) and their budgets end within the batch's cache `length`. Earliest first;
        one that cannot join yet keeps its place at the head of the line for the next batch."""
        taken: list[Request] = []
        with self._cond:
            for request in self._pending:
                if len(taken) == room:
                    break
                prompt = request.inputs["input_ids"].shape[1]
                stopped = any(e.is_set() for e in request.stops)  # its caller is leaving the line
                if (not stopped and prompt <= position and position + request.options.max_new_tokens <= length
                        and self._loop_serves(request)):
                    taken.append(request)
            for request in taken:
                self._pending.remove(request)
            self._running += len(taken)
        now = time.perf_counter()
        for request in taken:
            request.t_admitted = now
            request.admitted.set()
        return taken

    def _loop_serves(self, request: Request) -> bool:
        """Whether the engine's loop can serve this request (asked of the decoder once)."""
        if request.why_not_loop is None:
            request.why_not_loop = self.decoder.unsupported(request.inputs, request.options) or ""
        return request.why_not_loop == ""

    def _generate(self, request: Request, why: str) -> None:
        """One request through transformers' generate, streaming its tokens."""
        from transformers.generation.streamers import BaseStreamer

        class Streamer(BaseStreamer):
            prompt_seen = False

            def put(self, value):
                if not self.prompt_seen:  # generate() first pushes the prompt
                    self.prompt_seen = True
                    return
                tokens = value.reshape(-1).tolist()
                request.made(len(tokens))
                request.tokens.extend(tokens)
                request.out.put(tokens)

            def end(self):
                pass

        if self.decoder is not None:
            logger.info("decoding with generate: %s", why)
        request.options.generate(self.model, self.tokenizer, request.inputs, streamer=Streamer(),
                                 stop=list(request.stops))
        eos = eos_ids(self.model)
        ids = request.tokens
        request.stop_reason = ("eos" if ids and ids[-1] in eos else
                               "length" if len(ids) >= request.options.max_new_tokens else "stopped")
        self._finish(request, "generate", 1, 0.0)

    def _finish(self, request: Request, path: str, batch: int, compile_s: float) -> None:
        """A row ended: score it (a failure here is its own, not its batch's) and tell its caller."""
        t0 = time.perf_counter()
        scores, error = None, None
        logprobs: list[TokenLogprob] = []
        logprobs_error = None
        wanted = not request.cancel.is_set()  # nobody waits for a cancelled one
        if request.score and wanted:
            text = self.tokenizer.decode(request.tokens, skip_special_tokens=True)
            try:
                scores = score_labels(self.model, request.inputs, text, self.tokenizer)
            except Exception as exc:  # noqa: BLE001 - this caller hears of it; the batch goes on
                logger.exception("scoring the labels failed")
                error = exc
        if request.top_logprobs is not None and wanted and error is None:
            try:
                logprobs = token_logprobs(self.model, request.inputs, request.tokens, request.top_logprobs)
            except Exception as exc:  # noqa: BLE001 - the answer stands without them (out of memory ...)
                logger.exception("the tokens' log-probabilities failed")
                logprobs_error = f"{type(exc).__name__}: {exc}"
        self._deliver(request, Finished(path, batch, compile_s, scores, time.perf_counter() - t0, error,
                                        tuple(logprobs), logprobs_error))

    @staticmethod
    def _deliver(request: Request, finished: Finished) -> None:
        """The one Finished a request gets (a second one, for a row that already ended, is dropped)."""
        if not request.finished:
            request.finished = True
            request.out.put(finished)
