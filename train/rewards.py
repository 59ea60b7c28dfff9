"""GRPO-PTR's rewards (docs/paper.md §5): small pure functions, tested on literal completions.

For completion i of a group of K sampled for one prompt:
- format reward R_f in {0, 1}: exactly `<think>...</think><answer>...</answer>`;
- outcome reward R_o in {0, 1}: the answer's label (engine.reasoning.parse, as the app reads it) is right;
- reasoning reward R_t = sum_j w_j * g_j / 5 over a judge's 1-5 scores on four criteria;
- trust weight tau per group: c = mean R_t of the correct completions, w = that of the wrong ones;
  tau = 1 if c >= w, else exp(c - w); 1 when the group has no correct or no wrong completion
  (docs/paper.md mark that case **assumed**);
- total R_i = 0.3 R_f + 1.0 R_o + 0.5 tau R_t, the reasoning term only once the progressive gate
  has opened (rolling accuracy over a window reaches a threshold; a step, not a ramp).

    >>> format_reward("<think>low and slow</think><answer>sad</answer>")
    1.0
    >>> outcome_reward("<think>x</think><answer> Sadness </answer>", "sad")
    1.0
    >>> reasoning_reward({"factual_alignment": 5, "interpretative_quality": 4,
    ...                   "caption_completeness": 3, "fluency_structure": 4})
    0.8
    >>> round(trust_weight([True, False], [0.4, 0.9]), 4)   # exp(0.4 - 0.9)
    0.6065
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from engine.reasoning.parse import format_ok, normalize_label, parse

CRITERIA = ("factual_alignment", "interpretative_quality", "caption_completeness",
            "fluency_structure")
EQUAL_WEIGHTS = {c: 0.25 for c in CRITERIA}  # the paper's weights are unknown: equal by default
TOTAL_WEIGHTS = {"format": 0.3, "outcome": 1.0, "reasoning": 0.5}  # docs/paper.md §5


def format_reward(completion: str) -> float:
    """1.0 for exactly <think>...</think><answer>...</answer> (whitespace aside), else 0.0."""
    return 1.0 if format_ok(completion) else 0.0


def outcome_reward(completion: str, label: str) -> float:
    """1.0 when the completion's answer names `label` (synonyms count: "sadness" is sad)."""
    answer = parse(completion).label
    return 1.0 if answer is not None and answer == normalize_label(label) else 0.0


def reasoning_reward(scores: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """sum_j w_j * g_j / 5 for judge scores g_j in 1..5; the weights must sum to 1."""
    weights = weights or EQUAL_WEIGHTS
    if abs(sum(weights.values()) - 1.0) > 1e-6:
        raise ValueError(f"reasoning weights must sum to 1; got {sum(weights.values())}")
    missing = set(weights) - set(scores)
    if missing:
        raise ValueError(f"judge scores lack {sorted(missing)}")
    for c in weights:
        if not 1 <= scores[c] <= 5:
            raise ValueError(f"{c} score {scores[c]} is outside 1..5")
    return sum(w * scores[c] for c, w in weights.items()) / 5.0


def trust_weight(correct: list[bool], reasoning: list[float]) -> float:
    """tau for one group: 1 if the correct completions' mean reasoning reward is at least the
    wrong ones', else exp(difference); 1 if the group lacks correct or wrong completions."""
    if len(correct) != len(reasoning):
        raise ValueError("one correctness flag per reasoning reward")
    right = [r for ok, r in zip(correct, reasoning) if ok]
    wrong = [r for ok, r in zip(correct, reasoning) if not ok]
    if not right or not wrong:
        return 1.0
    c, w = sum(right) / len(right), sum(wrong) / len(wrong)
    return 1.0 if c >= w else math.exp(c - w)


def total_reward(r_format: float, r_outcome: float, r_reasoning: float, tau: float,
                 reasoning_on: bool = True, weights: dict[str, float] | None = None) -> float:
    """R = w_format R_f + w_outcome R_o + w_reasoning tau R_t (the last term only when
    `reasoning_on`); `weights` by name, TOTAL_WEIGHTS for any not given."""
    w = {**TOTAL_WEIGHTS, **(weights or {})}
    return (w["format"] * r_format + w["outcome"] * r_outcome
            + (w["reasoning"] * tau * r_reasoning if reasoning_on else 0.0))


@dataclass
class ProgressiveGate:
    """The reasoning term switches on, once and for good, when the rolling accuracy over the last
    `window` completions has reached `threshold` and stabilised: over the last `stable_steps`
    steps (with a full window) it moved by at most `tolerance` (max - min). The paper: accuracy
    "stabilised around 50 %"; its window and tolerance are unknown (256 completions, 10 steps,
    0.05 by default). Opening on the first window above the threshold would switch on a reward
    for reasoning while the accuracy is still climbing steeply (or on a lucky window)."""

    threshold: float = 0.5
    window: int = 256
    stable_steps: int = 10
    tolerance: float = 0.05
    opened_at_step: int | None = None

    def __post_init__(self) -> None:
        self._recent: deque = deque(maxlen=self.window)
        self._history: deque = deque(maxlen=self.stable_steps)  # accuracy after each full step

    @property
    def open(self) -> bool:
        return self.opened_at_step is not None

    def update(self, outcomes: list[float], step: int) -> bool:
        """Record a step's outcome rewards; returns True on the step the gate opens."""
        self._recent.extend(outcomes)
        if self.open or len(self._recent) < self.window:
            return False
        self._history.append(self.accuracy)
        if (len(self._history) == self.stable_steps and self.accuracy >= self.threshold
                and self.change <= self.tolerance):
            self.opened_at_step = step
            return True
        return False

    @property
    def accuracy(self) -> float | None:
        """The rolling accuracy over the last `window` completions."""
        return sum(self._recent) / len(self._recent) if self._recent else None

    @property
    def change(self) -> float | None:
        """How far the accuracy moved over the last `stable_steps` steps (max - min)."""
        return max(self._history) - min(self._history) if self._history else None


def group_rewards(completions: list[str], label: str, judge_scores: list[dict[str, float]],
                  gate_open: bool, weights: dict[str, float] | None = None,
                  total_weights: dict[str, float] | None = None) -> dict[str, list[float]]:
    """Every reward of one group of completions for one prompt: format, outcome, reasoning, the
    group's tau (repeated) and the total."""
    rf = [format_reward(c) for c in completions]
    ro = [outcome_reward(c, label) for c in completions]
    rt = [reasoning_reward(s, weights) for s in judge_scores]
    tau = trust_weight([o == 1.0 for o in ro], rt)
    total = [total_reward(f, o, t, tau, gate_open, total_weights) for f, o, t in zip(rf, ro, rt)]
    return {"format": rf, "outcome": ro, "reasoning": rt, "tau": [tau] * len(completions),
            "total": total}

