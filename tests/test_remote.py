"""The app and the CLI with the reasoning on a remote OpenAI-compatible backend (engine.serve
with the tiny model, a real server on loopback); prosody and the claim check stay local."""

import http.server
import json
import math
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


def test_a_backend_that_refuses_logprobs_is_asked_again_without(clip_file):
    """A server that speaks the protocol but refuses `logprobs` with a 400 (as some do): the
    request is made again without them, the answer arrives, and the note says why there are no
    confidences. The server here writes a fixed answer: it stands in for a remote model, the
    client is what is tested."""
    from engine.audio import load_audio
    from engine.reasoning.reasoner import Answer
    from engine.remote import RemoteReasoner

    asked = []

    class NoLogprobs(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            self.reply(200, {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "someone"}]})

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append("logprobs" in body)
            if "logprobs" in body:
                return self.reply(400, {"error": {"message": "logprobs is not supported", "type": "x"}})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for text in ("<think>it is loud</think>", "<answer>angry</answer>"):
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                         "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoLogprobs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = RemoteReasoner(f"http://127.0.0.1:{server.server_port}/v1")
        clip = load_audio(clip_file)
        answer = next(e for e in remote.stream(clip) if isinstance(e, Answer))
        assert answer.label == "angry" and answer.think == "it is loud" and answer.scores == {}
        assert answer.scores_note == "no confidences: the backend returns no log-probabilities"
        assert asked == [True, False]
        next(e for e in remote.stream(clip) if isinstance(e, Answer))
        assert asked == [True, False, False]  # not asked again
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


def test_confidences_from_log_probabilities_when_the_server_has_no_extension(openai_backend, clip_file):
    """As against vLLM: the stream asks for log-probabilities; the tiny model writes no answer,
    so there are none to read, and the Answer says exactly that (not "none sent")."""
    from engine.audio import load_audio
    from engine.reasoning.reasoner import Answer
    from engine.remote import RemoteReasoner

    remote = RemoteReasoner(openai_backend, confidences="logprobs")
    assert remote.check() == "tiny" and remote.extension is False
    answer = next(e for e in remote.stream(load_audio(clip_file), max_new_tokens=16) if isinstance(e, Answer))
    assert answer.scores == {} and answer.scores_note == "no confidences: the model wrote no answer"
    auto = RemoteReasoner(openai_backend)
    auto.check()
    assert auto.extension is True  # engine.serve is recognised by its owner


def alternatives(**logprobs):
    return list(logprobs.items())


@pytest.mark.parametrize("tokens, expected", [
    # one token per label, the tag in three: "s" starts two labels and says neither
    ([("<think>", []), ("loud", []), ("</think>", []), ("<", []), ("answer", []), (">", []),
      ("angry", [("angry", -0.1), ("happy", -2.0), ("s", -1.0), ("neutral", -3.0)]), ("</answer>", [])],
     {"angry": math.exp(-0.1), "happy": math.exp(-2.0), "neutral": math.exp(-3.0)}),
    # a space token first, then the label with its own leading space; disgust counts for contempt
    ([("<answer>", []), (" ", [(" ", -0.01)]),
      (" disgust", [(" disgust", -0.5), (" contempt", -1.5), (" fear", -1.0), ("sur", -2.0)])],
     {"contempt": math.exp(-0.5) + math.exp(-1.5), "fear": math.exp(-1.0), "surprise": math.exp(-2.0)}),
    # markdown and quotes before the label are not the label's first token
    ([("<answer>", []), ("**", [("**", -0.1)]), ("Sad", [("Sad", -0.3), ("Happy", -1.3)]), ("**", [])],
     {"sad": math.exp(-0.3), "happy": math.exp(-1.3)}),
    ([("<ANSWER>", []), (' "', []), ("fear", [("fear", -0.3), ('"fear', -9.0), ("whisper", -0.9)])],
     {"fear": math.exp(-0.3) + math.exp(-9.0), "whisper": math.exp(-0.9)}),  # a quote joined: still fear
    # a token that joins the tag's end to the label: alternatives without that end are not labels
    ([("<answer", []), (">ha", [(">ha", -0.2), (">ne", -1.2), ("ha", -0.5), (">c", -2.0)]), ("ppy", [])],
     {"happy": math.exp(-0.2), "neutral": math.exp(-1.2)}),
])
def test_first_token_scores_read_the_answers_first_token(tokens, expected):
    from engine.reasoning.prompts import LABELS
    from engine.remote import LOGPROB_NOTE, first_token_scores

    scores, note = first_token_scores(tokens)
    total = sum(expected.values())
    assert note == LOGPROB_NOTE and set(scores) == set(LABELS)
    assert scores == pytest.approx({label: expected.get(label, 0.0) / total for label in LABELS})


def test_first_token_scores_say_why_there_are_none():
    from engine.remote import first_token_scores

    assert first_token_scores([("I think it is angry", [])]) == ({}, "no confidences: the model wrote no answer")
    assert first_token_scores([("<answer>", []), ("s", [("s", -0.1), ("c", -0.3)])])[1] == \
        "no confidences: no label among the backend's likeliest first tokens"
    assert first_token_scores([("<answer>", []), ("  ", [])])[1] == "no confidences: the answer is empty"
