"""The app and the CLI with the reasoning on a remote OpenAI-compatible backend (engine.serve
with the tiny model, a real server on loopback); prosody and the claim check stay local."""

import http.server
import json
import subprocess
import sys
import threading
import time

import pytest
import soundfile as sf

from engine.prosody import synth
from tests.conftest import free_port


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("remote") / "clip.wav"
    sf.write(path, synth.harmonic(lambda t: 150 * 2 ** (t / 2), 2.0, syllable_hz=4.0), 16000)
    return path


def launch_app(*flags):
    from app.settings import parse
    from app.ui import launch

    port = free_port()
    demo, service = launch(parse(["--port", str(port), "--max-seconds", "8", *flags]), block=False)
    return f"http://127.0.0.1:{port}/", demo, service


def test_the_app_reasons_through_a_backend(openai_backend, clip_file):
    from gradio_client import Client, handle_file

    url, demo, service = launch_app("--backend", openai_backend)
    try:
        assert service.wait_until_settled(30) == "ready"
        assert openai_backend in service.status()[1] and "tiny" in service.status()[1]
        client = Client(url, verbose=False)
        job = client.submit(handle_file(str(clip_file)), 32, 0.0, -1, api_name="/reason")
        updates = list(job)
        assert len(updates) >= 3  # streamed in pieces
        reasoning, label, claims = job.outputs()[-1]
        assert "32 tokens" in reasoning and "ended by length" in reasoning
        confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
        assert len(confidences) == 9 and sum(confidences.values()) == pytest.approx(1.0, abs=1e-6)
        assert isinstance(claims, str) and claims
        _, summary, _ = client.predict(handle_file(str(clip_file)), "Hz", api_name="/prosody")
        assert "Pitch:" in summary  # prosody is measured here
    finally:
        demo.close()


def test_a_backend_that_is_down_is_said_so_in_seconds_and_prosody_works(clip_file):
    from gradio_client import Client, handle_file

    dead = f"http://127.0.0.1:{free_port()}/v1"
    url, demo, service = launch_app("--backend", dead)
    try:
        start = time.time()
        assert service.wait_until_settled(30) == "unavailable"
        assert time.time() - start < 10 and "does not answer" in service.status()[1]
        client = Client(url, verbose=False)
        _, summary, _ = client.predict(handle_file(str(clip_file)), "Hz", api_name="/prosody")
        assert "Pitch:" in summary
        reasoning, _, _ = client.predict(handle_file(str(clip_file)), 16, 0.0, -1, api_name="/reason")
        assert "unavailable" in reasoning.lower() and dead in reasoning
    finally:
        demo.close()


def test_a_backend_that_answers_garbage_is_refused_with_the_reason():
    from engine.remote import RemoteReasoner, RemoteUnavailable

    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>not an API</html>")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.time()
        with pytest.raises(RemoteUnavailable, match="does not answer"):
            RemoteReasoner(f"http://127.0.0.1:{server.server_port}/v1").check()
        assert time.time() - start < 10
    finally:
        server.shutdown()


def test_the_cli_reasons_through_a_backend(openai_backend, clip_file):
    done = subprocess.run([sys.executable, "-m", "engine", "analyze", str(clip_file), "--backend",
                           openai_backend, "--json", "--no-contours", "--max-new-tokens", "12"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["pitch"]["median_hz"] > 100  # measured here
    reasoning = result["reasoning"]
    assert len(reasoning["scores"]) == 9 and reasoning["timing"]["n_tokens"] == 12
    assert "backend: tiny" in done.stderr


def test_remote_text_equals_the_local_engines(openai_backend, clip_file, tiny_model):
    """The same clip, greedy: the backend's reasoning and answer are the engine's own."""
    from engine.audio import load_audio
    from engine.reasoning.reasoner import Answer, Reasoner
    from engine.remote import RemoteReasoner

    clip = load_audio(clip_file)
    local = next(e for e in Reasoner(tiny_model).stream(clip, max_new_tokens=24) if isinstance(e, Answer))
    remote = next(e for e in RemoteReasoner(openai_backend).stream(clip, max_new_tokens=24)
                  if isinstance(e, Answer))
    assert remote.think == local.think and remote.raw == local.raw
    assert remote.scores == pytest.approx(local.scores, abs=1e-5)
