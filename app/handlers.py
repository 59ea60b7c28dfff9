"""What the buttons do. Each handler takes component values and returns component values; none
holds model or signal-processing code (that is engine/). Errors a user can fix become gr.Error
with the reason in words; the app keeps serving everyone else."""

from __future__ import annotations

import math
import threading
import time

import gradio as gr
import numpy as np

from app import figures, render
from app.service import Busy, ModelService, Waiting
from engine.audio import MIN_SECONDS, SAMPLE_RATE_HZ, Clip, from_array, load_audio, to_pcm16
from engine.grounding import check
from engine.prosody import ProsodyReport, analyze
from engine.prosody.levels import assume_voice
from engine.reasoning.options import MAX_SEED, GenerationOptions
from engine.reasoning.reasoner import Answer, Done, GenerationError, TextDelta

STREAM_EVERY_S = 0.05  # coalesce token updates: ~20 screen updates a second
LIVE_WINDOW_S = 8.0  # while recording, the main plot spans this many seconds, then scrolls
ZEROGPU_SECONDS = 180  # GPU time asked of ZeroGPU per reasoning request
MAX_API_TOKENS = 8192  # the most tokens one request may ask for (the page offers up to 4096)
VIEWS = ("waveform", "spectrogram")  # what the pitch is drawn over


class Handlers:
    def __init__(self, service: ModelService, max_seconds: float) -> None:
        self.service, self.max_seconds = service, max_seconds
        self._stops: dict[str, threading.Event] = {}  # session -> its stop button's event
        try:  # on a ZeroGPU Space, the GPU is attached for the duration of each reasoning call
            import spaces

            self.reason = spaces.GPU(duration=ZEROGPU_SECONDS)(self.reason)
        except ImportError:
            pass

    # --- prosody ---------------------------------------------------------------------------

    def prosody(self, audio_path, unit="Hz", voice="auto", view="waveform"):
        """A clip arrived (or its voice type or view changed): its contours and summary, at once."""
        if not audio_path:
            return (figures.placeholder_figure(), "_Record or upload a clip to see how it was said._",
                    None)
        if view not in VIEWS:
            raise gr.Error(f"The view must be one of {', '.join(VIEWS)}; got {view!r}.")
        clip, report = self._measure(audio_path, voice)
        return (figures.prosody_figure(report, clip, unit=unit, view=view),
                render.summary_markdown(report, clip), report.to_dict(contours=False))

    def export(self, audio_path, voice="auto"):
        """The measurements to keep: Praat TextGrid and PitchTier, a per-frame CSV, the JSON."""
        import tempfile
        from pathlib import Path

        from engine.export import write_all

        if not audio_path:
            raise gr.Error("Record or upload a clip first.")
        clip, report = self._measure(audio_path, voice)
        stem = Path(str(audio_path)).stem[:60] or "clip"
        return [str(p) for p in write_all(report, tempfile.mkdtemp(prefix="export-"), stem)]

    def compare(self, path_a, path_b):
        """Two clips side by side: contours on a time-normalised axis and two summaries."""
        if not path_a or not path_b:
            raise gr.Error("Give two clips to compare.")
        (clip_a, a), (clip_b, b) = self._measure(path_a), self._measure(path_b)
        fig = figures.overlay_figure([("A", a), ("B", b)], normalise_time=True)
        return fig, render.summary_markdown(a, clip_a), render.summary_markdown(b, clip_b)

    def manipulate(self, audio_path, shift_st, pitch_range, tilt_st, tempo, gain_db):
        """The prosody lab: the clip re-synthesised with changed prosody, contours overlaid."""
        from engine.prosody.manipulate import manipulate

        if not audio_path:
            raise gr.Error("Record or upload a clip on the Analyse tab first.")
        clip, report = self._measure(audio_path)
        try:
            changed = manipulate(clip, pitch_shift_st=shift_st, pitch_range=pitch_range,
                                 tilt_st=tilt_st, tempo=tempo, gain_db=gain_db)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        fig = figures.overlay_figure([("original", report), ("changed", analyze(changed))])
        pcm, lowered_db = to_pcm16(changed.samples)
        if lowered_db > 0:
            gr.Warning(f"At {gain_db:+g} dB the changed clip would clip: it was lowered by "
                       f"{lowered_db:.1f} dB to fit (a gain of {gain_db - lowered_db:+.1f} dB).")
        return (changed.sample_rate_hz, pcm), fig

    def prosody_unless_recording(self, audio_path, unit="Hz", voice="auto", view="waveform", take=None):
        """The clip changed: analyse it, unless it is a microphone chunk of a take in progress
        (a streaming microphone changes the clip's value every chunk; the live trace draws then)."""
        if take is not None:
            return gr.skip(), gr.skip(), gr.skip()
        return self.prosody(audio_path, unit, voice, view)

    @staticmethod
    def live_start():
        """Recording began: an empty take (its presence marks the chunks as a take in progress)
        and empty live axes."""
        empty = np.zeros(0)
        return np.zeros(0, np.float32), figures.live_figure(empty, empty, empty, LIVE_WINDOW_S)

    def live_trace(self, take, chunk):
        """A microphone chunk: append it to the take, and redraw the pitch and intensity of the
        last LIVE_WINDOW_S seconds across the main plot."""
        from engine.prosody.analysis import frame_levels
        from engine.prosody.pitch import frame_times, track_pitch

        if chunk is None:
            return gr.skip(), take
        x = _chunk_samples(chunk, self.max_seconds)
        kept = np.concatenate([take, x]) if take is not None else x
        kept = kept[-int(self.max_seconds * SAMPLE_RATE_HZ):]
        window = kept[-int(LIVE_WINDOW_S * SAMPLE_RATE_HZ):]
        times = frame_times(len(window) / SAMPLE_RATE_HZ)
        f0 = track_pitch(window, SAMPLE_RATE_HZ, times).f0_hz
        level_db = frame_levels(window, SAMPLE_RATE_HZ, times)
        offset = (len(kept) - len(window)) / SAMPLE_RATE_HZ
        return figures.live_figure(times + offset, f0, level_db, LIVE_WINDOW_S), kept

    @staticmethod
    def live_done(take):
        """Recording stopped: the whole take becomes the clip, whose change event then draws the
        full analysis over the live trace."""
        if take is None or len(take) < MIN_SECONDS * SAMPLE_RATE_HZ:
            if take is not None:
                gr.Warning(f"The recording is shorter than {MIN_SECONDS} s: nothing to analyse.")
            return None, None
        return (SAMPLE_RATE_HZ, to_pcm16(take)[0]), None  # at its level: floats get normalised

    # --- the model ------------------------------------------------------------------------

    def status(self):
        return render.status_markdown(*self.service.status())

    def reason(self, audio_path, max_new_tokens, temperature, seed, request: gr.Request,
               voice="auto"):
        """Stream the model's reasoning, then its answer with nine confidences and the claims
        checked against the measured prosody (pitch levels for the `voice` type)."""
        if not audio_path:
            raise gr.Error("Record or upload a clip first.")
        state, message = self.service.status()
        if state != "ready":
            yield render.status_markdown(state, message), None, ""
            return
        options = GenerationOptions(
            max_new_tokens=_whole(max_new_tokens, "max new tokens", 1, MAX_API_TOKENS),
            temperature=_number(temperature, "temperature", 0.0, 2.0),
            seed=None if seed in (None, "", -1) else _whole(seed, "seed", 0, MAX_SEED))
        clip, report = self._measure(audio_path, voice)
        stop = self._stop_event(request)
        stop.clear()  # a Stop pressed while nothing ran must not end this run
        think, answer, last = "", None, 0.0
        scores, claims = None, ""
        try:
            for event in self.service.reason(clip, stop, options):
                if isinstance(event, Waiting):
                    yield render.reasoning_markdown("", waiting=event.position), None, ""
                elif isinstance(event, TextDelta):
                    if event.kind == "answer":
                        answer = (answer or "") + event.text
                    else:
                        think += event.text
                    if time.perf_counter() - last > STREAM_EVERY_S:
                        last = time.perf_counter()
                        yield render.reasoning_markdown(think, answer), gr.skip(), gr.skip()
                elif isinstance(event, Answer):
                    think, answer = event.think, event.raw or "(none given)"
                    scores, claims = event.scores or None, render.claims_markdown(check(event.think, report))
                    if event.scores_note:  # a remote backend: approximate confidences, or none
                        note = event.scores_note
                        claims = f"_{note[0].upper() + note[1:]}._\n\n" + claims
                    yield render.reasoning_markdown(think, answer), scores, claims
                elif isinstance(event, Done):  # the last update carries every output
                    footer = (f"\n\n<sub>{event.n_tokens} tokens, first after {event.ttft_s:.2f} s, "
                              f"{event.tok_per_s:.1f} tok/s, ended by {event.stop_reason}</sub>")
                    yield render.reasoning_markdown(think, answer) + footer, scores, claims
        except Busy as exc:
            raise gr.Error(str(exc)) from None
        except GenerationError as exc:  # RemoteUnavailable too: the backend's reason
            raise gr.Error(f"The model failed on this clip: {exc}") from None

    def reason_changed(self, changed_path, max_new_tokens, temperature, seed, request: gr.Request,
                       original_path=None, voice="auto"):
        """The lab's question about the changed clip, its pitch placed for the original speaker's
        voice type: a man raised by 5 semitones is still a man, not "a typical woman"."""
        if changed_path:
            voice = self.speaker_voice(original_path, voice)
        yield from self.reason(changed_path, max_new_tokens, temperature, seed, request, voice)

    def speaker_voice(self, original_path, voice="auto") -> str:
        """The voice type chosen, or for "auto" the one assumed from the original clip."""
        if voice != "auto" or not original_path:
            return voice
        return self._measure(original_path)[1].voice_type.assumed or "auto"

    def stop(self, request: gr.Request):
        """The Stop button: ends this session's generation at the next token."""
        self._stop_event(request).set()

    # --- helpers --------------------------------------------------------------------------

    def _measure(self, audio_path, voice="auto") -> tuple[Clip, ProsodyReport]:
        try:
            assume_voice(voice, None)  # before the clip: a wrong parameter is not the clip's fault
            clip = load_audio(audio_path, max_seconds=self.max_seconds)
        except ValueError as exc:  # AudioError is one too
            raise gr.Error(str(exc)) from None
        return clip, analyze(clip, voice=voice)

    def _stop_event(self, request: gr.Request | None) -> threading.Event:
        key = getattr(request, "session_hash", None) or "anonymous"
        return self._stops.setdefault(key, threading.Event())


def _number(value, name: str, low: float, high: float) -> float:
    """An API parameter as a finite number in [low, high], or a gr.Error naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise gr.Error(f"The {name} must be a number from {low:g} to {high:g}; got {value!r}.")
    return number


def _chunk_samples(chunk, max_seconds: float) -> np.ndarray:
    """A microphone chunk as 16 kHz float samples: a file path (a streaming clip input of type
    filepath) or (sample rate, array)."""
    if isinstance(chunk, (str, bytes)) or hasattr(chunk, "__fspath__"):
        import soundfile as sf

        data, sr = sf.read(chunk, dtype="float32", always_2d=False)
    else:
        sr, data = chunk
    return from_array(np.asarray(data), int(sr), min_seconds=0.0, max_seconds=max_seconds).samples


def _whole(value, name: str, low: int, high: int) -> int:
    """An API parameter as a whole number in [low, high], or a gr.Error naming it."""
    number = _number(value, name, low, high)
    if number != int(number):
        raise gr.Error(f"The {name} must be a whole number; got {value!r}.")
    return int(number)
