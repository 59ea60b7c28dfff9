"""The model service behind the app: background loading, its states, the bounded line, stop."""

import threading
import time

import gradio as gr
import pytest

from app.service import Busy, ModelService, Waiting
from engine.audio import from_array, load_audio
from engine.prosody import synth
from engine.reasoning.reasoner import Done, TextDelta


@pytest.fixture(scope="module")
def clip():
    return from_array(synth.harmonic(150, 1.5, syllable_hz=4.0), 16000)


@pytest.fixture(scope="module")
def service(tiny_checkpoint):
    s = ModelService(str(tiny_checkpoint), queue_size=1)
    assert s.wait_until_settled(120) == "ready"
    return s


def test_loading_happens_in_the_background(tiny_checkpoint):
    start = time.perf_counter()
    s = ModelService(str(tiny_checkpoint))
    assert time.perf_counter() - start < 0.5  # the page does not wait for the model
    assert s.status()[0] == "loading"
    assert s.wait_until_settled(120) == "ready"
    assert "nf4" in s.status()[1] and "warm-up" in s.status()[1]  # the CPU default too
    assert "generate()" in s.status()[1]  # the compiled decoder pays on CUDA only


@pytest.mark.slow
def test_a_compiling_service_compiles_the_pages_budget_at_warm_up(tiny_checkpoint):
    """What a GPU gets by default, forced on the CPU: the decode step for a 10 s clip and the
    page's token budget is compiled before the status says ready, so no user waits for it."""
    from engine.audio import from_array
    from engine.prosody import synth
    from engine.reasoning.reasoner import Done

    s = ModelService(str(tiny_checkpoint), compile=True, warm_budgets=(1024,))
    assert s.wait_until_settled(300) == "ready"
    assert "compiled decoder" in s.status()[1]
    clip = from_array(synth.harmonic(150, 10.0, syllable_hz=4.0), 16000)
    done = [e for e in s.reason(clip, threading.Event(), max_new_tokens=1024, score=False)
            if isinstance(e, Done)][0]
    assert done.decoder == "compiled" and done.compile_s == 0  # warm-up paid it


def test_an_unloadable_model_leaves_a_reason_and_a_fix(tmp_path):
    s = ModelService(str(tmp_path / "no-such-checkpoint"))
    assert s.wait_until_settled(60) == "unavailable"
    assert "no checkpoint directory" in s.status()[1]
    with pytest.raises(RuntimeError, match="unavailable"):
        next(s.reason(from_array(synth.harmonic(150, 1.0), 16000), threading.Event()))


def test_prosody_only_mode_never_loads():
    s = ModelService("anything", enabled=False)
    assert s.status() == ("off", "prosody only (started with --no-model)")


def test_a_full_line_says_busy_and_waiting_requests_report_their_place(service, clip):
    first = service.reason(clip, threading.Event(), max_new_tokens=5000, score=False)
    assert isinstance(next(first), TextDelta)  # holds the model
    second = service.reason(clip, threading.Event(), max_new_tokens=2, score=False)
    assert next(second) == Waiting(1)  # in line (queue_size=1)
    with pytest.raises(Busy, match="busy"):
        next(service.reason(clip, threading.Event(), max_new_tokens=2))
    first.close()  # the first user leaves: the model is free
    events = list(second)
    assert isinstance(events[-1], Done) and events[-1].n_tokens == 2


def test_stop_while_waiting_leaves_the_line(service, clip):
    first = service.reason(clip, threading.Event(), max_new_tokens=5000, score=False)
    next(first)
    stop = threading.Event()
    waiting = service.reason(clip, stop, max_new_tokens=2)
    assert isinstance(next(waiting), Waiting)
    stop.set()
    assert list(waiting) == []  # it left without running
    first.close()
    assert list(service.reason(clip, threading.Event(), max_new_tokens=1, score=False))[-1].n_tokens == 1


def test_the_live_trace_grows_across_the_main_plot_then_hands_over_the_take(tmp_path):
    """Microphone chunks as the page's streaming clip input sends them (0.3 s WAV files at
    48 kHz): the pitch and intensity grow across a fixed 8 s axis, then scroll; the clip's
    change events are skipped meanwhile, for this session only; Stop hands the whole take over
    at 16 kHz, and a chunk that comes after Stop changes nothing."""
    from types import SimpleNamespace

    import numpy as np
    import plotly.io as pio
    import soundfile as sf

    from app.handlers import LIVE_WINDOW_S, Handlers

    h = Handlers(ModelService("x", enabled=False), max_seconds=30)
    me, other = SimpleNamespace(session_hash="me"), SimpleNamespace(session_hash="other")
    x = synth.harmonic(220.0, 10.0, sr=48_000, syllable_hz=4.0)
    fig = h.live_start(me)
    assert fig.layout.xaxis.range == (0.0, LIVE_WINDOW_S)
    points, skip = [], gr.skip()
    for i, start in enumerate(range(0, len(x), 14_400)):
        path = tmp_path / f"chunk{i}.wav"
        sf.write(path, x[start:start + 14_400], 48_000, subtype="PCM_16")
        fig = h.live_trace(str(path), me)
        assert h.prosody_unless_recording(str(path), "Hz", "auto", "waveform", me) == (skip, skip, skip)
        assert h.playback(str(path), me) == skip
        data = pio.from_json(fig.to_json()).data
        points.append(sum(v is not None for v in data[0].y))
        if i == 10:  # 3.3 s in: the axis has not moved yet
            assert fig.layout.xaxis.range == (0.0, LIVE_WINDOW_S)
    assert h.playback("other.wav", other) == "other.wav"  # another user's clip is theirs
    assert points[10] > points[5] > points[0]  # it grows while the window fills
    assert fig.layout.xaxis.range == pytest.approx((10.0 - LIVE_WINDOW_S, 10.0), abs=0.02)  # scrolled
    f0 = np.array([v for v in data[0].y if v is not None], float)
    assert np.median(f0) == pytest.approx(220.0, rel=0.02) and "220 Hz" in fig.layout.title.text
    level = np.asarray(fig.data[1].y, float)
    assert data[1].name == "intensity" and -30 < np.median(level) < 0
    with pytest.raises(gr.Error, match="Stop the recording first"):
        list(h.reason(str(path), 8, 0.0, -1, me))
    taken = h.live_done(me)
    clip = load_audio(taken)
    assert clip.sample_rate_hz == 16_000 and clip.samples.size == 160_000
    assert h.live_trace(str(path), me) == skip  # a chunk after Stop: dropped
    assert h.playback(str(path), me) == skip  # ... and its late change event is not the clip
    assert h.playback(taken, me) == taken  # the take is
    assert h.live_done(me) is None  # no take: nothing (and a warning)


def test_a_record_press_without_a_microphone_does_not_gate_the_clip_for_good(monkeypatch):
    """The browser sends Record, then no chunk and no Stop (microphone denied): after
    RECORDING_STALE_S the clip's changes are clips again."""
    from types import SimpleNamespace

    from app import live
    from app.handlers import Handlers

    h = Handlers(ModelService("x", enabled=False), max_seconds=30)
    me = SimpleNamespace(session_hash="me")
    now = [1000.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: now[0])
    h.live_start(me)
    assert h.playback("clip.wav", me) == gr.skip()
    now[0] += live.RECORDING_STALE_S + 0.1
    assert h.playback("clip.wav", me) == "clip.wav"


def test_the_stop_button_ends_this_sessions_generation_only(service, tmp_path):
    import soundfile as sf

    from app.handlers import Handlers

    class Session:  # what gr.Request carries that the handlers use
        def __init__(self, key):
            self.session_hash = key

    path = tmp_path / "clip.wav"
    sf.write(path, synth.harmonic(150, 1.5, syllable_hz=4.0), 16000)
    h = Handlers(service, max_seconds=30)
    h.stop(Session("a"))  # a stale press before anything runs
    updates = []
    for update in h.reason(str(path), 5000, 0.0, -1, Session("a")):
        updates.append(update)
        if len(updates) == 2:
            h.stop(Session("b"))  # another user's Stop: no effect here
        if len(updates) == 4:
            h.stop(Session("a"))
    final_text, scores, _ = updates[-1]
    assert "ended by stopped" in final_text and len(scores) == 9
    assert int(final_text.split("<sub>")[1].split(" tokens")[0]) < 200


def test_a_failed_load_logs_its_traceback_and_the_app_keeps_prosody(tmp_path, caplog):
    """A corrupt weight file (a broken download): the status says it in one line, the log keeps
    the traceback for whoever debugs the Space."""
    import logging

    from engine.reasoning.tiny import build

    ckpt = build(tmp_path / "ckpt")
    shard = sorted(ckpt.glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])
    with caplog.at_level(logging.ERROR, logger="app.service"):
        s = ModelService(str(ckpt), device="cpu")
        assert s.wait_until_settled(120) == "unavailable"
    assert "SafetensorError" in s.status()[1] and "\n" not in s.status()[1]
    failure = next(r for r in caplog.records if r.name == "app.service")
    assert failure.exc_info is not None and "Traceback" in caplog.text


@pytest.mark.parametrize("position,words", [(1, "you are next"), (2, "2nd in line"), (3, "3rd in line"),
                                            (11, "11th in line"), (22, "22nd in line")])
def test_a_waiting_user_reads_their_own_place(position, words):
    from app.render import reasoning_markdown

    assert words in reasoning_markdown("", waiting=position)


def test_queue_size_zero_serves_when_idle_and_refuses_when_busy(tiny_checkpoint, clip):
    s = ModelService(str(tiny_checkpoint), queue_size=0)
    assert s.wait_until_settled(120) == "ready"
    assert list(s.reason(clip, threading.Event(), max_new_tokens=2, score=False))[-1].n_tokens == 2
    first = s.reason(clip, threading.Event(), max_new_tokens=5000, score=False)
    assert isinstance(next(first), TextDelta)
    with pytest.raises(Busy):
        next(s.reason(clip, threading.Event(), max_new_tokens=2))
    first.close()


def test_the_models_words_are_shown_as_text_never_as_markup():
    from app.render import reasoning_markdown

    said = "The pitch rises ![pixel](http://tracker.example/p.png) see [here](http://evil.example) <img src=x>"
    shown = reasoning_markdown(said, answer="[happy](http://evil.example)")
    assert "![" not in shown and "](" not in shown and "<img" not in shown
    assert "\\[here\\]" in shown and "pitch rises" in shown


def test_the_lab_places_a_changed_pitch_for_the_original_speakers_voice(tmp_path):
    """A man raised by 5 semitones (140 -> 187 Hz) is still a man: "auto" would place 187 Hz
    nowhere (or as a woman's), so the lab asks with the original clip's assumed voice type."""
    import soundfile as sf

    from app.handlers import Handlers

    h = Handlers(ModelService("x", enabled=False), max_seconds=30)
    original, changed = tmp_path / "man.wav", tmp_path / "raised.wav"
    sf.write(original, synth.harmonic(140, 1.5, syllable_hz=4.0), 16000)
    sf.write(changed, synth.harmonic(140 * 2 ** (5 / 12), 1.5, syllable_hz=4.0), 16000)
    assert h.speaker_voice(str(original)) == "male"
    assert h.speaker_voice(str(original), "female") == "female"  # a choice is kept
    assert h.speaker_voice(None) == "auto"
    _, report = h._measure(str(changed), h.speaker_voice(str(original)))
    assert report.levels.pitch == "high" and report.voice_type.assumed == "male"


def test_a_recording_past_the_clip_limit_keeps_its_start_and_says_so(monkeypatch):
    """As an upload over --max-seconds is refused in words, a take that runs past it keeps its
    first max_seconds, the live title says to stop, and Stop warns that the rest was not kept."""
    from types import SimpleNamespace

    import numpy as np

    from app.handlers import Handlers
    from engine.prosody import analyze

    warned = []
    monkeypatch.setattr(gr, "Warning", lambda message: warned.append(message))
    h = Handlers(ModelService("x", enabled=False), max_seconds=2)
    me = SimpleNamespace(session_hash="me")
    x = np.concatenate([synth.harmonic(200.0, 2.0, syllable_hz=4.0),  # kept
                        synth.harmonic(300.0, 1.0, syllable_hz=4.0)]).astype(np.float32)  # over
    h.live_start(me)
    for start in range(0, len(x), 4800):
        fig = h.live_trace((16_000, x[start:start + 4800]), me)
    assert "limit is reached" in fig.layout.title.text
    take = load_audio(h.live_done(me))
    assert take.samples.size == 32_000
    assert analyze(take).pitch.median_hz == pytest.approx(200, rel=0.02)
    assert warned and "Only the first 2 s" in warned[0]
