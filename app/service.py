"""The model behind the app: loaded in the background, shared by all users, clips batched.

`ModelService` starts loading at once in a thread, so the page is up in seconds and everything
that does not need the model works meanwhile. Its `status()` says loading / ready / unavailable
(with the reason and the fix). `reason(...)` streams one clip's reasoning. On a GPU, requests
decode together (up to `max_batch`; one that arrives while others decode joins them,
engine.reasoning.scheduler); elsewhere one at a time. Requests that cannot start at once wait
in arrival order, at most `queue_size` of them (then a clear "busy" error; 0: served only when
the model is idle), and each waiting request reports its own place in the line. Prosody never
goes through here, so it never waits behind the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.audio import Clip

if TYPE_CHECKING:
    from engine.reasoning.options import GenerationOptions
    from engine.reasoning.reasoner import ReasoningEvent

logger = logging.getLogger(__name__)
RECHECK_S = 10.0  # how often an unavailable backend is asked again


@dataclass(frozen=True)
class Waiting:
    position: int  # 1 = next


class Busy(RuntimeError):
    """Too many requests are already waiting for the model."""


class ModelService:
    """The shared model: its loading state, and the line in front of it (see the module)."""

    def __init__(self, source: str, quant: str = "auto", device: str = "auto",
                 queue_size: int = 8, enabled: bool = True, compile: bool | None = None,
                 warm_budgets: tuple[int, ...] = (), max_batch: int = 8) -> None:
        """`compile`: compile the decode step during warm-up, for the token budgets in
        `warm_budgets` (None: where it pays, on CUDA; False: never; True: also on a CPU)."""
        self.source, self.quant, self.device, self.queue_size = source, quant, device, queue_size
        self.compile, self.warm_budgets, self.max_batch = compile, warm_budgets, max_batch
        self.state = "loading" if enabled else "off"
        self.message = "starting" if enabled else "prosody only (started with --no-model)"
        self.reasoner = None
        self._count = threading.Lock()
        self._thread = None
        if enabled:
            self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
            self._thread.start()

    def status(self) -> tuple[str, str]:
        """(state, message): state is loading, ready, unavailable or off."""
        return self.state, self.message

    def wait_until_settled(self, timeout: float | None = None) -> str:
        """Block until loading ends (for tests and scripts); returns the state."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    def reason(self, clip: Clip, stop: threading.Event, options: GenerationOptions | None = None,
               **fields) -> Iterator[Waiting | ReasoningEvent]:
        """Yield Waiting(position) while in line, then the Reasoner's events for `clip`
        (`options` and `fields` as in Reasoner.stream). Busy when `queue_size` requests already
        wait while the model is busy (so 0 means: served only when the model is idle)."""
        from engine.reasoning.reasoner import Queued

        if self.reasoner is None:
            raise RuntimeError(f"the model is {self.state}: {self.message}")
        reasoner = self.reasoner
        request = reasoner.prepare(clip, options, stop=stop, **fields)  # features: outside the lock
        with self._count:  # the check and the joining are one step for concurrent arrivals
            waiting = reasoner.waiting()
            if reasoner.busy() and waiting >= self.queue_size:
                raise Busy(f"the model is busy ({waiting} requests are waiting); "
                           "try again in a minute")
            reasoner.enqueue(request)
        try:
            for event in reasoner.events(request, queued=True):
                yield Waiting(event.position) if isinstance(event, Queued) else event
        finally:
            reasoner.release(request)  # a consumer that went away frees its place or its row

    def _load(self) -> None:
        from engine.reasoning.model import ModelUnavailable, load_model
        from engine.reasoning.reasoner import Reasoner

        start = time.perf_counter()
        try:
            loaded = load_model(self.source, quant=self.quant, device=self.device,
                                progress=self._progress)
            reasoner = Reasoner(loaded, compile=self.compile, max_batch=self.max_batch)
            compiling = reasoner.decoder is not None and reasoner.decoder.compile
            self._progress("compiling the decoder (a minute or two, once)" if compiling
                           else "warming up")
            warm = reasoner.warmup(budgets=self.warm_budgets)
        except ModelUnavailable as exc:  # expected (no GPU, no network): the message is the fix
            logger.warning("the model is unavailable: %s", exc, exc_info=exc.__cause__ is not None)
            self.state, self.message = "unavailable", str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - any failure must leave the app serving prosody
            logger.exception("loading the model from %s failed", self.source)
            self.state, self.message = "unavailable", f"{type(exc).__name__}: {exc}"
            return
        self.reasoner = reasoner
        self.state = "ready"
        decoder = reasoner.decoder
        how = ("generate()" if decoder is None else
               f"eager decoder (compiling failed: {decoder.compile_failed})" if decoder.compile_failed
               else "compiled decoder" if decoder.compile else "eager decoder")
        if decoder is not None:
            how += f", up to {reasoner.scheduler.max_batch} clips at once"
        compile_s = f"compile {decoder.compile_s:.0f} s; " if decoder is not None and decoder.compile else ""
        self.message = (f"{loaded.describe()}, {how}; loaded in {loaded.load_s:.0f} s, warm-up "
                        f"{warm:.1f} s ({compile_s}total {time.perf_counter() - start:.0f} s)")

    def _progress(self, message: str) -> None:
        self.message = message


class RemoteService:
    """The model on another machine: any OpenAI-compatible server (engine.serve, vLLM), with the
    same face as ModelService. Its status checks the backend in the background at start and
    says which model answers where; `reason` streams from it (engine.remote)."""

    def __init__(self, url: str, api_key: str | None = None, model: str | None = None) -> None:
        from engine.remote import RemoteReasoner

        self.remote = RemoteReasoner(url, api_key, model)
        self.state, self.message = "loading", f"asking the backend {url}"
        self._checked = time.monotonic()
        self._thread = threading.Thread(target=self._check, name="backend-check", daemon=True)
        self._thread.start()

    def status(self) -> tuple[str, str]:
        """(state, message); an unavailable backend is asked again every RECHECK_S seconds."""
        if (self.state == "unavailable" and not self._thread.is_alive()
                and time.monotonic() - self._checked > RECHECK_S):
            self._thread = threading.Thread(target=self._check, name="backend-check", daemon=True)
            self._thread.start()
        return self.state, self.message

    def wait_until_settled(self, timeout: float | None = None) -> str:
        self._thread.join(timeout)
        return self.state

    def reason(self, clip: Clip, stop: threading.Event, options: GenerationOptions | None = None,
               **fields) -> Iterator[Waiting | ReasoningEvent]:
        """The backend's events for `clip` (it keeps its own line: no Waiting here)."""
        from engine.remote import RemoteUnavailable

        try:
            yield from self.remote.stream(clip, options, stop=stop)
        except RemoteUnavailable as exc:
            self.state, self.message = "unavailable", f"{exc} (prosody still works)"
            raise

    def _check(self) -> None:
        from engine.remote import RemoteUnavailable

        try:
            model = self.remote.check()
        except RemoteUnavailable as exc:
            self.state, self.message = "unavailable", f"{exc} (asked again every {RECHECK_S:g} s)"
            return
        finally:
            self._checked = time.monotonic()
        self.state, self.message = "ready", f"{model} on the backend {self.remote.url}"
