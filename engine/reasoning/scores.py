"""A confidence for each of the nine emotions: how likely the model was to write each label.

After the reasoning, every label is scored as the continuation of `<answer>`: the mean
log-probability of its tokens (length-normalised, so "contempt or disgust" is not penalised for
being three words), then a softmax over the nine. Each label is written in every spelling a
model may give it (LABEL_SPELLINGS: the question's wording, and "contempt" / "disgust" for
contempt, as train.data's targets write it) and takes its best, after the whitespace the model
itself put after `<answer>`. When the output
has no answer (cut off by the token limit, or malformed), the scores are those of the answer the
model would give if its reasoning ended there: `</think><answer> ` is appended, and the result
says `forced`.

Cost: one forward over prompt and reasoning (as long as a prefill) whose cache is shared by the
continuations (eleven spellings of the nine), then one batched forward of a few tokens each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.reasoning.prompts import ANSWER_OPEN, LABEL_SPELLINGS, LABELS, THINK_CLOSE

_ANSWER_RE = re.compile(re.escape(ANSWER_OPEN) + r"(\s*)", re.IGNORECASE)


@dataclass(frozen=True)
class LabelScores:
    probs: dict[str, float]  # label -> probability; sums to 1
    mean_logprob: dict[str, float]  # label -> mean log-probability per token
    forced: bool  # True when the answer tag was appended, not generated
    prefix_text: str  # the generated text the labels continue


def answer_prefix(generated: str) -> tuple[str, str, bool]:
    """(text up to and including `<answer>`, whitespace to put before a label, forced?) for the
    model's generated text; the last `<answer>` counts, as in engine.reasoning.parse."""
    matches = list(_ANSWER_RE.finditer(generated))
    if matches:
        m = matches[-1]
        return generated[: m.start(1)], m.group(1), False
    text = generated.rstrip()
    if THINK_CLOSE not in text.lower():
        text += " " + THINK_CLOSE
    return text + ANSWER_OPEN, " ", True


def score_labels(model, inputs, generated_text: str, tokenizer) -> LabelScores:
    """Score the nine labels as continuations of the model's output. `inputs` is the prompt's
    BatchFeature (input_ids, attention_mask, input_features, feature_attention_mask) on the
    model's device; `generated_text` is what the model generated (special tokens removed)."""
    import torch

    prefix, space, forced = answer_prefix(generated_text)
    spelled = [(label, text) for label in LABELS for text in LABEL_SPELLINGS[label]]
    sequences = [tokenizer(prefix + space + text, add_special_tokens=False)["input_ids"]
                 for _, text in spelled]
    common = _common_prefix_len(sequences)
    common = min(common, min(len(s) for s in sequences) - 1)  # keep >= 1 token per label
    prompt_ids = inputs["input_ids"]
    device = prompt_ids.device
    shared = torch.tensor([sequences[0][:common]], dtype=prompt_ids.dtype, device=device)
    ids = torch.cat([prompt_ids, shared], dim=1)
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        first = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, **extra)
        cache = first.past_key_values
        cache.batch_repeat_interleave(len(sequences))
        rests = [s[common:] for s in sequences]
        width = max(len(r) for r in rests)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        rest = torch.tensor([r + [pad] * (width - len(r)) for r in rests], device=device)
        start = ids.shape[1] + model.rope_deltas.to(device).reshape(-1)[0]
        positions = (start + torch.arange(width, device=device)).view(1, 1, -1)
        positions = positions.expand(3, len(sequences), -1)
        second = model(input_ids=rest, past_key_values=cache, position_ids=positions, use_cache=True)
    # logits predicting rest[:, j]: the shared prefill's last position for j = 0, then rest[:, j-1]
    logits = torch.cat([first.logits[:, -1:].expand(len(sequences), -1, -1), second.logits[:, :-1]],
                       dim=1).float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, rest.unsqueeze(-1)).squeeze(-1)
    spelling_means = [float(logp[i, : len(r)].mean()) for i, r in enumerate(rests)]
    means = [max(m for (lab, _), m in zip(spelled, spelling_means) if lab == label) for label in LABELS]
    probs = torch.softmax(torch.tensor(means, dtype=torch.float64), dim=0).tolist()
    return LabelScores(probs=dict(zip(LABELS, probs)), mean_logprob=dict(zip(LABELS, means)),
                       forced=forced, prefix_text=prefix + space)


def _common_prefix_len(seqs: list[list[int]]) -> int:
    n = 0
    for column in zip(*seqs):
        if any(c != column[0] for c in column):
            break
        n += 1
    return n
