"""GRPO-PTR on the tiny model, CPU: it runs, the gate switches and is logged, and every log-prob
forward (policy and reference, KL on) sees the audio."""

import json
import math

import pytest
import torch

from train.grpo_ptr import Recipe, completion_mask, grpo_loss, train


def recipe(tmp_path, tiny_checkpoint, labelled_corpus, **over):
    path = tmp_path / "grpo.yaml"
    path.write_text(json.dumps({"model": str(tiny_checkpoint), "data": str(labelled_corpus),
                                "output_dir": str(tmp_path / "run"), "mode": "lora",
                                "num_generations": 4, "max_steps": 3, "max_new_tokens": 12,
                                "learning_rate": "1e-3", "beta": 0.04, "gate_window": 4,
                                "gate_threshold": 0.0, "gate_stable_steps": 1, **over}))
    return Recipe.load(path)


def test_grpo_loss_by_hand():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], requires_grad=True)
    ref = torch.tensor([[-1.5, -2.0], [-0.5, -1.0]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, kl = grpo_loss(logp, logp.detach(), ref, adv, mask, beta=0.04, epsilon=0.2)
    k3 = lambda d: math.exp(d) - d - 1  # noqa: E731 - KL estimator at ref - logp = d
    kl0 = (k3(-0.5) + k3(0.0)) / 2  # completion 0 over its two tokens
    kl1 = k3(0.0)  # completion 1: one token
    expected = ((-(1.0 - 0.04 * k3(-0.5)) - (1.0 - 0.04 * k3(0.0))) / 2 + (-(-1.0 - 0.04 * kl1))) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert kl == pytest.approx((kl0 + kl1) / 2, abs=1e-6)
    loss.backward()
    assert logp.grad[1, 1] == 0  # masked token: no gradient
    assert logp.grad[0, 0] < 0  # positive advantage: raise its log-probability


def test_completion_mask_stops_after_the_first_eos():
    ids = torch.tensor([[5, 6, 9, 0, 0], [5, 6, 7, 8, 4], [9, 1, 9, 1, 1]])
    assert completion_mask(ids, {9}).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_a_short_run_switches_the_gate_and_the_audio_reaches_every_forward(
        tmp_path, tiny_checkpoint, labelled_corpus, monkeypatch, capsys):
    import train.sft as sft

    calls = []
    real = sft.prepare_model

    def hooked(r):
        model, loaded = real(r)
        tower = next(m for n, m in model.named_modules() if n.endswith("audio_tower"))
        tower.register_forward_hook(lambda m, a, o: calls.append(
            (a[0].shape[-2], torch.is_grad_enabled())))  # mel bins, and whether it is the loss pass
        return model, loaded

    monkeypatch.setattr(sft, "prepare_model", hooked)
    final = train(recipe(tmp_path, tiny_checkpoint, labelled_corpus))
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("accuracy", "format_rate", "reasoning_reward", "tau", "phase", "completion_tokens", "kl"):
        assert key in rows[0]
    # 12 new tokens of a random model: the completions that did not end were cut, and said so
    assert 0.0 <= rows[0]["truncated"] <= 1.0
    assert (rows[0]["truncated"] == 1.0) == (rows[0]["completion_tokens"] == 12.0)
    assert rows[0]["gate_opened_at"] == 1 and rows[-1]["phase"] == "reasoning"
    assert "the reasoning reward is on" in capsys.readouterr().err
    # per step: generation's prefill (no grad), the policy's loss forward (grad), the reference (no grad)
    assert sum(grad for _, grad in calls) == 3
    assert sum(not grad for _, grad in calls) >= 6
    assert all(bins == 128 for bins, _ in calls)
    assert (final / "adapter_config.json").exists()


def test_the_gate_stays_closed_below_its_threshold(tmp_path, tiny_checkpoint, labelled_corpus):
    train(recipe(tmp_path, tiny_checkpoint, labelled_corpus, gate_threshold=0.9, max_steps=2))
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["phase"] == "outcome" and r["gate_opened_at"] is None for r in rows)


def test_full_mode_uses_a_frozen_reference(tmp_path, tiny_checkpoint, labelled_corpus):
    final = train(recipe(tmp_path, tiny_checkpoint, labelled_corpus, mode="full", max_steps=1))
    assert (final / "config.json").exists()


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def sft_adapter(tmp_path, tiny_checkpoint, labelled_corpus, mode):
    """A LoRA adapter as train.sft writes it (two steps)."""
    from train.sft import Recipe as SftRecipe
    from train.sft import train as sft_train

    path = tmp_path / "sft.yaml"
    path.write_text(json.dumps({"model": str(tiny_checkpoint), "data": str(labelled_corpus),
                                "output_dir": str(tmp_path / "sft"), "mode": mode, "max_steps": 2,
                                "grad_accum": 1, "learning_rate": "1e-3", "n_samples": 4}))
    return sft_train(SftRecipe.load(path))


@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_a_run_from_an_sft_adapter_trains_that_adapter_against_it(tmp_path, tiny_checkpoint,
                                                                  labelled_corpus, mode):
    """Once: over a 4-bit base peft found no LoRA targets under `base_model.model.` and the run
    did not start; over a 16-bit one the SFT adapter was merged and a second one trained on it.
    Now the SFT adapter trains on, and the KL reference is that adapter frozen (KL 0 at first)."""
    from safetensors.torch import load_file

    from engine.reasoning.model import load_model

    start = sft_adapter(tmp_path, tiny_checkpoint, labelled_corpus, mode)
    final = train(recipe(tmp_path, start, labelled_corpus, mode=mode, max_steps=3))  # step 2 learns
    rows = metrics(tmp_path / "run")
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-9) and rows[-1]["kl"] > 0  # dropout off, too
    config = json.loads((final / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_checkpoint)  # the SFT adapter, trained on
    before = load_file(start / "adapter_model.safetensors")
    after = load_file(final / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    # learned from the SFT adapter's weights: Adam moves a weight by ~lr (1e-3) a step, so three
    # steps stay within 0.01 (a fresh adapter's random lora_A would be ~0.1 away), and more
    # than weight decay alone (~1e-5 of a weight)
    moved = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert 1e-4 < moved < 0.01
    assert not (final / "reference").exists()  # the frozen copy is not saved
    assert load_model(str(final), quant="fp32").model is not None


def test_full_training_starts_at_kl_zero_against_a_reference_at_its_precision(
        tmp_path, tiny_checkpoint, labelled_corpus):
    """Once: the full-mode reference loaded with quant "auto" (nf4 on this CPU), so the KL was not
    0 before any update."""
    train(recipe(tmp_path, tiny_checkpoint, labelled_corpus, mode="full", max_steps=1,
                 learning_rate="1e-6"))
    assert metrics(tmp_path / "run")[0]["kl"] == pytest.approx(0.0, abs=1e-6)


def test_sampling_with_gradient_checkpointing_on_writes_what_eval_mode_writes(tiny_checkpoint):
    """A checkpointed layer in training mode drops the KV cache: without `sampling` the greedy
    tokens came out different (each attended only to itself)."""
    import numpy as np

    from engine.reasoning.model import load_model
    from engine.reasoning.options import GenerationOptions
    from engine.reasoning.prompts import build_messages
    from train.grpo_ptr import sampling

    loaded = load_model(str(tiny_checkpoint), quant="fp32")
    model, processor = loaded.model, loaded.processor
    prompt = processor.apply_chat_template(build_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=prompt, audio=[np.random.RandomState(0).randn(48000).astype(np.float32) * 0.1])
    options = GenerationOptions(max_new_tokens=32)

    def greedy():
        with torch.no_grad():
            return options.generate(model, processor.tokenizer, inputs)[0].tolist()

    model.eval()
    reference = greedy()
    model.gradient_checkpointing_enable()
    model.train()
    with sampling(model):
        assert greedy() == reference
    assert model.is_gradient_checkpointing  # back on for the update
    assert greedy() != reference  # what the rollout sampled before
