"""Benchmark: the reasoning engine's load time, warm-up, memory, time to first token and decode speed.

    python bench/reasoning.py                              # tiny random model on this CPU
    python bench/reasoning.py --full-size --dir /data/et7b # 7B-shaped random model (CUDA; ~18 GB disk)
    python bench/reasoning.py --model DIR --quants nf4 bf16 --seconds 5 10 30 --new-tokens 256
    python bench/reasoning.py --deep --quants fp32 --modes eager compiled   # CPU proxy (see --help)

For each quantisation (nf4, nf4 with the audio encoder quantised too, bf16; fp32 as well on a CPU)
it loads the model through `engine.reasoning.model.load_model` (the users' path) and, for each
decode mode (`--modes`: transformers' `generate`, the engine's static-cache loop eager, and
compiled), warms it up, then streams the reasoning for 5, 10 and 30 s clips and prints what a
user sees, and whether the tokens equal `generate`'s: time to first token (feature
extraction + prefill), decode tokens per second as they arrive in the stream, the time to score
the nine labels, and peak memory (GPU: torch's peak allocation; CPU: the process's peak RSS,
which only grows, so read the first row per quantisation). Random weights: speed and memory do not
depend on weight values. It also prints the audio front end's time with and without the stock
300 s padding, and the 7B thinker's weight memory per quantisation (counted on the meta device).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.audio import SAMPLE_RATE_HZ, from_array
from engine.prosody import synth

NF4_BYTES_PER_WEIGHT = 0.5 + (8 / 64 + 32 / (64 * 256)) / 8  # 4 bits + double-quantised absmax


def peak_memory_gib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def feature_times() -> None:
    from transformers import WhisperFeatureExtractor

    from engine.reasoning.features import log_mel

    fe = WhisperFeatureExtractor(feature_size=128, chunk_length=300, return_attention_mask=True)
    x = synth.harmonic(150, 30.0, syllable_hz=4.0)
    stock = statistics.median(_time(lambda: fe(x, sampling_rate=SAMPLE_RATE_HZ, padding="max_length",
                                                return_attention_mask=True), 5))
    ours = statistics.median(_time(lambda: log_mel(fe, x), 5))
    print(f"audio front end, 30 s clip: stock (padded to 300 s) {stock * 1000:.0f} ms, "
          f"real length {ours * 1000:.1f} ms")


def weight_table() -> None:
    import torch
    from transformers.models.qwen2_5_omni import Qwen2_5OmniThinkerForConditionalGeneration

    from engine.reasoning.tiny import build_tokenizer, thinker_config

    cfg = thinker_config(build_tokenizer(tempfile.mkdtemp()), full_size=True)
    cfg.vision_config.depth = 0  # as engine.reasoning.model loads it
    with torch.device("meta"):
        model = Qwen2_5OmniThinkerForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    parts = {"audio_tower": [0, 0], "model": [0, 0], "lm_head": [0, 0]}
    for name, module in model.named_modules():
        top = "model" if name.startswith("model") else name.split(".")[0]
        if top not in parts:
            continue
        for pname, p in module.named_parameters(recurse=False):
            linear = isinstance(module, torch.nn.Linear) and pname == "weight"
            parts[top][1 if linear else 0] += p.numel()
    gib = lambda b: b / 2**30  # noqa: E731
    bf16 = sum(2 * (a + b) for a, b in parts.values())
    def nf4(quantize_audio: bool) -> float:
        total = 0.0
        for name, (other, linear) in parts.items():
            quantized = name == "model" or (name == "audio_tower" and quantize_audio)
            total += 2 * other + (NF4_BYTES_PER_WEIGHT if quantized else 2) * linear
        return total
    print("7B thinker weights (vision blocks skipped): "
          f"bf16 {gib(bf16):.2f} GiB, nf4 {gib(nf4(False)):.2f} GiB (audio encoder 16-bit), "
          f"nf4 {gib(nf4(True)):.2f} GiB (audio encoder nf4)")


MODES = ("generate", "eager", "compiled")  # transformers' generate; the engine's loop, eager / compiled


def concurrent(reasoner, clip, n: int, new_tokens: int, stagger_s: float = 0.0) -> dict:
    """`n` users asking at the same moment (submitted while the model is held, so they start as
    one batch), or one every `stagger_s` seconds (each arrival joins the running batch when it
    can: continuous batching), each read by its own thread as the app reads them: per-stream TTFT
    (from its own arrival) and tok/s, and the aggregate tokens per second of wall time."""
    import threading

    from engine.reasoning.reasoner import Done

    if stagger_s > 0:
        requests = []
        for i in range(n):
            if i:
                time.sleep(stagger_s)
            requests.append(reasoner.submit(clip, max_new_tokens=new_tokens, score=False))
    else:
        with reasoner.scheduler.model_lock:
            requests = [reasoner.submit(clip, max_new_tokens=new_tokens, score=False) for _ in range(n)]
    dones: list = [None] * n

    def read(i: int) -> None:
        dones[i] = [e for e in reasoner.events(requests[i]) if isinstance(e, Done)][0]
        reasoner.release(requests[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    start = min(r.t_submit for r in requests)
    ttfts = sorted(d.ttft_s for d in dones)
    return {"ttft_p50_s": statistics.median(ttfts), "ttft_p95_s": ttfts[min(n - 1, round(0.95 * (n - 1)))],
            "decode_tok_s": statistics.median(d.tok_per_s for d in dones),
            "aggregate_tok_s": sum(d.n_tokens for d in dones) / (max(r.t_last for r in requests) - start),
            "batch": max(d.batch for d in dones), "token_ids": [d.token_ids for d in dones]}


def bench_quant(path: str, quant: str, quantize_audio: bool, seconds: list[float], new_tokens: int,
                repeats: int, device: str, modes: list[str], concurrency: list[int],
                stagger_s: float = 0.0) -> list[dict]:
    """Load once, then stream each clip length in each decode mode; returns the JSON cases."""
    import torch

    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Done, Reasoner

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    label = quant + ("+audio" if quantize_audio else "")
    t0 = time.perf_counter()
    loaded = load_model(path, quant=quant, device=device, quantize_audio_encoder=quantize_audio)
    load_s = time.perf_counter() - t0
    size = (f"{loaded.weights_gib:.2f} GiB" if loaded.weights_gib >= 1
            else f"{loaded.weights_gib * 1024:.1f} MiB")
    print(f"{label:>10} | load {load_s:6.1f} s | weights {size}", flush=True)
    clips = {s: from_array(synth.speechlike(s), SAMPLE_RATE_HZ, max_seconds=s + 1) for s in seconds}
    reference: dict[float, tuple[int, ...]] = {}  # the tokens transformers' generate writes
    cases = []
    for mode in modes:
        reasoner = Reasoner(loaded, compile=mode == "compiled", static_cache=mode != "generate",
                            max_batch=max(concurrency))
        warm_s = reasoner.warmup()
        print(f"{'':>10} | {mode}: warm-up {warm_s:5.1f} s", flush=True)
        for s, clip in clips.items():
            runs = []
            for _ in range(repeats + (mode == "compiled")):  # compiled: the first run compiles
                runs.append([e for e in reasoner.stream(clip, max_new_tokens=new_tokens)
                             if isinstance(e, Done)][0])
            compile_s = sum(d.compile_s for d in runs)
            runs = runs[-repeats:]
            if mode == "generate":
                reference[s] = runs[0].token_ids
            match = reference[s] == runs[0].token_ids if s in reference else None
            ttft = statistics.median(d.ttft_s for d in runs)
            tps = statistics.median(d.tok_per_s for d in runs)
            score = statistics.median(d.score_s for d in runs)
            peak = peak_memory_gib(device)
            print(f"{'':>10} | {s:4.0f} s clip | TTFT {ttft * 1000:7.1f} ms | decode {tps:7.1f} tok/s "
                  f"({runs[0].n_tokens} tokens) | scores {score * 1000:6.1f} ms | peak {peak:5.2f} GiB"
                  + (f" | compile {compile_s:.1f} s" if mode == "compiled" else "")
                  + ("" if match is None else f" | tokens {'=' if match else '!='} generate's"),
                  flush=True)
            cases.append({"quant": label, "mode": mode, "clip_s": s, "concurrency": 1,
                          "ttft_s": ttft, "decode_tok_s": tps, "aggregate_tok_s": tps,
                          "peak_gib": peak, "tokens_match_eager": match,
                          "compile_s": compile_s if mode == "compiled" else None,
                          "decoder": runs[0].decoder})
            for n in concurrency:
                if n == 1:
                    continue
                if mode == "compiled":  # a batch of n has its own graph: compile it first
                    t0 = time.perf_counter()
                    concurrent(reasoner, clip, n, new_tokens, stagger_s)
                    print(f"{'':>10} | {s:4.0f} s clip x {n}: compiled in {time.perf_counter() - t0:.1f} s")
                c = concurrent(reasoner, clip, n, new_tokens, stagger_s)
                match = all(t == reference[s] for t in c["token_ids"]) if s in reference else None
                when = f"one every {stagger_s:g} s" if stagger_s else "at once"
                print(f"{'':>10} | {s:4.0f} s clip x {n} {when} (batch {c['batch']}) | TTFT p50 "
                      f"{c['ttft_p50_s'] * 1000:7.1f} ms, p95 {c['ttft_p95_s'] * 1000:7.1f} ms | per stream "
                      f"{c['decode_tok_s']:7.1f} tok/s | aggregate {c['aggregate_tok_s']:7.1f} tok/s | peak "
                      f"{peak_memory_gib(device):5.2f} GiB"
                      + ("" if match is None else f" | tokens {'=' if match else '!='} generate's"),
                      flush=True)
                cases.append({"quant": label, "mode": mode, "clip_s": s, "concurrency": n,
                              "ttft_s": c["ttft_p50_s"], "ttft_p95_s": c["ttft_p95_s"],
                              "decode_tok_s": c["decode_tok_s"], "aggregate_tok_s": c["aggregate_tok_s"],
                              "peak_gib": peak_memory_gib(device), "tokens_match_eager": match,
                              "compile_s": None, "decoder": runs[0].decoder, "batch": c["batch"],
                              "stagger_s": stagger_s})
        del reasoner
    del loaded
    return cases


def kind_of(path: str) -> str:
    """The checkpoint's text-model shape in a few words, for the JSON."""
    config = json.loads((Path(path) / "config.json").read_text())
    text = config.get("thinker_config", config).get("text_config", {})
    return (f"{text.get('num_hidden_layers')} layers x {text.get('hidden_size')} wide, "
            f"vocab {text.get('vocab_size')}")


def _time(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint directory (default: build a random one)")
    ap.add_argument("--full-size", action="store_true", help="build the 7B-shaped random model")
    ap.add_argument("--dir", help="where to build it (default: a temporary directory)")
    ap.add_argument("--quants", nargs="+", default=None,
                    help="from nf4, nf4+audio, int8, bf16, fp32 (default: nf4 nf4+audio bf16 "
                         "(+ fp32 on CPU))")
    ap.add_argument("--seconds", type=float, nargs="+", default=[5, 10, 30])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                    help="generate: transformers' generate (the engine before its own loop); "
                         "eager / compiled: the engine's static-cache loop")
    ap.add_argument("--deep", action="store_true",
                    help="CPU proxy: a random model with the 7B's 28 layers but a tiny width, so "
                         "per-token framework overhead (what compiling removes) dominates")
    ap.add_argument("--json", metavar="OUT", help="also write the cases as JSON")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1],
                    help="users asking at once, e.g. 1 4 8 (batched with the engine's loop)")
    ap.add_argument("--stagger", type=float, default=0.0, metavar="S",
                    help="the users of --concurrency arrive one every S seconds instead of at once "
                         "(later ones join the running batch: continuous batching)")
    args = ap.parse_args()
    device = ("cuda:0" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    quants = args.quants or (["nf4", "nf4+audio", "bf16"] + ([] if device.startswith("cuda") else ["fp32"]))
    path = args.model
    if path is None:
        from engine.reasoning.tiny import build

        target = Path(args.dir or tempfile.mkdtemp())
        kind = "7B-shaped" if args.full_size else "deep-narrow" if args.deep else "tiny"
        if not (target / "config.json").exists():
            t0 = time.perf_counter()
            build(target, full_size=args.full_size, deep=args.deep)
            print(f"built a {kind} random checkpoint in {time.perf_counter() - t0:.0f} s")
        path = str(target)
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU"
    print(f"engine benchmark: {path} on {device} ({name}), torch {torch.__version__}, "
          f"{args.new_tokens} new tokens, greedy, median of {args.repeats}")
    feature_times()
    weight_table()
    cases = []
    for q in quants:
        try:
            cases += bench_quant(path, q.split("+")[0], q.endswith("+audio"), args.seconds,
                                 args.new_tokens, args.repeats, device, args.modes, args.concurrency,
                                 args.stagger)
        except Exception as exc:  # noqa: BLE001 - one quantisation failing must not hide the others
            # e.g. the tiny model's 32-wide audio layers are narrower than bitsandbytes' CPU
            # 4-bit block (64): nf4+audio cannot run there; the 7B's layers are 1280 wide
            print(f"{q:>10} | failed: {type(exc).__name__}: {str(exc).splitlines()[0]}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": f"{device} ({name})", "torch": torch.__version__,
                                               "model": kind_of(path), "new_tokens": args.new_tokens,
                                               "cases": cases}, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
