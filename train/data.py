"""Training samples from EmotionCoT-style records, for the four prosody-enhanced SFT tasks.

    from train.data import build_samples, sample_audio
    samples = build_samples(records, recipe={"emotion": 0.4, "attributes": 0.3,
                                             "comparative": 0.2, "caption": 0.1}, seed=0)
    audio = sample_audio(samples[0], base_dir)     # 16 kHz float32, made on demand

Tasks (docs/paper.md §4):
1. "emotion": the released model's exact prompt (engine.reasoning.prompts), answered with
   `<think>cot_analysis</think><answer>label</answer>`;
   "stress": word-stress perception (the paper's Stress-17K task): which word of the sentence is
   stressed, from EmotionCoT's `stressed_words` or a Stress-17K-style record (`words`,
   `stressed_index`), answered with the word;
2. "attributes": multiple choice on pitch / energy / speed level and intonation shape, answered
   with the measured label;
3. "comparative": two or three versions of one clip made with engine.prosody.manipulate (pitch shifted,
   tempo changed or level changed by known amounts, in a random order), joined by short silences;
   the unchanged version is re-synthesised like the others (its missing PSOLA artefacts would
   give it away); the question asks which version is highest / fastest / loudest, or to order them;
4. "caption": speaker traits and prosody in a sentence, from whatever fields exist.
A sample is a dict: {"id", "task", "messages", "audio"}; `audio` is a recipe (an `audio_path`,
resolved by train.records' rule, and for comparative samples the variants and the gap), turned
into samples by `sample_audio` when the collator needs them, so a corpus of any size costs no
extra disk. Everything is deterministic
given the seed; the recipe's weights set the proportions of the tasks.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from engine.reasoning.prompts import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    build_messages,
)
from train.records import map_label

DEFAULT_RECIPE = {"emotion": 0.3, "stress": 0.15, "attributes": 0.25, "comparative": 0.2, "caption": 0.1}
STRESS_QUESTION = ("Which word in this sentence does the speaker stress: \"{text}\"? Answer with "
                   "the word.")
GAP_S = 0.4  # silence between the versions of a comparative sample
ATTRIBUTE_QUESTIONS = {
    "pitch_level": ("What is the pitch level of the speaker's voice in this audio? Please choose "
                    "one from the following options: low, normal, high.", ("low", "normal", "high")),
    "energy_level": ("How loud is the speaker in this audio? Please choose one from the following "
                     "options: low, normal, high.", ("low", "normal", "high")),
    "speed_level": ("What is the speaking rate in this audio? Please choose one from the following "
                    "options: slow, normal, fast.", ("slow", "normal", "fast")),
    "intonation": ("What is the intonation pattern of this utterance? Please choose one from the "
                   "following options: rising, falling, rising-falling, falling-rising, flat, "
                   "expressive.", ("rising", "falling", "rising-falling", "falling-rising", "flat",
                                   "expressive")),
}
COMPARISONS = {  # attribute: (manipulate keyword, amounts, adjective, noun)
    "pitch": ("pitch_shift_st", (-4.0, 0.0, 4.0), "highest-pitched", "pitch"),
    "speed": ("tempo", (0.8, 1.0, 1.25), "fastest", "speaking rate"),
    "loudness": ("gain_db", (-9.0, 0.0, 6.0), "loudest", "loudness"),
}


def build_samples(records: list[dict[str, Any]], recipe: dict[str, float] | None = None,
                  n: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Samples for the tasks in `recipe` (weights need not sum to 1), about `n` in all (default:
    as many as the records give at these proportions), shuffled deterministically."""
    recipe = {k: v for k, v in (recipe or DEFAULT_RECIPE).items() if v > 0}
    unknown = set(recipe) - set(_MAKERS)
    if unknown:
        raise ValueError(f"unknown tasks in the recipe: {sorted(unknown)}; known: {sorted(_MAKERS)}")
    rng = random.Random(seed)
    pools = {task: [s for i, r in enumerate(records) for s in _MAKERS[task](r, i, rng)]
             for task in recipe}
    total_w = sum(recipe.values())
    if n is None:  # the largest n whose proportions every pool can fill
        n = int(min(len(pools[t]) / (w / total_w) for t, w in recipe.items() if w) or 0)
    out = []
    for task, w in recipe.items():
        pool = pools[task]
        rng.shuffle(pool)
        out.extend(pool[: min(len(pool), round(n * w / total_w))])
    rng.shuffle(out)
    return out


def sample_audio(sample: dict[str, Any], base_dir: str | Path = ".") -> np.ndarray:
    """The sample's audio as 16 kHz float32 (versions joined by silence for comparisons);
    `base_dir` is the folder of the records' JSONL file."""
    from engine.prosody.manipulate import manipulate
    from train.records import load_clip

    spec = sample["audio"]
    clip = load_clip(spec, base_dir)
    if "variants" not in spec:
        return clip.samples
    gap = np.zeros(int(spec.get("gap_s", GAP_S) * clip.sample_rate_hz), np.float32)
    parts = []
    for kwargs in spec["variants"]:  # every version through PSOLA: none is told by its cleanness
        parts += [manipulate(clip, resynthesize=True, **kwargs).samples, gap]
    return np.concatenate(parts[:-1])


def assistant_text(sample: dict[str, Any]) -> str:
    return sample["messages"][-1]["content"][0]["text"]


def _chat(question: str | None, answer: str, system: bool = True) -> list[dict]:
    messages = build_messages()
    if question is not None:
        messages[1]["content"][1]["text"] = question
    if not system:
        messages = messages[1:]
    return messages + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def _emotion(record: dict, i: int, rng: random.Random) -> list[dict]:
    label = map_label(record.get("emotion"), record.get("dataset"))
    cot = (record.get("cot_analysis") or "").strip()
    if label is None or not cot:
        return []
    answer = f"{THINK_OPEN}{cot}{THINK_CLOSE}{ANSWER_OPEN}{label}{ANSWER_CLOSE}"
    return [{"id": f"{i}-emotion", "task": "emotion", "audio": {"audio_path": record["audio_path"]},
             "messages": _chat(None, answer)}]


def stressed(record: dict) -> tuple[str | None, list[str]]:
    """(the sentence, its stressed words) of a record: EmotionCoT's `stressed_words`, or a
    Stress-17K-style record (`words` and a `stressed_index`, one index or a list)."""
    text = record.get("transcription") or record.get("text")
    if record.get("stressed_words"):
        return text, [str(w) for w in record["stressed_words"]]
    words, index = record.get("words"), record.get("stressed_index")
    if words and index is not None:
        picks = [index] if isinstance(index, int) else list(index)
        return text or " ".join(words), [str(words[j]) for j in picks]
    return text, []


def _stress(record: dict, i: int, rng: random.Random) -> list[dict]:
    text, words = stressed(record)
    if not text or not words:
        return []
    return [{"id": f"{i}-stress", "task": "stress", "audio": {"audio_path": record["audio_path"]},
             "messages": _chat(STRESS_QUESTION.format(text=text), ", ".join(words), system=False)}]


def _attributes(record: dict, i: int, rng: random.Random) -> list[dict]:
    out = []
    for field, (question, options) in ATTRIBUTE_QUESTIONS.items():
        value = record.get(field)
        if value in options:
            out.append({"id": f"{i}-{field}", "task": "attributes",
                        "audio": {"audio_path": record["audio_path"]},
                        "messages": _chat(question, value, system=False)})
    return out


def _comparative(record: dict, i: int, rng: random.Random) -> list[dict]:
    attribute = rng.choice(sorted(COMPARISONS))
    keyword, amounts, adjective, noun = COMPARISONS[attribute]
    k = rng.choice([2, 3])
    chosen = rng.sample(amounts, k)
    order = sorted(range(k), key=lambda j: chosen[j])  # lowest to highest
    variants = [{keyword: a} for a in chosen]  # the unchanged one re-synthesised too (sample_audio)
    if rng.random() < 0.5:
        question = (f"This audio holds {k} versions of the same utterance, separated by short "
                    f"silences. Which version is the {adjective}? Answer with its number.")
        answer = str(order[-1] + 1)
    else:
        question = (f"This audio holds {k} versions of the same utterance, separated by short "
                    f"silences. Order them by {noun}, from lowest to highest, as numbers.")
        answer = ", ".join(str(j + 1) for j in order)
    return [{"id": f"{i}-compare-{attribute}", "task": "comparative",
             "audio": {"audio_path": record["audio_path"], "variants": variants, "gap_s": GAP_S},
             "messages": _chat(question, answer, system=False)}]


def _caption(record: dict, i: int, rng: random.Random) -> list[dict]:
    words = {"low": "low", "normal": "moderate", "high": "high", "slow": "slow", "fast": "fast"}
    parts = []
    if record.get("pitch_level"):
        parts.append(f"a {words[record['pitch_level']]} pitch")
    if record.get("energy_level"):
        parts.append(f"{words[record['energy_level']]} loudness")
    if record.get("speed_level"):
        parts.append(f"a {words.get(record['speed_level'], 'moderate')} pace")
    if not parts:
        return []
    who = " ".join(w for w in (record.get("age_level"), record.get("gender")) if w) or "The"
    subject = f"A {who.lower()} speaker" if who != "The" else "The speaker"
    text = f"{subject} speaks with {', '.join(parts[:-1]) + ' and ' if len(parts) > 1 else ''}{parts[-1]}"
    if record.get("intonation") in ATTRIBUTE_QUESTIONS["intonation"][1]:
        text += f"; the intonation is {record['intonation']}"
    if record.get("stressed_words"):
        text += f"; stressed words: {', '.join(record['stressed_words'])}"
    question = "Describe the speaker and how they speak in this audio."
    return [{"id": f"{i}-caption", "task": "caption", "audio": {"audio_path": record["audio_path"]},
             "messages": _chat(question, text + ".", system=False)}]


_MAKERS = {"emotion": _emotion, "stress": _stress, "attributes": _attributes,
           "comparative": _comparative, "caption": _caption}
TASKS = tuple(_MAKERS)  # the paper's four SFT tasks and ours (docs/paper.md §4): recipes' `tasks`
