"""Benchmark: one training step of SFT and of GRPO-PTR, timed in its parts.

    python bench/train_step.py                          # the tiny model (built on the spot), CPU
    python bench/train_step.py --model DIR --mode qlora # e.g. the full-size random-weight thinker
                                                        # (python -m engine.tiny DIR --full-size) on a GPU

For each, on a clip of `--seconds` (30 by default: espeak-ng speech tiled to length) and the
recipe's mode (QLoRA by default), `--steps` steps after one warm-up step:
- SFT: the emotion task's sample (prompt, clip, a 60-word reasoning and its answer) through
  train.sft's collator, forward + backward + AdamW step: seconds per step and tokens per second.
- GRPO-PTR: train.grpo_ptr's `rollout` (K = `--k` completions of `--max-new-tokens`, sampled,
  scored by the fact judge) and `policy_step` (reference and policy log-probs, loss, backward) +
  AdamW step, timed apart: generation vs update, and generated tokens per second.
Peak memory: the GPU's allocator peak, or this process's peak resident memory on a CPU.
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

COT = ("The pitch is fairly high and moves a lot, the pace is quick and the voice is loud, with "
       "a sharp rise at the end of the sentence. Such lively, energetic delivery with a rising "
       "contour suggests excitement rather than anger: the voice is bright, not tense, and the "
       "pauses are short. Taken together the cues point to a happy speaker.")


def make_data(folder: Path, seconds: float) -> Path:
    """A clip of `seconds` of speech and a one-record JSONL for both trainers."""
    import soundfile as sf

    from engine.audio import SAMPLE_RATE_HZ, resample
    from engine.prosody import synth

    if synth.espeak_available():
        x, sr = synth.espeak("The weather turned warm, so we walked down to the harbour and "
                             "watched the boats come in before dinner.")
        x = resample(x, sr, SAMPLE_RATE_HZ)
    else:
        x = synth.speechlike(10.0)
    x = np.tile(x, int(np.ceil(seconds * SAMPLE_RATE_HZ / len(x))))[: int(seconds * SAMPLE_RATE_HZ)]
    sf.write(folder / "clip.wav", x, SAMPLE_RATE_HZ)
    record = {"audio_path": "clip.wav", "emotion": "happy", "cot_analysis": COT, "gender": "Male",
              "transcription": "the weather turned warm"}
    (folder / "data.jsonl").write_text(json.dumps(record) + "\n")
    return folder / "data.jsonl"


def peak_gib() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_sft(model: str, data: Path, mode: str, steps: int) -> dict:
    import torch

    from train.data import build_samples
    from train.records import read_jsonl
    from train.sft import Collator, Recipe, prepare_model

    recipe = Recipe(model=model, data=str(data), output_dir=str(data.parent / "sft"), mode=mode,
                    gradient_checkpointing=mode != "full", max_length=8192)
    recipe.validate()
    net, loaded = prepare_model(recipe)
    [sample] = build_samples(list(read_jsonl(data)), {"emotion": 1.0}, seed=0)
    batch = Collator(loaded.processor, data.parent, recipe.max_length)([sample])
    batch = {k: v.to(loaded.model.device) for k, v in batch.items()}
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for i in range(steps + 1):
        sync()
        start = time.perf_counter()
        net(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        sync()
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    tokens = int(batch["input_ids"].numel())
    return {"trainer": "sft", "mode": mode, "tokens": tokens, "step_s": round(step, 3),
            "tokens_per_s": round(tokens / step, 1), "peak_gib": round(peak_gib(), 2)}


def bench_grpo(model: str, data: Path, mode: str, steps: int, k: int, new_tokens: int) -> dict:
    import torch
    from accelerate import Accelerator

    from train.grpo_ptr import Recipe, policy_step, rollout
    from train.judges import ProsodyFactJudge
    from train.records import load_clip, read_jsonl
    from train.sft import prepare_model

    recipe = Recipe(model=model, data=str(data), output_dir=str(data.parent / "grpo"), mode=mode,
                    num_generations=k, max_new_tokens=new_tokens, gradient_checkpointing=mode != "full")
    recipe.validate()
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    net, loaded = prepare_model(recipe)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)
    net, optimizer = accelerator.prepare(net, optimizer)
    [record] = list(read_jsonl(data))
    clip = load_clip(record, data.parent)
    judge = ProsodyFactJudge()
    gen, upd, tokens = [], [], []
    for i in range(steps + 1):
        sync()
        start = time.perf_counter()
        group = rollout(accelerator.unwrap_model(net), loaded.processor, record, clip, recipe,
                        (judge, judge), gate_open=True)
        sync()
        middle = time.perf_counter()
        policy_step(net, None, group, recipe, accelerator)
        optimizer.step()
        optimizer.zero_grad()
        sync()
        if i:
            gen.append(middle - start)
            upd.append(time.perf_counter() - middle)
            tokens.append(int(group.mask.sum()))
    g, u = statistics.median(gen), statistics.median(upd)
    return {"trainer": "grpo_ptr", "mode": mode, "k": k, "generated_tokens": int(statistics.median(tokens)),
            "generation_s": round(g, 3), "update_s": round(u, 3), "step_s": round(g + u, 3),
            "generated_tokens_per_s": round(statistics.median(tokens) / g, 1),
            "peak_gib": round(peak_gib(), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint directory (default: the tiny model, built here)")
    ap.add_argument("--mode", default="qlora", choices=["qlora", "lora", "full"])
    ap.add_argument("--seconds", type=float, default=30.0, help="clip length")
    ap.add_argument("--k", type=int, default=8, help="GRPO completions per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", choices=["sft", "grpo"], help="one trainer only")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the rows here")
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from engine.reasoning.tiny import build

            model = str(build(tmp / "tiny"))
        data = make_data(tmp, args.seconds)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        print(f"{Path(model).name}, {args.mode}, {args.seconds:g} s clip, {device}")
        rows = []
        if args.only != "grpo":
            rows.append(bench_sft(model, data, args.mode, args.steps))
            print(f"SFT: {rows[-1]['step_s']} s/step, {rows[-1]['tokens']} tokens, "
                  f"{rows[-1]['tokens_per_s']} tok/s, peak {rows[-1]['peak_gib']} GiB")
        if args.only != "sft":
            rows.append(bench_grpo(model, data, args.mode, args.steps, args.k, args.max_new_tokens))
            r = rows[-1]
            print(f"GRPO-PTR (K={r['k']}): {r['step_s']} s/step = generation {r['generation_s']} s "
                  f"({r['generated_tokens']} tokens, {r['generated_tokens_per_s']} tok/s) + update "
                  f"{r['update_s']} s, peak {r['peak_gib']} GiB")
        if args.json:
            args.json.write_text(json.dumps({"device": device, "model": model, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
