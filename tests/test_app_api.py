"""The app served over HTTP on 127.0.0.1 with the tiny model, driven by gradio_client."""

import numpy as np
import plotly.io as pio
import pytest
import soundfile as sf

from engine.audio import load_audio
from engine.prosody import analyze, synth


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory, espeak_sentence):
    path = tmp_path_factory.mktemp("clips") / "sentence.wav"
    sf.write(path, *espeak_sentence)
    return path


def traces(figure_output) -> dict:
    fig = pio.from_json(figure_output["plot"])
    return {t.name: t for t in fig.data}


def values(data) -> np.ndarray:
    """A trace's x or y: plotly sends numeric arrays base64-encoded, lists with gaps as lists."""
    import base64

    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).astype(float)
    return np.array([np.nan if v is None else v for v in data], float)


def test_prosody_endpoint_returns_the_measured_contours(client, clip_file):
    from gradio_client import handle_file

    fig, summary, measurements = client.predict(handle_file(str(clip_file)), "Hz", api_name="/prosody")
    report = analyze(load_audio(clip_file))
    t = traces(fig)
    np.testing.assert_allclose(values(t["pitch"].y), report.contours.f0_hz, atol=0.01)  # gaps: NaN
    np.testing.assert_allclose(values(t["intensity"].y), report.contours.intensity_db, atol=1e-6)
    np.testing.assert_allclose(values(t["pitch"].x), report.contours.time_s, atol=1e-9)
    assert measurements["pitch"]["median_hz"] == pytest.approx(report.pitch.median_hz, abs=1e-3)
    assert "Pitch:" in summary and "Intonation:" in summary
    assert report.intonation.label.replace("_", " ") in fig["plot"]  # annotated in the title


def test_the_voice_type_sets_the_pitch_level_and_is_shown(client, tmp_path):
    """A 165 Hz voice: no level until a voice type is chosen; then low for a woman, high for a man."""
    from gradio_client import handle_file

    path = tmp_path / "mid.wav"
    sf.write(path, synth.harmonic(165, 1.5, syllable_hz=4.0), 16000)
    _, auto, m = client.predict(handle_file(str(path)), "Hz", "auto", api_name="/prosody")
    assert m["levels"]["pitch"] is None and "none assumed" in auto and "no level" in auto
    _, female, m = client.predict(handle_file(str(path)), "Hz", "female", api_name="/prosody")
    assert m["levels"]["pitch"] == "low" and "a low voice for a woman" in female
    _, _, m = client.predict(handle_file(str(path)), "Hz", "male", api_name="/prosody")
    assert m["levels"]["pitch"] == "high" and m["voice_type"]["requested"] == "male"
    _, _, m = client.predict(handle_file(str(path)), "Hz", api_name="/prosody")  # default: auto
    assert m["voice_type"]["requested"] == "auto"
    reasoning, _, _ = client.predict(handle_file(str(path)), 8, 0.0, -1, "female", api_name="/reason")
    assert "8 tokens" in reasoning  # /reason takes the voice type for its grounding check
    with pytest.raises(Exception, match="not in the list of choices"):  # gradio checks the Radio
        client.predict(handle_file(str(path)), "Hz", "tenor", api_name="/prosody")


def test_reason_endpoint_streams_then_answers_with_nine_scores(client, clip_file):
    from gradio_client import handle_file

    job = client.submit(handle_file(str(clip_file)), 48, 0.0, -1, api_name="/reason")
    updates = list(job)
    assert len(updates) >= 3  # reasoning arrives in pieces, then the answer, then the timing
    reasoning, label, claims = job.outputs()[-1]
    assert "48 tokens" in reasoning and "ended by length" in reasoning
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert len(confidences) == 9 and sum(confidences.values()) == pytest.approx(1.0, abs=1e-6)
    assert isinstance(claims, str) and claims


def test_a_bad_file_gets_an_error_and_the_next_request_works(client, tmp_path, clip_file):
    from gradio_client import handle_file

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    with pytest.raises(Exception, match="could not be read as audio"):
        client.predict(handle_file(str(bad)), "Hz", api_name="/prosody")
    long = tmp_path / "long.wav"
    sf.write(long, synth.harmonic(150, 13.0), 16000)
    with pytest.raises(Exception, match="the limit is 12 s"):
        client.predict(handle_file(str(long)), "Hz", api_name="/prosody")
    fig, summary, _ = client.predict(handle_file(str(clip_file)), "Hz", api_name="/prosody")
    assert "Pitch:" in summary


def test_uploads_over_the_size_limit_are_refused(client, tmp_path):
    from gradio_client import handle_file

    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(16000 * 70, np.float32), 16000, subtype="FLOAT")  # 4.5 MB > 2 MB
    with pytest.raises(ValueError, match="exceeds the maximum file size of 2097152 bytes"):
        client.predict(handle_file(str(big)), "Hz", api_name="/prosody")


def test_manipulate_endpoint_resynthesises(client, clip_file):
    from gradio_client import handle_file

    audio_path, fig = client.predict(handle_file(str(clip_file)), 4.0, 1.0, 0.0, 1.25, 0.0,
                                     api_name="/manipulate")
    before, after = analyze(load_audio(clip_file)), analyze(load_audio(audio_path))
    assert 12 * np.log2(after.pitch.median_hz / before.pitch.median_hz) == pytest.approx(4.0, abs=0.4)
    assert load_audio(clip_file).duration_s / load_audio(audio_path).duration_s == pytest.approx(1.25, rel=0.02)
    names = list(traces(fig))
    assert len(names) == 2 and names[0].startswith("original") and names[1].startswith("changed")


def test_compare_endpoint(client, clip_file):
    from gradio_client import handle_file

    example = "assets/examples/subdued.flac"
    fig, a, b = client.predict(handle_file(str(clip_file)), handle_file(example), api_name="/compare")
    names = list(traces(fig))
    assert len(names) == 2 and names[0].startswith("A:") and names[1].startswith("B:")
    assert "Pitch:" in a and "Pitch:" in b
    xs = [values(t.x) for t in traces(fig).values()]
    assert all(-0.1 < x.min() and x.max() < 1.1 for x in xs)  # time-normalised


def test_only_the_named_endpoints_are_public(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/prosody", "/reason", "/manipulate", "/compare", "/export",
                                           "/imitate", "/batch"}
    assert [p["parameter_name"] for p in api["named_endpoints"]["/prosody"]["parameters"]] == \
        ["audio_path", "unit", "voice", "view"]  # the session's take is not a parameter
    assert not api["unnamed_endpoints"]


def test_prosody_does_not_wait_behind_the_model(client, clip_file):
    import time

    from gradio_client import handle_file

    long_job = client.submit(handle_file(str(clip_file)), 4096, 0.0, -1, api_name="/reason")
    time.sleep(1.0)  # the model is busy generating
    start = time.perf_counter()
    _, summary, _ = client.predict(handle_file(str(clip_file)), "Hz", api_name="/prosody")
    elapsed = time.perf_counter() - start
    assert "Pitch:" in summary and not long_job.done()
    assert elapsed < 5
    long_job.cancel()


@pytest.fixture(scope="module")
def quiet_file(tmp_path_factory, espeak_sentence):
    """The sentence at -30 dBFS RMS: room for every gain the lab offers but the largest."""
    x, sr = espeak_sentence
    x = x * (10 ** (-30 / 20) / np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    path = tmp_path_factory.mktemp("quiet") / "quiet.wav"
    sf.write(path, x.astype(np.float32), sr, subtype="FLOAT")
    return path


@pytest.mark.parametrize("gain_db", [-20.0, -6.0, 0.0, 6.0])
def test_the_labs_gain_reaches_the_listener(client, quiet_file, gain_db):
    """Gradio peak-normalises float audio: once, every gain came back at -10 dBFS."""
    from gradio_client import handle_file

    audio_path, _ = client.predict(handle_file(str(quiet_file)), 0.0, 1.0, 0.0, 1.0, gain_db,
                                   api_name="/manipulate")
    before, after = load_audio(quiet_file), load_audio(audio_path)
    assert after.rms_dbfs - before.rms_dbfs == pytest.approx(gain_db, abs=0.5)


def test_a_gain_that_would_clip_is_lowered_to_fit(client, quiet_file):
    from gradio_client import handle_file

    audio_path, _ = client.predict(handle_file(str(quiet_file)), 0.0, 1.0, 0.0, 1.0, 12.0,
                                   api_name="/manipulate")
    loud = load_audio(audio_path)
    assert not loud.clipped and -0.1 < loud.peak_dbfs <= 0.0


def test_the_live_take_keeps_its_level():
    """The microphone take handed to the Analyse tab as Gradio serves it (its own conversion)."""
    import gradio as gr

    from app.handlers import Handlers

    x = (10 ** (-40 / 20) * np.sqrt(2)) * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000)
    from types import SimpleNamespace

    from app.service import ModelService

    h, me = Handlers(ModelService("x", enabled=False), max_seconds=30), SimpleNamespace(session_hash="me")
    h.live_start(me)
    h.takes.add("me", x.astype(np.float32), 8.0)
    take = h.live_done(me)
    served = gr.Audio(type="filepath").postprocess(take)
    assert load_audio(served.path).rms_dbfs == pytest.approx(-40.0, abs=0.5)


def test_analytics_are_off(server):
    import json
    import urllib.request

    with urllib.request.urlopen(server[0] + "config", timeout=30) as response:
        config = json.loads(response.read())
    assert config["analytics_enabled"] is False


def _request(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method=method, headers=headers or {},
                                     data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def test_on_loopback_other_host_names_are_refused(server):
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1."""
    status, body = _request(server[0] + "config", headers={"Host": "evil.example"})
    assert status == 403 and "localhost only" in body
    port = server[0].rsplit(":", 1)[1].strip("/")
    assert _request(server[0] + "config", headers={"Host": f"localhost:{port}"})[0] == 200


def test_on_loopback_uploads_from_other_pages_are_refused(server):
    port = server[0].rsplit(":", 1)[1].strip("/")
    other = {"Origin": "http://127.0.0.1:1"}  # a page served from another local port
    status, body = _request(server[0] + "gradio_api/upload", "POST", other)
    assert status == 403 and "another page" in body
    same = {"Origin": f"http://127.0.0.1:{port}"}
    assert _request(server[0] + "gradio_api/upload", "POST", same)[0] != 403


def test_the_guard_stands_aside_when_serving_other_names():
    import asyncio

    from engine.guard import LoopbackGuard, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("evil.example")
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])

    scope = {"type": "http", "method": "POST", "path": "/x",
             "headers": [(b"host", b"evil.example"), (b"origin", b"http://other")]}
    asyncio.run(LoopbackGuard(app, enabled=False)(scope, None, None))
    assert seen == ["/x"]


@pytest.mark.parametrize("tokens,temperature,seed,words", [
    (12.5, 0.0, -1, "max new tokens must be a whole number"),
    (0, 0.0, -1, "less than minimum value 8"),  # Gradio's own check of the slider, in words
    (16, 0.0, 2**70, "seed must be a number"),  # once: "The model failed on this clip: Overflow"
])
def test_reason_parameters_are_checked_in_words(client, clip_file, tokens, temperature, seed, words):
    from gradio_client import handle_file

    with pytest.raises(Exception, match=words) as err:
        client.predict(handle_file(str(clip_file)), tokens, temperature, seed, api_name="/reason")
    assert "clip" not in str(err.value)  # a setting, not the clip, is at fault


@pytest.mark.parametrize("tokens,temperature,words", [
    (float("nan"), 0.0, "max new tokens must be a number"),  # once: "cannot convert float NaN"
    (16, float("inf"), "temperature must be a number"),
])
def test_non_finite_parameters_are_checked_in_words(server, clip_file, tokens, temperature, words):
    """What a raw JSON client can send (gradio_client refuses NaN itself), at the handler."""
    import gradio as gr

    from app.handlers import Handlers

    handlers = Handlers(server[1], max_seconds=8)
    with pytest.raises(gr.Error, match=words):
        next(handlers.reason(str(clip_file), tokens, temperature, -1, request=None))


def test_the_pitch_can_be_drawn_over_a_wideband_spectrogram(client, clip_file):
    from gradio_client import handle_file

    from engine.prosody.analysis import spectrogram

    fig, _, _ = client.predict(handle_file(str(clip_file)), "Hz", "auto", "spectrogram",
                               api_name="/prosody")
    t = traces(fig)
    assert {"spectrogram", "pitch", "intensity"} <= set(t) and "waveform" not in t
    times, freqs, level = spectrogram(load_audio(clip_file))
    z = t["spectrogram"].z
    if isinstance(z, dict):  # plotly sends arrays base64-encoded, with their shape
        import base64

        shape = tuple(int(n) for n in str(z["shape"]).split(","))
        z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    z = np.asarray(z, dtype=float)
    assert z.shape == level.shape and z.max() == 50 and z.min() == 0  # the top 50 dB
    assert values(t["spectrogram"].y)[-1] == pytest.approx(freqs[-1]) and freqs[-1] <= 5000
    layout = pio.from_json(fig["plot"]).layout
    assert layout.yaxis.overlaying == "y3" and layout.yaxis3.title.text == "frequency (Hz)"


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets" / "examples"


def test_imitate_scores_a_clip_against_itself_and_a_monotone_copy(client):
    from gradio_client import handle_file

    target = handle_file(str(EXAMPLES / "neutral.flac"))
    fig, scores, feedback = client.predict(target, target, api_name="/imitate")
    assert set(scores) == {"melody", "range", "tempo", "loudness", "pauses", "overall"}
    assert all(v >= 95 for v in scores.values()), scores
    shown = traces(fig)
    assert {"target", "your imitation"} <= set(shown)
    np.testing.assert_allclose(values(shown["target"].y), values(shown["your imitation"].y), equal_nan=True)

    _, flat, feedback = client.predict(target, handle_file(str(EXAMPLES / "neutral_monotone_slow.flac")),
                                       api_name="/imitate")
    assert flat["melody"] <= scores["melody"] - 30 and flat["range"] < 50 and flat["tempo"] < 90
    assert flat["pauses"] >= 80  # what was not changed stays high
    assert "| melody |" in feedback and "one note" in feedback and "more slowly" in feedback


def test_imitate_needs_both_clips(client):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="target clip and your imitation"):
        client.predict(handle_file(str(EXAMPLES / "neutral.flac")), None, api_name="/imitate")


def test_batch_analyses_a_zip_and_files_listing_what_it_cannot(client, server, tmp_path):
    import csv
    import zipfile

    from gradio_client import handle_file

    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("neutral.flac", "subdued.flac", "excited.flac"):
            zf.write(EXAMPLES / name, f"group1/anna_{name.replace('excited', 'happy')}")
        zf.writestr("../escape.wav", (EXAMPLES / "neutral.flac").read_bytes())
        zf.writestr("notes.txt", "hello")
    broken = tmp_path / "bob_angry.wav"
    broken.write_bytes(b"RIFF not really")
    notes = tmp_path / "notes.txt"  # a loose file that is not audio: listed, the rest analysed
    notes.write_text("hello")
    files = [handle_file(str(archive)), handle_file(str(EXAMPLES / "neutral_rising.flac")),
             handle_file(str(broken)), handle_file(str(notes))]
    table, fig, csv_path = client.predict(files, api_name="/batch")
    listed = [dict(zip(table["headers"], r)) for r in table["data"]]
    rows = [r for r in listed if r["error"] is None]
    failed = {r["file"]: r["error"] for r in listed if r["error"] is not None}  # every file is accounted for
    assert set(failed) == {"class.zip/../escape.wav", "class.zip/notes.txt", "bob_angry.wav", "notes.txt"}
    assert "leaves the archive" in failed["class.zip/../escape.wav"]
    assert "not an audio file" in failed["class.zip/notes.txt"] and "could not be read" in failed["bob_angry.wav"]
    assert all(r["pitch_median_hz"] is None for r in listed if r["error"])
    assert [r["file"] for r in rows] == ["class.zip/group1/anna_neutral.flac", "class.zip/group1/anna_subdued.flac",
                                         "class.zip/group1/anna_happy.flac", "neutral_rising.flac"]
    assert [r["tag"] for r in rows] == ["neutral", None, "happy", "neutral"]
    for r in rows:  # each row is the clip's own analysis
        name = r["file"].rsplit("/", 1)[-1].replace("anna_", "").replace("happy", "excited")
        report = analyze(load_audio(EXAMPLES / name))
        assert r["pitch_median_hz"] == pytest.approx(report.pitch.median_hz, abs=0.05)
        assert r["syllable_count"] == report.rate.syllable_count
    with open(csv_path, newline="", encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    assert [r["file"] for r in read] == [r["file"] for r in listed]  # the CSV lists the failed too
    points = sum(len(values(t.x)) for t in pio.from_json(fig["plot"]).data)
    assert points == 4

    too_many = [handle_file(str(p)) for p in sorted(EXAMPLES.glob("*.flac"))]  # 6 > the server's 5
    table, _, _ = client.predict(too_many, api_name="/batch")
    errors = [dict(zip(table["headers"], r))["error"] for r in table["data"]]
    assert len(errors) == 6 and errors.count(None) == 5 and "at most 5 clips" in errors[-1]


def test_batch_failures_are_listed_with_their_reasons(tmp_path):
    import zipfile

    from app.handlers import Handlers
    from app.service import ModelService

    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(EXAMPLES / "neutral.flac", "a.flac")
        zf.writestr("../escape.wav", b"RIFF")
        zf.writestr("notes.txt", "hello")
    broken = tmp_path / "b.wav"
    broken.write_bytes(b"RIFF not really")
    h = Handlers(ModelService("x", enabled=False), max_seconds=30)
    table, _, _, result = h.batch([str(archive), str(broken)], progress=lambda *a, **k: None)
    assert list(table["file"])[0] == "class.zip/a.flac" and len(table) == 4
    failed = h.batch_failures(result).replace("\\", "")  # as displayed: Markdown escapes removed
    assert "3 not analysed" in failed and "escape.wav" in failed and "leaves the archive" in failed
    assert "notes.txt" in failed and "not an audio file" in failed and "- b.wav:" in failed
    assert not (tmp_path.parent / "escape.wav").exists()
    redrawn = h.batch_plot(result, "duration_s", "pitch_range_st", "voice_type")
    assert redrawn.layout.xaxis.title.text == "duration_s" and redrawn.data[0].name == "male"
    with pytest.raises(ValueError, match="axes come from"):
        h.batch_plot(result, "file", "pitch_range_st", "tag")


def test_batch_with_the_model_fills_the_emotion_column(client):
    from gradio_client import handle_file

    from engine.reasoning.prompts import LABELS

    files = [handle_file(str(EXAMPLES / n)) for n in ("neutral.flac", "excited.flac")]
    table, _, csv_path = client.predict(files, "auto", True, 8, api_name="/batch")
    emotions = [dict(zip(table["headers"], r))["emotion"] for r in table["data"]]
    assert len(emotions) == 2 and all(e in LABELS for e in emotions)  # the tiny model's scored label
    assert all(e in open(csv_path, encoding="utf-8").read() for e in emotions)
