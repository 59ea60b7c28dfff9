"""The microphone takes in progress, one per browser session, kept on the server.

    takes = LiveTakes(max_seconds=120)
    takes.start(session)                 # Record pressed
    window = takes.add(session, samples) # each 0.3 s chunk: the last seconds, or None (no take)
    samples, full = takes.finish(session)  # Stop pressed: the take (None if none), over the limit?
    takes.handed_over(session, "take-1f3a.wav")  # the file the take became
    takes.is_chunk(session, path)        # a change of the clip input that is a chunk, not a clip

Why on the server and not in a gr.State: a streaming clip input sends its chunks (`.stream`) and
its Stop (`.stop_recording`) as separate events that may run at once, and a State written by
whichever event ends last wins, so a chunk still being drawn when Stop arrives would revive the
take Stop ended. Here each take is one object behind a lock: a chunk added before Stop is in the
take Stop hands over, a chunk that comes after it is dropped, and Stop's hand-over cannot be
undone. A Record press whose microphone never opens (denied, or none: the browser sends no Stop
then) stops counting as a recording RECORDING_STALE_S after its last sign of life, so the clip
input is not gated for good.

Which changes of the clip input are chunks: all of them while a take records, and, for
CHUNK_GRACE_S after Stop, all but the file the take became (a chunk's change event may be
processed after Stop's, and must not replace the take's analysis with a 0.3 s one).

Known limit (Gradio 6.31's streaming input): the browser discards the partial chunk it holds when
Stop is pressed, so a take can miss its last 0-0.3 s; people rarely stop pressing in mid-word.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from engine.audio import SAMPLE_RATE_HZ

RECORDING_STALE_S = 2.0  # a take with no chunk for this long is not recording (chunks come every 0.3 s)
ABANDONED_S = 600.0  # a take with no chunk for this long is dropped (its session went away)
CHUNK_GRACE_S = 1.5  # after Stop, a change that is not the take is a late chunk for this long


@dataclass(eq=False)
class _Take:
    samples: np.ndarray  # 16 kHz float32, the first max_seconds at most
    last_s: float  # time.monotonic() of the start or the last chunk
    ended: bool = False  # Stop handed it over: later chunks are dropped
    full: bool = False  # it reached max_seconds: what came after was not kept
    lock: threading.Lock = field(default_factory=threading.Lock)


class LiveTakes:
    def __init__(self, max_seconds: float) -> None:
        self.max_samples = int(max_seconds * SAMPLE_RATE_HZ)
        self._takes: dict[str, _Take] = {}
        self._handed: dict[str, tuple[float, str]] = {}  # session -> (when, the take's file name)
        self._lock = threading.Lock()

    def start(self, session: str) -> None:
        """A new take for `session` (a take it had is dropped), and abandoned ones cleared."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, t in self._takes.items() if now - t.last_s > ABANDONED_S]:
                del self._takes[key]
            self._takes[session] = _Take(np.zeros(0, np.float32), now)

    def add(self, session: str, samples: np.ndarray, window_s: float) -> tuple[np.ndarray, float] | None:
        """Append a chunk; returns (the last `window_s` seconds, the take's seconds before them),
        or None when `session` has no take in progress (a chunk after Stop)."""
        with self._lock:
            take = self._takes.get(session)
        if take is None:
            return None
        with take.lock:
            if take.ended:
                return None
            room = self.max_samples - len(take.samples)  # the clip limit: the start is kept, as
            take.full = take.full or len(samples) > room  # an upload's would be (not the end)
            take.samples = np.concatenate([take.samples, samples[:max(room, 0)]])
            take.last_s = time.monotonic()
            window = take.samples[-int(window_s * SAMPLE_RATE_HZ):]
            return window, (len(take.samples) - len(window)) / SAMPLE_RATE_HZ

    def recording(self, session: str) -> bool:
        """Whether `session` is recording now: its clip input's changes are chunks."""
        with self._lock:
            take = self._takes.get(session)
        return take is not None and not take.ended and time.monotonic() - take.last_s < RECORDING_STALE_S

    def handed_over(self, session: str, name: str) -> None:
        """The take Stop ended became the file called `name` (its base name, unique)."""
        with self._lock:
            self._handed[session] = (time.monotonic(), name)

    def is_chunk(self, session: str, path) -> bool:
        """Whether a change of `session`'s clip input to `path` is a microphone chunk."""
        if self.recording(session):
            return True
        with self._lock:
            when, name = self._handed.get(session, (-CHUNK_GRACE_S, ""))
        return time.monotonic() - when < CHUNK_GRACE_S and os.path.basename(str(path or "")) != name

    def ended(self, session: str) -> bool:
        """Whether `session` has no take in progress any more (Stop came, or none was started)."""
        with self._lock:
            take = self._takes.get(session)
        return take is None or take.ended

    def full(self, session: str) -> bool:
        """Whether `session`'s take reached max_seconds (later chunks are not kept)."""
        with self._lock:
            take = self._takes.get(session)
        return take is not None and take.full

    def finish(self, session: str) -> tuple[np.ndarray | None, bool]:
        """Stop: (the take, or None if there was none; whether it reached max_seconds), ended
        for good."""
        with self._lock:
            take = self._takes.pop(session, None)
        if take is None:
            return None, False
        with take.lock:  # a chunk being added finishes first, and is in the take
            take.ended = True
            return take.samples, take.full
