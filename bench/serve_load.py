"""Benchmark: an OpenAI-compatible backend under 1, 4, 8 and 16 concurrent clients.

    python bench/serve_load.py                                    # engine.serve with the tiny model, here
    python bench/serve_load.py --url http://gpu-box:8000/v1 --api-key KEY --model ddwang2000/EmotionThinker

Each client streams chat completions (the official `openai` client, one audio part: a 5 s clip)
back to back for `--requests` requests; per concurrency level it prints requests per second,
generated tokens per second in all, and the time to first token (p50 / p95 over requests). Any
backend that speaks the protocol can be measured: this project's `engine.serve`, or vLLM.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import time
from concurrent.futures import ThreadPoolExecutor


def clip_b64(seconds: float) -> str:
    import soundfile as sf

    from engine.prosody import synth

    x = synth.speechlike(seconds)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def local_server(model: str | None):
    """engine.serve with the tiny model (built here unless `model`) on a free loopback port."""
    import socket
    import tempfile

    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Reasoner
    from engine.serve import ServeSettings, start

    if model is None:
        from engine.reasoning.tiny import build

        model = str(build(tempfile.mkdtemp() + "/tiny"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start(Reasoner(load_model(model, quant="fp32")), ServeSettings(model_name="tiny", max_streams=64), port)
    return f"http://127.0.0.1:{port}/v1", "tiny"


def one(client, model: str, audio: str, tokens: int) -> tuple[float, int, float] | None:
    """(time to first token, tokens, total seconds) of one streamed request; None if it failed."""
    try:
        return _one(client, model, audio, tokens)
    except Exception as exc:  # noqa: BLE001 - one failed request is counted, not fatal
        print(f"  a request failed: {type(exc).__name__}: {exc}")
        return None


def _one(client, model: str, audio: str, tokens: int) -> tuple[float, int, float]:
    start, first, n = time.perf_counter(), None, 0
    stream = client.chat.completions.create(
        model=model, stream=True, max_tokens=tokens, temperature=0,
        stream_options={"include_usage": True},  # vLLM sends usage only when asked
        messages=[{"role": "user", "content": [{"type": "input_audio",
                                                "input_audio": {"data": audio, "format": "wav"}}]}])
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
    return first or 0.0, n, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="an OpenAI-compatible base URL (default: engine.serve with the tiny model)")
    ap.add_argument("--api-key", default="none")
    ap.add_argument("--model", help="the model name the backend serves (or, without --url, a checkpoint)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    ap.add_argument("--tokens", type=int, default=64, help="max_tokens per request")
    ap.add_argument("--seconds", type=float, default=5.0, help="clip length")
    args = ap.parse_args()
    from openai import OpenAI

    url, model = (args.url, args.model) if args.url else local_server(args.model)
    client = OpenAI(base_url=url, api_key=args.api_key, max_retries=0, timeout=600)
    audio = clip_b64(args.seconds)
    one(client, model, audio, 4)  # warm-up
    print(f"{url} ({model}), {args.seconds:g} s clip, {args.tokens} tokens a request")
    print(f"{'clients':>7} | {'req/s':>6} | {'tok/s':>7} | {'TTFT p50':>8} | {'TTFT p95':>8}")
    for c in args.concurrency:
        start = time.perf_counter()
        with ThreadPoolExecutor(c) as pool:
            results = list(pool.map(lambda _: one(client, model, audio, args.tokens), range(args.requests)))
        wall = time.perf_counter() - start
        rows = [r for r in results if r is not None]
        if not rows:
            print(f"{c:>7} | every request failed")
            continue
        ttft = sorted(r[0] for r in rows)
        p95 = ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))]
        failed = len(results) - len(rows)
        print(f"{c:>7} | {len(rows) / wall:6.2f} | {sum(r[1] for r in rows) / wall:7.1f} | "
              f"{statistics.median(ttft):7.3f}s | {p95:7.3f}s" + (f" | {failed} failed" if failed else ""))


if __name__ == "__main__":
    main()
