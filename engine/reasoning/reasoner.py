"""Streaming emotion reasoning: `Reasoner(loaded).stream(clip)` yields what the model writes.

    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Reasoner, TextDelta, Answer, Done
    reasoner = Reasoner(load_model())
    for event in reasoner.stream(clip, max_new_tokens=1024):
        if isinstance(event, TextDelta): print(event.text, end="")        # think / answer / other
        elif isinstance(event, Answer): print(event.label, event.scores)   # after the reasoning
        elif isinstance(event, Done): print(event.tok_per_s)               # timing, last

The prompt is the released model's, byte for byte (engine.reasoning.prompts). Generation runs in a worker
thread feeding a queue of token ids (no per-token re-decoding of the whole text: decoding is
incremental, so streaming costs what plain `generate` costs). The audio, image and video
placeholder tokens can never be sampled.

Concurrency: one generation at a time per Reasoner (a lock). A second caller waits for the lock,
up to `wait_s` seconds (None: as long as it takes), then gets `ReasonerBusy`; the app runs its
own bounded queue in front. Cancelling: set the `stop` event, or simply stop iterating (close
the generator): generation ends at the next token and the lock is released. An exception inside
generation reaches the caller as `GenerationError`; a dead worker never leaves it waiting.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from engine.audio import SAMPLE_RATE_HZ, Clip
from engine.reasoning.decoder import Decoder
from engine.reasoning.options import GenerationOptions
from engine.reasoning.parse import StreamParser
from engine.reasoning.prompts import build_messages
from engine.reasoning.scores import score_labels

if TYPE_CHECKING:
    from engine.reasoning.model import LoadedModel

POLL_S = 0.25  # how often a waiting consumer checks that the worker is alive
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextDelta:
    kind: str  # "think", "answer" or "other" (text outside the tags)
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


@dataclass(frozen=True)
class Done:
    ttft_s: float  # from the call to the first generated token (features + prefill)
    n_tokens: int  # tokens generated
    tok_per_s: float  # decode speed after the first token
    stop_reason: str  # "eos", "length" (max_new_tokens), or "stopped"
    total_s: float  # the whole call, scoring included
    prompt_tokens: int
    audio_tokens: int
    score_s: float = 0.0  # time spent scoring the nine labels
    token_ids: tuple[int, ...] = ()  # the generated token ids, special tokens included
    decoder: str = "generate"  # "compiled", "static" (the engine's loop, eager) or "generate"
    compile_s: float = 0.0  # of ttft_s and the decode time, seconds spent compiling


ReasoningEvent = TextDelta | Answer | Done  # what Reasoner.stream yields


class ReasonerBusy(RuntimeError):
    """Another generation holds the model and did not finish within the wait."""


class GenerationError(RuntimeError):
    """Generation failed inside the worker; the original exception is the __cause__."""


@dataclass
class _Worker:
    thread: threading.Thread
    tokens: queue.Queue = field(default_factory=queue.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    path: str = "generate"  # how it decodes: "compiled", "static" (eager) or "generate"
    compile_s: float = 0.0  # time this call spent compiling the decode step


_END = object()


class Reasoner:
    """Streams the thinker's reasoning about a clip; see the module docstring."""

    def __init__(self, loaded: LoadedModel, *, audio_prefix: bool = True,
                 compile: bool | None = None, static_cache: bool | None = None) -> None:
        """How it decodes (the same tokens every way): `static_cache` chooses the engine's own
        loop (engine.reasoning.decoder) over transformers' `generate`, and `compile` compiles
        that loop's step. By default both are on with CUDA and off elsewhere: the compiled step
        is what makes a GPU fast, while on a CPU the static cache's full-bucket attention costs
        more than it saves (bench/reasoning.py --deep: eager loop 95 tok/s, generate 139,
        compiled 153) and a compile takes longer than most single clips."""
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
        self._lock = threading.Lock()

    def inputs(self, clip: Clip):
        """The prompt's model inputs for `clip`, on the model's device."""
        batch = self.processor(text=self.prompt, audio=[clip.samples], return_tensors="pt")
        device = self.model.device
        return batch.to(device)

    def stream(self, clip: Clip, options: GenerationOptions | None = None, *,
               stop: threading.Event | None = None, score: bool = True,
               wait_s: float | None = None, **fields: Any) -> Iterator[ReasoningEvent]:
        """Yield TextDelta events as the model writes, then an Answer, then Done. `options`
        (default: greedy, 2048 tokens) says how to generate; keyword `fields` override single
        options (`stream(clip, max_new_tokens=256)`). See the module docstring for stopping and
        concurrency."""
        options = replace(options or GenerationOptions(), **fields)
        t_call = time.perf_counter()
        if not self._lock.acquire(timeout=-1 if wait_s is None else wait_s):
            raise ReasonerBusy(f"the model is busy with another clip (waited {wait_s:g} s)")
        worker = None
        try:
            inputs = self.inputs(clip)
            worker = self._start(inputs, options, stop)
            parser, decoder = StreamParser(), _IncrementalDecoder(self.tokenizer)
            ids: list[int] = []
            t_first = t_last = None
            for batch in self._tokens(worker):  # all the tokens that arrived since the last look
                t_last = time.perf_counter()
                t_first = t_first or t_last
                ids.extend(batch)
                for segment in parser.feed(decoder.push(batch)):
                    yield TextDelta(segment.kind, segment.text)
            for segment in parser.feed(decoder.flush()) + parser.finish():
                yield TextDelta(segment.kind, segment.text)
            parsed = parser.result()
            t_score = time.perf_counter()
            scores = (score_labels(self.model, inputs, decoder.text, self.tokenizer)
                      if score else None)
            score_s = time.perf_counter() - t_score if score else 0.0
            probs = scores.probs if scores else {}
            yield Answer(label=parsed.label, raw=parsed.answer, scores=probs,
                         scored_label=max(probs, key=probs.get) if probs else None,
                         forced=bool(scores and scores.forced), format_ok=parsed.format_ok,
                         think=parsed.think)
            n = len(ids)
            eos = set(_as_list(self.model.generation_config.eos_token_id))
            reason = ("stopped" if worker.cancel.is_set() or (stop and stop.is_set()) else
                      "eos" if ids and ids[-1] in eos else "length")
            decode_s = (t_last - t_first) if n > 1 else 0.0
            audio_tokens = int((inputs["input_ids"] == self.model.config.audio_token_index).sum())
            yield Done(ttft_s=(t_first or time.perf_counter()) - t_call, n_tokens=n,
                       tok_per_s=(n - 1) / decode_s if decode_s > 0 else 0.0, stop_reason=reason,
                       total_s=time.perf_counter() - t_call,
                       prompt_tokens=int(inputs["input_ids"].shape[1]), audio_tokens=audio_tokens,
                       score_s=score_s, token_ids=tuple(ids), decoder=worker.path,
                       compile_s=worker.compile_s)
        finally:
            if worker is not None:
                worker.cancel.set()  # a consumer that stopped iterating stops the generation
                worker.thread.join()
            self._lock.release()

    def warmup(self, seconds: float = 1.0, max_new_tokens: int = 4,
               budgets: tuple[int, ...] = ()) -> float:
        """Run one short generation so that first-call costs (allocations, kernels) are paid at
        load time, and compile the decode step for a 10 s clip with each token budget in
        `budgets` (when compiling); returns the wall time in seconds."""
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
            with self._lock:
                for budget in budgets:
                    self.decoder.warmup(prompt_tokens, budget)
        return time.perf_counter() - t0

    def _start(self, inputs, options: GenerationOptions, stop: threading.Event | None) -> _Worker:
        from transformers.generation.streamers import BaseStreamer

        def run() -> None:
            events = [e for e in (worker.cancel, stop) if e is not None]
            try:
                why_not = self.decoder.unsupported(inputs, options) if self.decoder else "chosen"
                if why_not is None:
                    compile_before = self.decoder.compile_s
                    worker.path = "compiled" if self.decoder.compile and not self.decoder.compile_failed \
                        else "static"
                    self.decoder.decode(inputs, options, stop=events, emit=worker.tokens.put)
                    worker.compile_s = self.decoder.compile_s - compile_before
                    if self.decoder.compile_failed:
                        worker.path = "static"
                else:
                    logger.info("decoding with generate: %s", why_not)
                    options.generate(self.model, self.tokenizer, inputs, streamer=streamer, stop=events)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                logger.exception("generation failed")
                worker.error = exc
            finally:
                worker.tokens.put(_END)

        class Streamer(BaseStreamer):
            prompt_seen = False

            def put(self, value):
                if not self.prompt_seen:  # generate() first pushes the prompt
                    self.prompt_seen = True
                    return
                for token in value.reshape(-1).tolist():
                    worker.tokens.put(token)

            def end(self):
                pass

        streamer = Streamer()
        worker = _Worker(thread=threading.Thread(target=run, name="emotionthinker-generate",
                                                 daemon=True))
        worker.thread.start()
        return worker

    @staticmethod
    def _tokens(worker: _Worker) -> Iterator[list[int]]:
        """Lists of token ids: everything queued at each look, so that a consumer which falls
        behind decodes several tokens at once instead of competing with the worker per token."""
        while True:
            try:
                items = [worker.tokens.get(timeout=POLL_S)]
            except queue.Empty:
                if not worker.thread.is_alive() and worker.tokens.empty():
                    raise GenerationError("the generation worker died without a word") from None
                continue
            while True:
                try:
                    items.append(worker.tokens.get_nowait())
                except queue.Empty:
                    break
            ended = items[-1] is _END
            tokens = [i for i in items if i is not _END]
            if tokens:
                yield tokens
            if ended:
                if worker.error is not None:
                    raise GenerationError(f"generation failed: {worker.error}") from worker.error
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


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]
