"""A small synthetic corpus whose prosody labels have ground truth, for tests and smoke runs.

    python -m train.corpus OUT_DIR [--n 48] [--seed 0]     # needs espeak-ng

Each clip is an espeak-ng sentence with a known pitch (low / normal / high), pitch range,
speaking rate (slow / normal / fast) and amplitude (soft / normal / loud), from a male or a female
voice; a third of the clips are Praat PSOLA variants of another (pitch shifted, tempo changed),
recorded with the change. OUT_DIR/manifest.jsonl holds one record per clip: audio_path
(relative), transcription, dataset "synthetic", gender, and `synthesis` with the settings; half
the clips stress one word (espeak-ng's emphasis), named in `stressed_words`, for the SFT stress
task.
An `emotion` and a `cot_analysis` are made up from the settings by a fixed toy rule (high+fast+
loud -> happy, low+slow+soft -> sad, otherwise neutral; the reasoning names the cues): enough to
exercise emotion-reasoning training end to end, and obviously not a real emotion corpus.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from train.records import JsonlWriter

SENTENCES = [
    "I really did not expect to see you here today.",
    "The meeting has been moved to Thursday afternoon.",
    "Please put the books back on the top shelf.",
    "We walked along the river until the sun went down.",
    "Nobody told me that the train would be so late.",
    "She painted the kitchen a bright shade of yellow.",
]
VOICES = {"Male": "en-us", "Female": "en-us+f3"}
PITCH = {"low": 25, "normal": 50, "high": 80}  # espeak-ng pitch (0-99)
RATE = {"slow": 120, "normal": 170, "fast": 230}  # words per minute
AMPLITUDE = {"soft": 40, "normal": 100, "loud": 190}  # espeak-ng amplitude (0-200)
STRESSED_SHARE = 0.5  # clips with one word stressed (espeak-ng's SSML emphasis): the stress task


def toy_emotion(pitch: str, rate: str, loudness: str) -> tuple[str, str]:
    """The made-up emotion and reasoning for a combination of settings (see module docstring)."""
    cues = f"The pitch is {pitch}, the pace is {rate} and the voice is {loudness}."
    if (pitch, rate, loudness) == ("high", "fast", "loud"):
        return "happy", cues + " Such energetic, lively delivery suggests excitement."
    if (pitch, rate, loudness) == ("low", "slow", "soft"):
        return "sad", cues + " Such subdued, slow delivery suggests low mood."
    return "neutral", cues + " Nothing in the delivery stands out strongly."


def build(out_dir: str | Path, n: int = 48, seed: int = 0) -> Path:
    """Write n clips and their manifest; returns the manifest path."""
    import soundfile as sf

    from engine.audio import from_array
    from engine.prosody import synth
    from engine.prosody.manipulate import manipulate

    rng, stress_rng = random.Random(seed), random.Random(f"stress-{seed}")
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    records, sources = [], []
    for i in range(n):
        if sources and i % 3 == 2:  # a PSOLA variant of an earlier clip
            src_clip, src = rng.choice(sources)
            shift, tempo = rng.choice([-5.0, 5.0]), rng.choice([0.8, 1.25])
            clip = manipulate(src_clip, pitch_shift_st=shift, tempo=tempo)
            settings = {**src["synthesis"], "psola_of": src["audio_path"],
                        "pitch_shift_st": shift, "tempo": tempo}
            text, gender = src["transcription"], src["gender"]
        else:
            gender = rng.choice(sorted(VOICES))
            settings = {"pitch": rng.choice(sorted(PITCH)), "rate": rng.choice(sorted(RATE)),
                        "loudness": rng.choice(sorted(AMPLITUDE)),
                        "range_pct": rng.choice([40, 100, 180])}
            text = rng.choice(SENTENCES)
            if stress_rng.random() < STRESSED_SHARE:  # its own stream: the other draws stay put
                settings["emphasis"] = stress_rng.randrange(len(text.split(" ")))
            x, sr = synth.espeak(text, voice=VOICES[gender], pitch=PITCH[settings["pitch"]],
                                 rate_wpm=RATE[settings["rate"]],
                                 amplitude=AMPLITUDE[settings["loudness"]],
                                 pitch_range_pct=settings["range_pct"],
                                 emphasis=settings.get("emphasis"))
            clip = from_array(x, sr)
        name = f"clips/syn{i:04d}.wav"
        sf.write(out / name, clip.samples.clip(-1, 1), clip.sample_rate_hz, subtype="PCM_16")
        emotion, cot = toy_emotion(settings["pitch"], settings["rate"], settings["loudness"])
        record = {"audio_path": name, "transcription": text, "dataset": "synthetic",
                  "gender": gender, "emotion": emotion, "cot_analysis": cot, "synthesis": settings}
        if "emphasis" in settings:  # a PSOLA variant keeps its source's stressed word
            record["stressed_words"] = [text.split(" ")[settings["emphasis"]].strip(".,;:!?")]
        records.append(record)
        if "psola_of" not in settings:
            sources.append((clip, record))
    manifest = out / "manifest.jsonl"
    with JsonlWriter(manifest) as f:
        f.write_all(records)
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(build(args.out_dir, args.n, args.seed))


if __name__ == "__main__":
    main()
