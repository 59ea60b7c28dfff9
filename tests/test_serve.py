"""engine.serve: a real uvicorn server on loopback with the tiny model, driven by the official
`openai` client and by plain HTTP for what the client will not send."""

import base64
import io
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from engine.audio import from_array
from engine.prosody import synth
from tests.conftest import free_port

KEY = "test-key"


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    """(base URL, the Reasoner behind it): a key required, 1 MB bodies, 8 s clips."""
    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Reasoner
    from engine.serve import ServeSettings, start

    reasoner = Reasoner(load_model(str(tiny_checkpoint), quant="fp32"))
    settings = ServeSettings(model_name="tiny", api_key=KEY, max_body_mb=1.0, max_seconds=8.0,
                             max_streams=12)
    port = free_port()
    server = start(reasoner, settings, port)
    yield f"http://127.0.0.1:{port}", reasoner
    server.should_exit = True


@pytest.fixture(scope="module")
def wav_b64():
    x = synth.harmonic(lambda t: 150 * 2 ** (t / 2), 2.0, syllable_hz=4.0)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode(), x


def client(url, key=KEY):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)


def audio_part(b64):
    return {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}


def local_text(reasoner, samples, tokens, tmp_path):
    """What the engine itself writes for the clip, greedy, as raw text."""
    from engine.audio import load_audio
    from engine.reasoning.reasoner import TextDelta

    path = tmp_path / "clip.wav"
    sf.write(path, samples, 16000, format="WAV", subtype="PCM_16")
    clip = load_audio(path)
    return "".join(e.text for e in reasoner.stream(clip, max_new_tokens=tokens, raw=True)
                   if isinstance(e, TextDelta))


def test_the_openai_client_streams_what_the_engine_writes(server, wav_b64, tmp_path):
    url, reasoner = server
    b64, samples = wav_b64
    stream = client(url).chat.completions.create(
        model="tiny", stream=True, max_tokens=24, temperature=0,
        messages=[{"role": "user", "content": [audio_part(b64)]}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(chunks) > 3 and text == local_text(reasoner, samples, 24, tmp_path)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert len(chunks[-1].model_extra["emotion"]["scores"]) == 9
    assert chunks[-1].usage.completion_tokens == 24


def test_logprobs_are_the_models_own_streamed_or_whole(server, wav_b64, tmp_path):
    """Each content token's log-probability equals generate's own raw logits' (fp32), the greedy
    token is the best alternative, and the tokens' bytes make the text."""
    import torch

    from engine.audio import load_audio

    url, reasoner = server
    b64, samples = wav_b64
    ask = dict(model="tiny", max_tokens=12, temperature=0, logprobs=True, top_logprobs=5,
               messages=[{"role": "user", "content": [audio_part(b64)]}])
    chunks = list(client(url).chat.completions.create(stream=True, **ask))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = client(url).chat.completions.create(**ask).choices[0]
    assert whole.message.content == text
    assert [(t.token, t.logprob) for t in whole.logprobs.content] == [(t.token, t.logprob) for t in streamed]

    path = tmp_path / "clip.wav"
    sf.write(path, samples, 16000, format="WAV", subtype="PCM_16")
    inputs = reasoner.inputs(load_audio(path))
    with reasoner.scheduler.model_lock:
        out = reasoner.model.generate(**inputs, max_new_tokens=12, do_sample=False, output_logits=True,
                                      return_dict_in_generate=True)
    special = set(reasoner.tokenizer.all_special_ids)
    generated = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    reference = [(token, torch.log_softmax(logits[0].float(), -1)) for token, logits
                 in zip(generated, out.logits) if token not in special]
    assert len(streamed) == len(reference) > 3
    assert b"".join(bytes(t.bytes) for t in streamed).decode(errors="replace") == text
    for got, (token, logp) in zip(streamed, reference):
        assert got.logprob == pytest.approx(float(logp[token]), abs=1e-4)
        best = torch.topk(logp, 5)
        assert [a.logprob for a in got.top_logprobs] == pytest.approx(best.values.tolist(), abs=1e-4)
        assert got.top_logprobs[0].token == got.token  # greedy wrote the best token
    plain = client(url).chat.completions.create(**{**ask, "logprobs": None, "top_logprobs": None})
    assert plain.choices[0].logprobs is None


def test_logprobs_that_fail_leave_the_answer_standing(server, wav_b64, monkeypatch):
    """Log-probabilities that cannot be computed (out of memory on a long answer, say): the text
    and the nine scores still come, `logprobs` is null and `logprobs_error` says why."""
    from engine.reasoning import scheduler

    def out_of_memory(*_args, **_kwargs):
        raise RuntimeError("CUDA out of memory (as a test)")

    monkeypatch.setattr(scheduler, "token_logprobs", out_of_memory)
    url, _ = server
    b64, _ = wav_b64
    answer = client(url).chat.completions.create(
        model="tiny", max_tokens=6, logprobs=True, messages=[{"role": "user", "content": [audio_part(b64)]}])
    assert answer.choices[0].message.content and answer.choices[0].logprobs is None
    assert "out of memory" in answer.model_extra["logprobs_error"]
    assert len(answer.model_extra["emotion"]["scores"]) == 9


def test_a_data_url_and_a_whole_answer(server, wav_b64):
    url, _ = server
    b64, _ = wav_b64
    done = client(url).chat.completions.create(
        model="tiny", max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{b64}"}}]}])
    assert done.choices[0].message.content and done.usage.completion_tokens == 8
    assert abs(sum(done.model_extra["emotion"]["scores"].values()) - 1) < 1e-6
    assert [m.id for m in client(url).models.list().data] == ["tiny"]


def test_the_released_prompt_unless_one_is_sent(server, wav_b64):
    """No system message and no question: the released prompt, byte for byte; sent ones replace it."""
    url, reasoner = server
    b64, samples = wav_b64
    plain = client(url).chat.completions.create(
        model="tiny", max_tokens=12, messages=[{"role": "user", "content": [audio_part(b64)]}])
    assert plain.usage.prompt_tokens == int(reasoner.inputs(from_array(samples, 16000))["input_ids"].shape[1])
    custom = client(url).chat.completions.create(
        model="tiny", max_tokens=12, messages=[{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": [audio_part(b64)]}])
    assert custom.usage.prompt_tokens < plain.usage.prompt_tokens  # a shorter system prompt


def post(url, body: bytes, key=KEY):
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post_raw(url, body: bytes, key=KEY):
    """POST that reads the answer even when the server refuses before the whole body is sent
    (a 413 from the declared length: urllib would report a broken pipe instead)."""
    import http.client

    host, rest = url.split("//")[1].split("/", 1)
    conn = http.client.HTTPConnection(host, timeout=60)
    conn.putrequest("POST", "/" + rest)
    for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                 "Authorization": f"Bearer {key}"}.items():
        conn.putheader(k, v)
    conn.endheaders()
    try:
        conn.send(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused early: the answer is already there
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_bad_requests_get_their_status_and_the_next_good_one_is_served(server, wav_b64):
    url, _ = server
    b64, _ = wav_b64
    chat = url + "/v1/chat/completions"

    def body(content, **extra):
        return json.dumps({"model": "tiny", "max_tokens": 4,
                           "messages": [{"role": "user", "content": content}], **extra}).encode()

    long_clip = io.BytesIO()
    sf.write(long_clip, np.zeros(16000 * 9, np.float32) + 0.01, 16000, format="WAV")
    cases = {
        "no audio": (body("hello"), KEY, 400, "exactly one audio part"),
        "bad base64": (body([audio_part("not base64!!")]), KEY, 400, "not valid base64"),
        "not audio": (body([audio_part(base64.b64encode(b"hello world" * 50).decode())]), KEY, 400,
                      "could not be read as audio"),
        "content not text": (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), KEY,
                             400, "text or a list of parts"),
        "a book of text": (body([audio_part(b64), {"type": "text", "text": "why? " * 2000}]), KEY, 400,
                           "over 4000 characters"),
        "special tokens": (body([audio_part(b64), {"type": "text", "text": "<|AUDIO|> hi"}]), KEY, 400,
                           "special token"),
        "two answers": (body([audio_part(b64)], n=2), KEY, 400, "n must be 1"),
        "stop words": (body([audio_part(b64)], stop=["."]), KEY, 400, "stop is not supported"),
        "a fetchable URL": (body([{"type": "audio_url", "audio_url": {"url": "http://x/a.wav"}}]), KEY,
                            400, "fetches nothing"),
        "too long": (body([audio_part(base64.b64encode(long_clip.getvalue()).decode())]), KEY, 400,
                     "the limit is 8 s"),
        "too big": (body([audio_part("A" * 2_000_000)]), KEY, 413, "the limit is 1 MB"),
        "wrong key": (body([audio_part(b64)]), "nope", 401, "API key"),
        "no key": (body([audio_part(b64)]), None, 401, "API key"),
        "too many alternatives": (body([audio_part(b64)], logprobs=True, top_logprobs=21), KEY, 400,
                                  "top_logprobs must be a whole number from 0 to 20"),
        "alternatives alone": (body([audio_part(b64)], top_logprobs=3), KEY, 400, "needs logprobs: true"),
        "logprobs not a flag": (body([audio_part(b64)], logprobs="yes"), KEY, 400, "true or false"),
        "not JSON": (b"{nope", KEY, 400, "not JSON"),
    }
    for name, (data, key, status, words) in cases.items():
        got, answer = post(chat, data, key) if name != "too big" else post_raw(chat, data, key)
        assert got == status and words in answer["error"]["message"], (name, got, answer)
    got, answer = post(chat, body([audio_part(b64)], temperature=None, top_p=None, seed=None))
    assert got == 200 and answer["choices"][0]["message"]["content"]  # null: the default
    got, answer = post(url + "/v1/emotion", json.dumps({"audio": "abc"}).encode())
    assert got == 400 and "content part" in answer["error"]["message"]


def test_eight_clients_at_once_all_get_complete_answers(server, wav_b64):
    url, _ = server
    b64, _ = wav_b64

    def ask(i):
        return client(url).chat.completions.create(
            model="tiny", max_tokens=16, temperature=0.7, seed=i,
            messages=[{"role": "user", "content": [audio_part(b64)]}])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert all(a.usage.completion_tokens == 16 and a.choices[0].finish_reason == "length"
               for a in answers)


def test_a_client_that_goes_away_frees_its_stream(server, wav_b64):
    url, reasoner = server
    b64, _ = wav_b64
    start = time.time()
    stream = client(url).chat.completions.create(
        model="tiny", stream=True, max_tokens=8192, messages=[{"role": "user", "content": [audio_part(b64)]}])
    for _, _ in zip(range(3), stream):
        pass
    stream.close()
    while reasoner.busy() and time.time() < start + 30:
        time.sleep(0.05)
    freed = time.time() - start
    # 8192 tokens take the tiny model ~7 s on this CPU: ended when the client left
    assert not reasoner.busy() and freed < 3.0, freed


def test_the_emotion_endpoint_gives_everything_at_once(server, wav_b64):
    url, _ = server
    b64, _ = wav_b64
    got, answer = post(url + "/v1/emotion", json.dumps({"audio_base64": b64, "format": "wav",
                                                       "max_tokens": 12}).encode())
    assert got == 200
    assert answer["prosody"]["pitch"]["median_hz"] > 100 and answer["summary"][0].startswith("Pitch")
    assert len(answer["emotion"]["scores"]) == 9 and answer["timing"]["n_tokens"] == 12
    assert isinstance(answer["claims"], list) and answer["reasoning"]["text"]


def test_any_address_but_loopback_needs_a_key(capsys, monkeypatch):
    from engine.serve import main

    monkeypatch.delenv("ET_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["--model", "x", "--host", "0.0.0.0"])
    assert exc.value.code == 2 and "needs an API key" in capsys.readouterr().err


def test_clients_that_leave_before_the_stream_starts_give_their_places_back(server, wav_b64):
    """Once: a streaming request whose client left before the first byte kept its place for
    good; max_streams of them locked everyone out with 429."""
    import socket

    url, reasoner = server
    b64, _ = wav_b64
    host, port = url.split("//")[1].split(":")
    data = json.dumps({"model": "tiny", "stream": True, "max_tokens": 2000,
                       "messages": [{"role": "user", "content": [audio_part(b64)]}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    for _ in range(16):  # more than the 12 places
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head + data)
    deadline = time.time() + 30
    while reasoner.busy() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)

    def ask(i):
        return post(url + "/v1/chat/completions", json.dumps({
            "model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": [audio_part(b64)]}]}).encode())

    with ThreadPoolExecutor(12) as pool:
        statuses = [status for status, _ in pool.map(ask, range(12))]
    assert statuses == [200] * 12
