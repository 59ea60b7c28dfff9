"""Benchmark: the app under a crowd, over HTTP, as gradio_client users reach it.

    python bench/load.py                          # the app on a free local port, tiny random model
    python bench/load.py --url http://127.0.0.1:7860/ --reason 0   # a running app, prosody only

1. Prosody: N users (1, 4, 16, 32) each send a clip to `/prosody` at the same moment; prints the
   latency p50 / p95 / max and the errors per N.
2. Reasoning: 12 users ask `/reason` about a clip, 0.2 s apart; prints, per user, the place in
   line each first saw (the app says "you are 3rd in line"), when it started writing and when it
   ended, and whether the model served them in arrival order.
Local addresses only. Numbers depend on the machine: quote them with it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import soundfile as sf

from engine.prosody import synth


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prosody_load(url: str, clip: Path, users: int) -> tuple[list[float], int]:
    from gradio_client import Client, handle_file

    clients = [Client(url, verbose=False) for _ in range(users)]
    times: list[float] = []
    errors = 0
    start = threading.Barrier(users)

    def one(client) -> None:
        nonlocal errors
        start.wait()
        t0 = time.perf_counter()
        try:
            client.predict(handle_file(str(clip)), "Hz", api_name="/prosody")
            times.append(time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - counted, the load goes on
            errors += 1

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors


def reason_load(url: str, clip: Path, users: int, tokens: int) -> list[dict]:
    from gradio_client import Client, handle_file

    rows: list[dict] = [{} for _ in range(users)]
    t_start = time.perf_counter()

    def one(i: int) -> None:
        client = Client(url, verbose=False)
        row = rows[i]
        row["sent"] = time.perf_counter() - t_start
        job = client.submit(handle_file(str(clip)), tokens, 0.0, -1, api_name="/reason")
        for reasoning, _, _ in job:
            text = reasoning if isinstance(reasoning, str) else ""
            if "in line" in text or "you are next" in text:
                row.setdefault("place", text.split("you are ")[1].split(" ")[0].rstrip("…_"))
            elif text and "started" not in row:
                row["started"] = time.perf_counter() - t_start
        row["ended"] = time.perf_counter() - t_start

    threads = []
    for i in range(users):
        threads.append(threading.Thread(target=one, args=(i,)))
        threads[-1].start()
        time.sleep(0.2)
    for t in threads:
        t.join()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running app (default: start one with the tiny random model)")
    ap.add_argument("--users", type=int, nargs="+", default=[1, 4, 16, 32])
    ap.add_argument("--reason", type=int, default=12, help="users asking /reason (0: none)")
    ap.add_argument("--tokens", type=int, default=48, help="tokens each /reason writes")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    clip = tmp / "clip.wav"
    x, sr = synth.espeak("She said the meeting would start at nine, but nobody came until ten.") \
        if synth.espeak_available() else (synth.speechlike(4.0), 16000)
    sf.write(clip, x, sr)
    demo = None
    url = args.url
    if url is None:
        import socket

        from app.settings import parse
        from app.ui import launch
        from engine.reasoning.tiny import build

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        model = build(tmp / "tiny")
        demo, service = launch(parse(["--model", str(model), "--port", str(port), "--queue-size", "16"]),
                               block=False)
        print(f"app on port {port}: {service.wait_until_settled(120)}; {service.status()[1]}")
        url = f"http://127.0.0.1:{port}/"
    print(f"{'users':>5} | {'p50 ms':>7} | {'p95 ms':>7} | {'max ms':>7} | errors   (/prosody, 4 s clip)")
    for n in args.users:
        times, errors = prosody_load(url, clip, n)
        if times:
            print(f"{n:>5} | {1000 * statistics.median(times):7.0f} | {1000 * percentile(times, 0.95):7.0f} | "
                  f"{1000 * max(times):7.0f} | {errors}", flush=True)
        else:
            print(f"{n:>5} | all {errors} failed", flush=True)
    if args.reason:
        rows = reason_load(url, clip, args.reason, args.tokens)
        print(f"\n/reason, {args.reason} users 0.2 s apart, {args.tokens} tokens each")
        print(f"{'user':>4} | {'sent s':>6} | {'place seen':>10} | {'started s':>9} | {'ended s':>7}")
        for i, r in enumerate(rows):
            print(f"{i:>4} | {r['sent']:6.1f} | {r.get('place', '-'):>10} | "
                  f"{r.get('started', float('nan')):9.1f} | {r['ended']:7.1f}")
        started = [r.get("started", float("inf")) for r in rows]
        print("served in arrival order:", "yes" if started == sorted(started) else "NO")
    if demo is not None:
        demo.close()


if __name__ == "__main__":
    main()
