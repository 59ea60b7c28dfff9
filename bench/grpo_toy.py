"""A toy GRPO-PTR run on the CPU: can the outcome reward rise when the answer is decidable from
prosody alone?

    python bench/grpo_toy.py [--sft-steps 300] [--grpo-steps 200] [--lr 5e-4]   # ~2 min on 2 cores

Task: 1 s harmonic "voices", high pitch (230-270 Hz) means happy, low (90-110 Hz) means sad.
1. Cold start (as the paper's SFT cold start): the tiny random-weight thinker is fine-tuned on
   `<think>...</think><answer>happy|sad</answer>` with labels drawn at random, so it learns the
   format but not the mapping (its accuracy starts near 50 %).
2. GRPO-PTR (train.grpo_ptr, reasoning reward off: the gate threshold is out of reach) rewards
   the right label; the only way up is to listen to the pitch.
Prints the outcome reward (accuracy over each step's K completions) per step and its mean over
the first and last ten steps. Everything is real: synthesis, the model's own audio encoder,
sampling, the loss. Measured on the 2-core development machine (seed 0): the outcome reward
stays at chance (~0.45-0.5) for ~100 steps, then rises to 0.75 over steps 176-200 (last ten
steps 0.79), the format rate staying ~0.87. The audio encoder trains too: with it frozen (and
lr 2e-4 or 1e-3, up to 120 steps) the tiny model stayed at chance.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from engine.audio import SAMPLE_RATE_HZ
from train.records import JsonlWriter, read_jsonl


def make_corpus(folder: Path, n: int = 24, seed: int = 0) -> Path:
    import soundfile as sf

    from engine.prosody import synth

    rng = random.Random(seed)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        high = i % 2 == 0
        f0 = rng.uniform(230, 270) if high else rng.uniform(90, 110)
        x = synth.harmonic(f0, 1.0, syllable_hz=4.0)
        name = f"clips/toy{i:03d}.wav"
        sf.write(folder / name, x, SAMPLE_RATE_HZ)
        random_label = rng.choice(["happy", "sad"])  # the cold start learns the format only
        records.append({"audio_path": name, "emotion": "happy" if high else "sad",
                        "cold_start_emotion": random_label,
                        "cot_analysis": "I listen to the pitch of the voice."})
    manifest = folder / "toy.jsonl"
    with JsonlWriter(manifest) as f:
        f.write_all(records)
    with JsonlWriter(folder / "cold_start.jsonl") as f:
        f.write_all({**r, "emotion": r["cold_start_emotion"]} for r in records)
    return manifest


def main() -> None:
    from engine.reasoning.tiny import build
    from train import grpo_ptr, sft

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--grpo-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=5e-4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = build(tmp / "tiny", seed=args.seed)
        manifest = make_corpus(tmp / "toy", seed=args.seed)
        cold = sft.Recipe(model=str(tiny), data=str(manifest.parent / "cold_start.jsonl"),
                          output_dir=str(tmp / "sft"), mode="full", train_parts=["llm", "projector"],
                          tasks={"emotion": 1.0}, batch_size=4, grad_accum=1,
                          max_steps=args.sft_steps, learning_rate=3e-3, logging_steps=50,
                          save_steps=10_000, seed=args.seed)
        base = sft.train(cold)
        recipe = grpo_ptr.Recipe(model=str(base), data=str(manifest), output_dir=str(tmp / "grpo"),
                                 mode="full", train_parts=["llm", "projector", "audio_encoder"],
                                 num_generations=8,
                                 prompts_per_step=2, max_new_tokens=40, temperature=1.0,
                                 learning_rate=args.lr, max_steps=args.grpo_steps, beta=0.04,
                                 gate_threshold=2.0, gate_window=8, seed=args.seed)
        grpo_ptr.train(recipe)
        rows = list(read_jsonl(tmp / "grpo" / "metrics.jsonl"))
    acc = [r["accuracy"] for r in rows]
    fmt = [r["format_rate"] for r in rows]
    print("step accuracy format")
    for r in rows:
        print(f"{r['step']:4d} {r['accuracy']:8.3f} {r['format_rate']:6.3f}")
    first, last = acc[:10], acc[-10:]
    print(f"outcome reward: first 10 steps {sum(first) / len(first):.3f}, last 10 steps "
          f"{sum(last) / len(last):.3f}; format rate {sum(fmt[:10]) / 10:.2f} -> {sum(fmt[-10:]) / 10:.2f}")


if __name__ == "__main__":
    main()
