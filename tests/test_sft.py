"""Prosody-enhanced SFT on the tiny model, CPU: the audio reaches the loss, only the answer is
learnt, a fixed batch is overfitted, and the result loads back through the engine."""

import json

import pytest

from train.sft import IGNORE, Collator, Recipe, prepare_model, train


def recipe_file(tmp_path, tiny_checkpoint, labelled_corpus, **over):
    config = {"model": str(tiny_checkpoint), "data": str(labelled_corpus),
              "output_dir": str(tmp_path / "run"), "mode": "lora", "train_parts": ["llm", "projector"],
              "tasks": {"emotion": 1.0}, "n_samples": 2, "batch_size": 2, "grad_accum": 1,
              "max_steps": 40, "learning_rate": 1e-2, "logging_steps": 5, "save_steps": 1000,
              "lora_r": 8, **over}
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def losses(run_dir):
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_collator_masks_everything_but_the_answer(tiny_model, labelled_corpus):
    from train.data import assistant_text, build_samples

    records = [json.loads(l) for l in labelled_corpus.read_text().splitlines()]
    samples = build_samples(records, {"emotion": 1, "attributes": 1}, n=4, seed=0)
    batch = Collator(tiny_model.processor, labelled_corpus.parent, 4096)(samples)
    tok = tiny_model.processor.tokenizer
    assert batch["input_features"].shape[0] == 4 and batch["feature_attention_mask"].sum() > 0
    for i, s in enumerate(samples):
        learnt = batch["labels"][i][batch["labels"][i] != IGNORE]
        assert tok.decode(learnt) == assistant_text(s) + "<|im_end|>"
    audio_id = tiny_model.model.config.audio_token_index
    assert not ((batch["labels"] == audio_id).any())


# a 17k-parameter LoRA on a random 0.2M-parameter model can only bend it so far; full
# fine-tuning memorises the two answers. Both must fall clearly below the start.
@pytest.mark.parametrize("mode,lr,ratio", [("lora", 5e-3, 0.9), ("full", 5e-3, 0.6)])
def test_a_fixed_batch_is_overfitted_and_the_audio_reaches_every_step(
        tmp_path, tiny_checkpoint, labelled_corpus, monkeypatch, mode, lr, ratio):
    import train.sft as sft

    seen = []
    real_prepare = sft.prepare_model

    def hooked(recipe):  # the real model, with a forward hook on its audio encoder
        model, loaded = real_prepare(recipe)
        tower = dict(model.named_modules())[[n for n, _ in model.named_modules()
                                             if n.endswith("audio_tower")][0]]
        tower.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
        return model, loaded

    monkeypatch.setattr(sft, "prepare_model", hooked)
    recipe = Recipe.load(recipe_file(tmp_path, tiny_checkpoint, labelled_corpus, mode=mode,
                                     learning_rate=lr, lora_dropout=0.0))
    final = train(recipe)
    curve = losses(tmp_path / "run")
    assert curve[-1] < ratio * curve[0], curve  # it learns the two answers
    assert all(b <= a + 0.05 for a, b in zip(curve, curve[1:])), curve  # steadily
    assert len(seen) == 40 and all(shape[0] == 128 for shape in seen)  # audio in every step
    assert (final / "preprocessor_config.json").exists()
    assert (final / ("adapter_config.json" if mode == "lora" else "config.json")).exists()


def test_the_result_loads_back_through_the_engine_and_reasons(tmp_path, tiny_checkpoint,
                                                              labelled_corpus):
    from engine.audio import load_audio
    from engine.reasoning.model import load_model
    from engine.reasoning.reasoner import Done, Reasoner

    recipe = Recipe.load(recipe_file(tmp_path, tiny_checkpoint, labelled_corpus, max_steps=3,
                                     merge=True))
    final = train(recipe)
    for path in (final, tmp_path / "run" / "merged"):
        loaded = load_model(str(path))
        clip = load_audio(labelled_corpus.parent / "clips" / "syn0000.wav")
        done = list(Reasoner(loaded).stream(clip, max_new_tokens=4))[-1]
        assert isinstance(done, Done) and done.n_tokens == 4


def test_recipes_are_checked():
    from pathlib import Path

    shipped = Recipe.load(Path(__file__).resolve().parents[1] / "train/recipes/sft_prosody.yaml")
    assert shipped.mode == "qlora" and shipped.tasks["emotion"] == 0.3 and shipped.tasks["stress"] == 0.15
    with pytest.raises(ValueError, match="unknown recipe keys"):
        Recipe.load(Path(__file__).resolve().parents[1] / "train/recipes/sft_prosody.yaml", learning_rat=1)


def test_qlora_trains_on_an_nf4_base(tmp_path, tiny_checkpoint, labelled_corpus):
    recipe = Recipe.load(recipe_file(tmp_path, tiny_checkpoint, labelled_corpus, mode="qlora",
                                     max_steps=6, learning_rate=5e-3, logging_steps=2))
    model, _ = prepare_model(recipe)
    kinds = {type(m).__name__ for n, m in model.named_modules() if n.endswith("q_proj")}
    assert "Linear4bit" in kinds
    final = train(recipe)
    curve = losses(tmp_path / "run")
    assert len(curve) == 3 and curve[-1] < curve[0]
    assert (final / "adapter_config.json").exists()


def test_checkpoints_and_resume(tmp_path, tiny_checkpoint, labelled_corpus):
    first = Recipe.load(recipe_file(tmp_path, tiny_checkpoint, labelled_corpus, max_steps=4,
                                    save_steps=2, logging_steps=1))
    train(first)
    run = tmp_path / "run"
    assert {p.name for p in run.glob("checkpoint-*")} == {"checkpoint-2", "checkpoint-4"}
    more = Recipe.load(recipe_file(tmp_path, tiny_checkpoint, labelled_corpus, max_steps=6,
                                   save_steps=2, logging_steps=1, resume=True))
    train(more)
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(l)]
    assert steps == [1, 2, 3, 4, 5, 6]  # the second run went on from step 4, not from 0


def test_full_training_keeps_fp32_master_weights_and_learns_at_the_papers_lr(
        tmp_path, tiny_checkpoint, labelled_corpus):
    """A bf16 weight cannot take an update under its rounding step: 10 AdamW steps at lr 1e-6
    (the paper's) leave almost every bf16 weight where it was. So full training holds fp32
    master weights (bf16 autocast on a GPU), and a full-mode step at 1e-6 moves the weights."""
    import torch

    from engine.reasoning.model import load_model
    from train.sft import weight_quant

    assert [weight_quant(m, cuda=True) for m in ("full", "lora", "qlora")] == ["fp32", "bf16", "nf4"]
    assert [weight_quant(m, cuda=False) for m in ("full", "lora", "qlora")] == ["fp32", "fp32", "nf4"]
    changed = {}
    for dtype in (torch.bfloat16, torch.float32):
        w = torch.nn.Parameter(torch.randn(4096, generator=torch.Generator().manual_seed(0)).to(dtype))
        start, opt = w.detach().clone(), torch.optim.AdamW([w], lr=1e-6, weight_decay=0.0)
        for _ in range(10):
            w.grad = torch.randn_like(w)
            opt.step()
        changed[dtype] = float((w.detach() != start).float().mean())
    assert changed[torch.bfloat16] < 0.1 and changed[torch.float32] > 0.99

    final = train(Recipe.load(recipe_file(tmp_path, tiny_checkpoint, labelled_corpus, mode="full",
                                          max_steps=2, learning_rate=1e-6, train_parts=["llm"])))
    before = load_model(str(tiny_checkpoint), quant="fp32").model.state_dict()
    after = load_model(str(final), quant="fp32").model.state_dict()
    llm = [k for k in after if k.startswith("model.layers.") and after[k].dtype == torch.float32]
    moved = sum(int((after[k] != before[k]).sum()) for k in llm) / sum(after[k].numel() for k in llm)
    assert moved > 0.9


def test_samples_longer_than_max_length_are_left_out_never_cut(tmp_path, tiny_model, tiny_checkpoint,
                                                               labelled_corpus, capsys):
    """Once: a long sample was cut after 50 of its 100 audio placeholders, kept its audio
    features, had no label token left and gave loss NaN, silently (and in a batch of two its
    features spilled into the other sample)."""
    import math

    from train.data import build_samples

    records = [json.loads(line) for line in labelled_corpus.read_text().splitlines()]
    samples = build_samples(records, {"emotion": 1.0, "comparative": 1.0}, 8, 0)
    exact = [len(Collator(tiny_model.processor, labelled_corpus.parent, 10**6)([s])["input_ids"][0])
             for s in samples]
    limit = sorted(exact)[len(exact) // 2]
    collator = Collator(tiny_model.processor, labelled_corpus.parent, limit)
    assert [collator.fits(s) for s in samples] == [n <= limit for n in exact]  # exact where it matters
    with pytest.raises(ValueError, match="exceeds max_length"):
        collator([samples[exact.index(max(exact))]])  # never cut silently
    final = train(Recipe.load(recipe_file(tmp_path, tiny_checkpoint, labelled_corpus, max_length=limit,
                                          tasks={"emotion": 1.0, "comparative": 1.0}, n_samples=8,
                                          max_steps=3, logging_steps=1)))
    left_out = sum(n > limit for n in exact)
    assert f"left out {left_out} of 8 samples longer than max_length {limit}" in capsys.readouterr().err
    assert all(math.isfinite(x) for x in losses(tmp_path / "run")) and final.exists()
    with pytest.raises(ValueError, match="no sample fits in max_length 10 tokens"):
        train(Recipe.load(recipe_file(tmp_path, tiny_checkpoint, labelled_corpus, max_length=10)))
