"""What the buttons do. Each handler takes component values and returns component values; none
holds model or signal-processing code (that is engine/). Errors a user can fix become gr.Error
with the reason in words; the app keeps serving everyone else."""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np

from app import figures, render
from app.live import LiveTakes
from app.service import Busy, ModelService, Waiting
from engine.audio import MIN_SECONDS, SAMPLE_RATE_HZ, Clip, from_array, load_audio, to_pcm16, write_wav
from engine.batch import Limits
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
OUTPUT_KEEP_S = 600  # our copies of files handed to Gradio live this long (it copies them at once)


class Handlers:
    def __init__(self, service: ModelService, max_seconds: float, batch_limits: Limits | None = None) -> None:
        self.service, self.max_seconds = service, max_seconds
        self.batch_limits = batch_limits or Limits(max_seconds=max_seconds)
        self.takes = LiveTakes(max_seconds)  # microphone takes in progress, per session
        self.scratch = Path(tempfile.mkdtemp(prefix="et-outputs-"))  # files handed to Gradio
        self._stops: dict[str, threading.Event] = {}  # session -> its stop button's event
        try:  # on a ZeroGPU Space, the GPU is attached for the duration of each reasoning call
            import spaces

            self.reason = spaces.GPU(duration=ZEROGPU_SECONDS)(self.reason)
            self._label = spaces.GPU(duration=ZEROGPU_SECONDS)(self._label)  # the Class tab's answers
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

    def export(self, audio_path, voice="auto", request: gr.Request = None):
        """The measurements to keep: Praat TextGrid and PitchTier, a per-frame CSV, the JSON."""
        from engine.export import write_all

        if not audio_path:
            raise gr.Error("Record or upload a clip first.")
        self._not_recording(request)
        clip, report = self._measure(audio_path, voice)
        stem = Path(str(audio_path)).stem[:60] or "clip"
        return [str(p) for p in write_all(report, self._output_folder(), stem)]

    def compare(self, path_a, path_b):
        """Two clips side by side: contours on a time-normalised axis and two summaries."""
        if not path_a or not path_b:
            raise gr.Error("Give two clips to compare.")
        (clip_a, a), (clip_b, b) = self._measure(path_a), self._measure(path_b)
        fig = figures.overlay_figure([("A", a), ("B", b)], normalise_time=True)
        return fig, render.summary_markdown(a, clip_a), render.summary_markdown(b, clip_b)

    def imitate(self, target_path, attempt_path):
        """An imitation against its target: both aligned in time and overlaid, a score for each
        dimension with the measure behind it, and a sentence of feedback each."""
        from engine.imitate import compare

        if not target_path or not attempt_path:
            raise gr.Error("Give a target clip and your imitation of it.")
        (_, target), (_, attempt) = self._measure(target_path), self._measure(attempt_path)
        try:
            result = compare(target, attempt)
        except ValueError as exc:  # a clip over imitation's length limit
            raise gr.Error(str(exc)) from None
        return figures.imitation_figure(result), result.to_dict(), render.imitation_markdown(result)

    def batch(self, paths, voice="auto", with_model=False, max_new_tokens=256,
              progress=gr.Progress()):  # noqa: B008 - Gradio reads the progress tracker from the default
        """The class at once: every clip (or every clip in a zip) analysed, one row each, a
        scatter plot, a CSV; with `with_model` the model's label for each clip fills the emotion
        column. The files that failed are kept for `batch_failures`."""
        from engine.batch import BatchError, Failure, analyse, collect, failure_row, to_csv

        paths = [paths] if isinstance(paths, str) else [p for p in paths or [] if p]
        if not paths:
            raise gr.Error("Upload the clips (several files, or one zip) first.")
        options = None
        if with_model:  # refused before the prosody work, not after it
            state, message = self.service.status()
            if state != "ready":
                raise gr.Error(f"The model is not available ({message}). Untick 'also ask the model' to "
                           "measure the prosody alone.")
            options = GenerationOptions(max_new_tokens=_whole(max_new_tokens, "max new tokens", 1, MAX_API_TOKENS))
        with tempfile.TemporaryDirectory(prefix="batch-") as work:
            try:
                items, failed = collect(paths, Path(work) / "clips", self.batch_limits)
                progress(0.0, desc=f"analysing {len(items)} clips")
                rows, broken = analyse(items, voice=voice, limits=self.batch_limits,
                                       progress=lambda done, total, name: progress(done / total, desc=name))
            except (BatchError, ValueError) as exc:
                raise gr.Error(str(exc)) from None
            if options is not None:
                paths_by_name = {i.name: i.path for i in items}
                for done, row in enumerate(rows, 1):
                    progress(done / len(rows), desc=f"the model on {row['file']}")
                    try:
                        row["emotion"] = self._label(paths_by_name[row["file"]], options)
                    except (Busy, GenerationError) as exc:  # this row goes without; the rest go on
                        broken.append(Failure(row["file"], f"measured, but the model failed: {exc}"))
        listed = rows + [failure_row(f) for f in failed + broken]  # every file: the failed say why
        csv = to_csv(listed, Path(self._output_folder()) / "class.csv")
        failures = [(f.name, f.reason) for f in failed + broken]
        return figures.batch_table(listed), figures.batch_figure(rows), str(csv), {"rows": rows, "failures": failures}

    def _label(self, path, options: GenerationOptions) -> str | None:
        """The model's answer for one clip: the label it wrote, else its most probable one."""
        clip = load_audio(path, max_seconds=self.max_seconds)
        answer = [e for e in self.service.reason(clip, threading.Event(), options) if isinstance(e, Answer)][-1]
        return answer.label if answer.label not in (None, "unknown") else answer.scored_label

    @staticmethod
    def batch_failures(result):
        """The files of the last batch that were not analysed, each with its reason."""
        return render.failures_markdown((result or {}).get("failures", []))

    @staticmethod
    def batch_plot(result, x, y, colour):
        """The scatter plot again, with other axes or another colouring."""
        return figures.batch_figure((result or {}).get("rows", []), x, y, colour)

    def manipulate(self, audio_path, shift_st, pitch_range, tilt_st, tempo, gain_db,
                   request: gr.Request = None):
        """The prosody lab: the clip re-synthesised with changed prosody, contours overlaid."""
        from engine.prosody.manipulate import manipulate

        if not audio_path:
            raise gr.Error("Record or upload a clip on the Analyse tab first.")
        self._not_recording(request)
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

    def prosody_unless_recording(self, audio_path, unit="Hz", voice="auto", view="waveform",
                                 request: gr.Request = None):
        """The clip changed: analyse it, unless it is a microphone chunk of a take in progress
        (a streaming microphone changes the clip's value every chunk; the live trace draws then)."""
        if self.takes.is_chunk(_session(request), audio_path):
            return gr.skip(), gr.skip(), gr.skip()
        return self.prosody(audio_path, unit, voice, view)

    def forget_answer(self, audio_path, request: gr.Request = None):
        """A new clip: the previous clip's reasoning, confidences and claims are cleared."""
        return (gr.skip(),) * 3 if self.takes.is_chunk(_session(request), audio_path) else ("", None, "")

    def playback(self, audio_path, request: gr.Request = None):
        """The clip to play back: the upload, the example or the whole take (not a chunk)."""
        return gr.skip() if self.takes.is_chunk(_session(request), audio_path) else audio_path

    def live_start(self, request: gr.Request = None):
        """Record pressed: a new take for this session, and empty live axes."""
        self.takes.start(_session(request))
        empty = np.zeros(0)
        return figures.live_figure(empty, empty, empty, LIVE_WINDOW_S)

    def live_trace(self, chunk, request: gr.Request = None):
        """A microphone chunk: into the take, and the pitch and intensity of the last
        LIVE_WINDOW_S seconds redrawn across the main plot (not once Stop has come: then the
        full analysis is, or is about to be, on it)."""
        from engine.prosody.analysis import frame_levels
        from engine.prosody.pitch import frame_times, track_pitch

        session = _session(request)
        if chunk is None:
            return gr.skip()
        added = self.takes.add(session, _chunk_samples(chunk, self.max_seconds), LIVE_WINDOW_S)
        if added is None:
            return gr.skip()
        window, offset_s = added
        times = frame_times(len(window) / SAMPLE_RATE_HZ)
        f0 = track_pitch(window, SAMPLE_RATE_HZ, times).f0_hz
        level_db = frame_levels(window, SAMPLE_RATE_HZ, times)
        if self.takes.ended(session):
            return gr.skip()
        return figures.live_figure(times + offset_s, f0, level_db, LIVE_WINDOW_S,
                                   full_s=self.max_seconds if self.takes.full(session) else None)

    def live_done(self, request: gr.Request = None):
        """Stop pressed: the whole take becomes the clip, whose change event then draws the full
        analysis over the live trace."""
        import uuid

        session = _session(request)
        take, full = self.takes.finish(session)
        if take is None or len(take) < MIN_SECONDS * SAMPLE_RATE_HZ:
            gr.Warning(f"The recording is shorter than {MIN_SECONDS} s: nothing to analyse.")
            return None
        if full:
            gr.Warning(f"Only the first {self.max_seconds:g} s of the recording were kept: that is "
                       "the longest clip this app analyses.")
        name = f"take-{uuid.uuid4().hex[:12]}.wav"  # unique: the clip's change to it is the take's
        path = Path(self._output_folder()) / name
        write_wav(path, from_array(take, SAMPLE_RATE_HZ, max_seconds=self.max_seconds))  # at its level
        self.takes.handed_over(session, name)
        return str(path)

    def _not_recording(self, request) -> None:
        """Refuse to use the clip while its microphone records: its value is the last chunk."""
        if self.takes.recording(_session(request)):
            raise gr.Error("Stop the recording first: the clip is the whole take once you stop.")

    # --- the model ------------------------------------------------------------------------

    def status(self):
        return render.status_markdown(*self.service.status())

    def reason(self, audio_path, max_new_tokens, temperature, seed, request: gr.Request,
               voice="auto"):
        """Stream the model's reasoning, then its answer with nine confidences and the claims
        checked against the measured prosody (pitch levels for the `voice` type)."""
        if not audio_path:
            raise gr.Error("Record or upload a clip first.")
        self._not_recording(request)
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
        yield "", None, ""  # the last clip's answer goes at once: it is not this clip's
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
        return self._stops.setdefault(_session(request), threading.Event())

    def _output_folder(self) -> str:
        """A fresh folder for files handed to Gradio (which copies them into its own cache, kept
        and deleted by --keep-files-s); folders older than OUTPUT_KEEP_S are removed."""
        now = time.time()
        for old in self.scratch.iterdir():
            if now - old.stat().st_mtime > OUTPUT_KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
        return tempfile.mkdtemp(dir=self.scratch)


def _number(value, name: str, low: float, high: float) -> float:
    """An API parameter as a finite number in [low, high], or a gr.Error naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise gr.Error(f"The {name} must be a number from {low:g} to {high:g}; got {value!r}.")
    return number


def _session(request) -> str:
    """The browser session a request comes from (one key for callers without one)."""
    return getattr(request, "session_hash", None) or "anonymous"


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
