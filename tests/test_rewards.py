"""GRPO-PTR rewards on literal completions and hand-computed groups."""

import doctest
import math

import pytest

import train.rewards as rewards
from train.rewards import (
    ProgressiveGate,
    format_reward,
    group_rewards,
    outcome_reward,
    reasoning_reward,
    total_reward,
    trust_weight,
)

GOOD = "<think>The pitch rises and the pace is fast.</think><answer>surprise</answer>"


def test_doctests():
    assert doctest.testmod(rewards).failed == 0


@pytest.mark.parametrize("text,r", [
    (GOOD, 1.0), ("  <think>\nx\n</think>\n<answer> sad </answer>\n", 1.0),
    ("<think>x</think>", 0.0), ("<answer>sad</answer>", 0.0), ("sad", 0.0),
    ("<think>x</think><answer>sad</answer> extra", 0.0),
    ("<think>x</think><answer>a</answer><answer>b</answer>", 0.0)])
def test_format_reward(text, r):
    assert format_reward(text) == r


@pytest.mark.parametrize("text,label,r", [
    (GOOD, "surprise", 1.0), (GOOD, "Surprised", 1.0), (GOOD, "fear", 0.0),
    ("<think>x</think><answer>disgust</answer>", "contempt", 1.0),
    ("<think>x</think><answer>happy or sad</answer>", "happy", 0.0),
    ("<think>no answer at all", "sad", 0.0), ("<think>x</think><answer>anger", "angry", 1.0)])
def test_outcome_reward(text, label, r):
    assert outcome_reward(text, label) == r


def test_reasoning_reward_weights_and_checks():
    s = {"factual_alignment": 5, "interpretative_quality": 1, "caption_completeness": 3,
         "fluency_structure": 3}
    assert reasoning_reward(s) == pytest.approx((5 + 1 + 3 + 3) / 4 / 5)
    w = {"factual_alignment": 0.7, "interpretative_quality": 0.1, "caption_completeness": 0.1,
         "fluency_structure": 0.1}
    assert reasoning_reward(s, w) == pytest.approx((0.7 * 5 + 0.1 * 1 + 0.1 * 3 + 0.1 * 3) / 5)
    with pytest.raises(ValueError, match="sum to 1"):
        reasoning_reward(s, {**w, "fluency_structure": 0.5})
    with pytest.raises(ValueError, match="outside 1..5"):
        reasoning_reward({**s, "factual_alignment": 6})
    with pytest.raises(ValueError, match="lack"):
        reasoning_reward({"factual_alignment": 5})


def test_trust_weight_every_branch():
    # correct completions reason better than wrong ones: tau = 1
    assert trust_weight([True, True, False], [0.8, 0.6, 0.5]) == 1.0
    # equal means: tau = 1 (c >= w)
    assert trust_weight([True, False], [0.5, 0.5]) == 1.0
    # wrong ones reason better: tau = exp(c - w) = exp(0.3 - 0.75)
    assert trust_weight([True, False, False], [0.3, 0.7, 0.8]) == pytest.approx(math.exp(0.3 - 0.75))
    # no wrong or no correct completion: tau = 1 (assumed, docs/paper.md §5)
    assert trust_weight([True, True], [0.1, 0.2]) == 1.0
    assert trust_weight([False, False], [0.9, 0.1]) == 1.0
    with pytest.raises(ValueError):
        trust_weight([True], [0.1, 0.2])


def test_total_reward_and_the_gate_term():
    assert total_reward(1, 1, 0.8, 0.5) == pytest.approx(0.3 + 1.0 + 0.5 * 0.5 * 0.8)
    assert total_reward(1, 1, 0.8, 0.5, reasoning_on=False) == pytest.approx(1.3)
    assert total_reward(0, 0, 1.0, 1.0) == pytest.approx(0.5)


def test_progressive_gate_switches_once_as_a_step():
    gate = ProgressiveGate(threshold=0.5, window=4, stable_steps=1)
    assert not gate.update([0, 0], step=1) and not gate.open  # window not yet full
    assert not gate.update([1, 0], step=2)  # accuracy 0.25
    assert gate.update([1, 1], step=3) and gate.opened_at_step == 3  # last 4: 0,1,1,1 -> 0.75
    assert gate.open and not gate.update([0, 0, 0, 0], step=4)  # it stays open
    assert gate.opened_at_step == 3 and gate.accuracy == 0.0


def test_the_gate_waits_for_the_accuracy_to_stabilise_above_the_threshold():
    """Once it opened on the first window above 50 %, while the accuracy was still climbing."""
    gate = ProgressiveGate(threshold=0.5, window=10, stable_steps=3, tolerance=0.15)
    climbing = [[0] * 10, [1] * 3 + [0] * 7, [1] * 6 + [0] * 4, [1] * 8 + [0] * 2]  # 0, .3, .6, .8
    assert not any(gate.update(outcomes, step) for step, outcomes in enumerate(climbing, 1))
    assert gate.accuracy == 0.8 and gate.change == pytest.approx(0.5)  # above, but not stable
    plateau = [[1] * 8 + [0] * 2, [1] * 7 + [0] * 3]  # .6 .8 .8 moved 0.2; .8 .8 .7 moved 0.1
    assert not gate.update(plateau[0], 5) and gate.update(plateau[1], 6)
    assert gate.opened_at_step == 6 and gate.change == pytest.approx(0.1)
    stuck_low = ProgressiveGate(threshold=0.5, window=10, stable_steps=3, tolerance=0.15)
    assert not any(stuck_low.update([1] * 4 + [0] * 6, s) for s in range(1, 9))  # stable at 0.4


def test_a_hand_computed_group():
    completions = ["<think>a</think><answer>sad</answer>", "<think>b</think><answer>happy</answer>",
                   "<think>c</think><answer>sad", "sad"]
    judge = [dict.fromkeys(rewards.CRITERIA, g) for g in (2, 5, 3, 1)]
    out = group_rewards(completions, "sad", judge, gate_open=True)
    assert out["format"] == [1, 1, 0, 0] and out["outcome"] == [1, 0, 1, 0]
    assert out["reasoning"] == pytest.approx([0.4, 1.0, 0.6, 0.2])
    tau = math.exp((0.4 + 0.6) / 2 - (1.0 + 0.2) / 2)  # correct 0.5 < wrong 0.6
    assert out["tau"] == pytest.approx([tau] * 4)
    assert out["total"] == pytest.approx([0.3 + 1 + 0.5 * tau * 0.4, 0.3 + 0.5 * tau * 1.0,
                                          1 + 0.5 * tau * 0.6, 0.5 * tau * 0.2])
    closed = group_rewards(completions, "sad", judge, gate_open=False)
    assert closed["total"] == pytest.approx([1.3, 0.3, 1.0, 0.0])


def test_named_total_weights_change_the_total():
    from train.rewards import group_rewards

    texts = ["<think>low and slow</think><answer>sad</answer>", "no tags, no answer"]
    scores = [dict.fromkeys(("factual_alignment", "interpretative_quality", "caption_completeness",
                             "fluency_structure"), 5)] * 2
    paper = group_rewards(texts, "sad", scores, gate_open=True)["total"]
    outcome_only = group_rewards(texts, "sad", scores, gate_open=True,
                                 total_weights={"format": 0.0, "reasoning": 0.0})["total"]
    assert paper == pytest.approx([0.3 + 1.0 + 0.5, 0.5])  # tau = 1: the right answer reasons as well
    assert outcome_only == pytest.approx([1.0, 0.0])
