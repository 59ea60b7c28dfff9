"""Evaluation harness: how good is a model at emotion reasoning on a labelled test set?

    python -m train.evaluate --model SRC --data TEST.jsonl [--judge fact|MODEL_DIR] [--out DIR]
                             [--batch-size 8] [--max-new-tokens 1024] [--limit N]
                             [--temperature T --top-p P --seed S]   # greedy by default

TEST.jsonl holds records with `audio_path` (relative to the file) and `emotion` (any corpus's
label: see LABEL_MAPS), optionally `dataset`. The model reasons about every clip (batched
generation, greedy by default); predictions are appended to DIR/predictions.jsonl as they come,
so a rerun resumes. The report, DIR/report.json and DIR/report.md, has: accuracy, macro-F1,
precision and recall per class, the confusion matrix (DIR/confusion.png and an interactive
DIR/confusion.html), the format-valid rate, reasoning length, the judge's four scores, and the
grounding agreement (share of the reasoning's checkable prosodic claims that the measured
prosody supports). README.md quotes the paper's numbers to compare a real run with.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from engine.reasoning.options import GenerationOptions
from engine.reasoning.parse import parse
from engine.reasoning.prompts import LABELS
from train.records import JsonlWriter, load_clip, map_label, read_jsonl, voice_type

EVAL_MAX_NEW_TOKENS = 1024  # the released script's budget: results comparable with the paper's

def metrics(gold: list[str], pred: list[str | None]) -> dict[str, Any]:
    """Accuracy, macro-F1 over the classes present in gold, per-class precision/recall, and the
    confusion matrix (rows gold, columns predicted; "unknown" for no valid label)."""
    classes = [c for c in LABELS if c in gold]
    columns = classes + sorted({p or "unknown" for p in pred} - set(classes))
    matrix = [[sum(1 for g, p in zip(gold, pred) if g == r and (p or "unknown") == c)
               for c in columns] for r in classes]
    per_class = {}
    for c in classes:
        tp = sum(1 for g, p in zip(gold, pred) if g == p == c)
        n_pred, n_gold = sum(p == c for p in pred), sum(g == c for g in gold)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}
    return {"n": len(gold), "accuracy": sum(g == p for g, p in zip(gold, pred)) / max(len(gold), 1),
            "macro_f1": float(np.mean([v["f1"] for v in per_class.values()])) if per_class else 0.0,
            "per_class": per_class, "confusion": {"rows": classes, "columns": columns,
                                                  "matrix": matrix}}


def generate_batch(loaded, clips, options: GenerationOptions) -> list[str]:
    """Batched generation for several clips with the released prompt (left-padded)."""
    from engine.reasoning.prompts import build_messages

    processor, model = loaded.processor, loaded.model
    prompt = processor.apply_chat_template(build_messages(), add_generation_prompt=True, tokenize=False)
    batch = processor(text=[prompt] * len(clips), audio=[c.samples for c in clips],
                      padding=True, padding_side="left").to(model.device)
    out = options.generate(model, processor.tokenizer, batch)
    new = out[:, batch["input_ids"].shape[1]:]
    return processor.tokenizer.batch_decode(new, skip_special_tokens=True)


def evaluate(model: str, data: Path, out: Path, judge: str = "fact", batch_size: int = 8,
             options: GenerationOptions | None = None, limit: int | None = None,
             quant: str = "bf16", device: str = "auto") -> dict[str, Any]:
    """Reason about every clip of `data` not yet in OUT/predictions.jsonl (greedy, 1024 tokens
    unless `options` say otherwise), then write the report; returns its numbers."""
    from engine.grounding import agreement, check
    from engine.prosody import analyze
    from engine.reasoning.model import load_model
    from train.judges import ModelJudge, ProsodyFactJudge

    options = options or GenerationOptions(max_new_tokens=EVAL_MAX_NEW_TOKENS)
    out.mkdir(parents=True, exist_ok=True)
    records = [dict(r, id=r.get("id", r["audio_path"]), gold=map_label(r.get("emotion"), r.get("dataset")))
               for r in read_jsonl(data)]
    records = [r for r in records if r["gold"] is not None][:limit]
    pred_path = out / "predictions.jsonl"
    done = {r["id"] for r in read_jsonl(pred_path)} if pred_path.exists() else set()
    todo = [r for r in records if r["id"] not in done]
    loaded = load_model(model, quant=quant, device=device) if todo else None
    if loaded is not None:
        print(f"evaluating {loaded.describe()}", file=sys.stderr)
    fact = ProsodyFactJudge()
    grader = fact if judge == "fact" else ModelJudge(judge, cache_path=str(out / "judge_cache.json"))
    with JsonlWriter(pred_path, append=True) as predictions:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            clips = [load_clip(r, data.parent) for r in chunk]
            texts = generate_batch(loaded, clips, options)
            for r, clip, text in zip(chunk, clips, texts):
                parsed, report = parse(text), analyze(clip, voice=voice_type(r))
                claims = check(parsed.think, report)
                scores = grader.score(parsed.think, r, report) or fact.score(parsed.think, r, report)
                predictions.write({"id": r["id"], "gold": r["gold"], "pred": parsed.label,
                                   "format_ok": parsed.format_ok, "output": text,
                                   "think_words": len(parsed.think.split()), "judge": scores,
                                   "grounding": agreement(claims), "n_claims": len(claims)})
    return write_report(pred_path, out, model)


def write_report(pred_path: Path, out: Path, model: str) -> dict[str, Any]:
    rows = list(read_jsonl(pred_path))
    result = metrics([r["gold"] for r in rows], [r["pred"] if r["pred"] in LABELS else None for r in rows])
    grounded = [r["grounding"] for r in rows if r["grounding"] is not None]
    result.update(
        model=model, format_valid_rate=float(np.mean([r["format_ok"] for r in rows])) if rows else 0.0,
        reasoning_words_mean=float(np.mean([r["think_words"] for r in rows])) if rows else 0.0,
        judge={c: float(np.mean([r["judge"][c] for r in rows])) for c in (rows[0]["judge"] if rows else {})},
        grounding_agreement=float(np.mean(grounded)) if grounded else None,
        predicted=dict(Counter(r["pred"] or "none" for r in rows)))
    (out / "report.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(markdown_report(result))
    from train.plots import confusion_html, confusion_png

    confusion_png(result["confusion"], out / "confusion.png")
    confusion_html(result["confusion"], out / "confusion.html")
    return result


def markdown_report(r: dict[str, Any]) -> str:
    lines = [f"# Evaluation of {r['model']}", "",
             f"- clips: {r['n']}", f"- accuracy: {100 * r['accuracy']:.2f} %",
             f"- macro-F1: {100 * r['macro_f1']:.2f} %",
             f"- format-valid outputs: {100 * r['format_valid_rate']:.1f} %",
             f"- reasoning length: {r['reasoning_words_mean']:.0f} words on average",
             "- grounding agreement: " + (f"{100 * r['grounding_agreement']:.1f} % of checkable "
                                          "claims supported" if r["grounding_agreement"] is not None
                                          else "no checkable claims"),
             "- judge (1-5): " + ", ".join(f"{k} {v:.2f}" for k, v in r["judge"].items()), "",
             "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    for c, v in r["per_class"].items():
        lines.append(f"| {c} | {100 * v['precision']:.1f} | {100 * v['recall']:.1f} | "
                     f"{100 * v['f1']:.1f} | {v['support']} |")
    lines += ["", "Confusion matrix: confusion.png, confusion.html (rows: gold, columns: predicted)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--judge", default="fact", help="fact, or a local chat model's directory / hub id")
    ap.add_argument("--out", type=Path, default=Path("eval"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=EVAL_MAX_NEW_TOKENS)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--quant", default="bf16",
                    help="bf16 (what the paper reports; default), nf4, int8, fp32, auto")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    options = GenerationOptions(max_new_tokens=a.max_new_tokens, temperature=a.temperature,
                                top_p=a.top_p, seed=a.seed)
    r = evaluate(a.model, a.data, a.out, a.judge, a.batch_size, options, a.limit, a.quant, a.device)
    print(f"accuracy {100 * r['accuracy']:.2f} %, macro-F1 {100 * r['macro_f1']:.2f} % on {r['n']} clips; "
          f"report in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
