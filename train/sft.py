"""Prosody-enhanced supervised fine-tuning of the thinker: `python -m train.sft --config RECIPE.yaml`.

    python -m train.sft --config train/recipes/sft_prosody.yaml
    accelerate launch --config_file train/recipes/accelerate_zero2.yaml -m train.sft --config ...

One short main(): read the YAML recipe (train/recipes/sft_prosody.yaml documents every key),
build the samples (train.data), load the model through engine.reasoning.model (the users' loader),
choose what trains, and hand everything to transformers' Trainer. Modes: "full" (the parts in
`train_parts` update), "lora" and "qlora" (LoRA adapters on those parts' linear layers; qlora over
an nf4 base). Parts: "audio_encoder" (audio_tower without its output projection), "projector"
(audio_tower.proj, into the LLM's width), "llm" (the language model and lm_head).

What this does that TRL's SFTTrainer would get wrong for this model: the collator here puts the
clip's `input_features` and `feature_attention_mask` in every batch and Trainer is told to keep
them (remove_unused_columns=False), so the audio reaches every forward pass; and only the
assistant's tokens (its answer and <|im_end|>) carry loss. tests/test_sft.py proves both.
Output: OUT/final holds the adapter or the full model plus the processor files, so
engine.reasoning.model.load_model(OUT/final) loads it (and the app runs it); checkpoints every `save_steps`
in OUT/checkpoint-*, resumed with `resume: true`; metrics per logging step in OUT/metrics.jsonl
(and TensorBoard when installed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from train.config import BaseRecipe
from train.data import DEFAULT_RECIPE, TASKS
from train.records import JsonlWriter

IGNORE = -100  # label of tokens that carry no loss
# Qwen2.5-Omni's audio encoder: 100 mel frames a second, pooled 4x: 25 tokens a second (measured
# with the processor: 10 s -> 251, 30 s -> 751); used to spot samples near max_length cheaply
AUDIO_TOKENS_PER_S = 25
LENGTH_MARGIN = 16  # tokens of slack in that estimate before the exact count is taken
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                "fc1", "fc2", "out_proj", "proj")
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "preprocessor_config.json",
                   "chat_template.json", "chat_template.jinja", "generation_config.json")


@dataclass
class Recipe(BaseRecipe):
    """SFT's recipe: the shared keys (train.config.BaseRecipe) and these."""

    tasks: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RECIPE))  # task: weight
    n_samples: int | None = None  # None: as many as the data give at these proportions
    lora_dropout: float = 0.05
    epochs: float = 1.0
    batch_size: int = 1
    grad_accum: int = 8
    max_length: int = 4096  # tokens; longer samples are left out (counted), never cut
    merge: bool = False  # also write OUT/merged: a LoRA merged into a 16-bit base
    resume: bool = False

    def validate(self) -> None:
        super().validate()
        for task, weight in self.tasks.items():
            if task not in TASKS:
                raise ValueError(f"recipe key tasks names an unknown task {task!r}; known: {', '.join(TASKS)}")
            if weight < 0:
                raise ValueError(f"recipe key tasks: the weight of {task} must be >= 0; got {weight}")
        if not any(w > 0 for w in self.tasks.values()):
            raise ValueError("recipe key tasks must give at least one task a weight above 0")
        for key in ("batch_size", "grad_accum", "max_length"):
            if getattr(self, key) < 1:
                raise ValueError(f"recipe key {key} must be >= 1; got {getattr(self, key)!r}")
        if self.merge and self.mode != "lora":
            raise ValueError("recipe key merge needs mode: lora (a 16-bit base to merge into)")


class Collator:
    """Samples -> a padded batch with audio features and assistant-only labels."""

    def __init__(self, processor, base_dir: str | Path, max_length: int) -> None:
        self.processor, self.base_dir, self.max_length = processor, Path(base_dir), max_length
        self.end_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def __call__(self, samples: list[dict[str, Any]]) -> dict:
        import torch

        from train.data import sample_audio

        audio = [sample_audio(s, self.base_dir) for s in samples]
        full = [self.processor.apply_chat_template(s["messages"], tokenize=False) for s in samples]
        prompts = [self.processor.apply_chat_template(s["messages"][:-1], tokenize=False,
                                                      add_generation_prompt=True) for s in samples]
        batch = self.processor(text=full, audio=audio, padding=True, padding_side="right")
        prompt_lens = [len(self.processor(text=p, audio=[a])["input_ids"][0])
                       for p, a in zip(prompts, audio)]
        labels = batch["input_ids"].clone()
        for i, n in enumerate(prompt_lens):
            labels[i, :n] = IGNORE
            ends = (batch["input_ids"][i] == self.end_id).nonzero().flatten()
            if len(ends):
                labels[i, int(ends[-1]) + 1:] = IGNORE  # the newline after <|im_end|>, padding
        labels[batch["attention_mask"] == 0] = IGNORE
        batch["labels"] = labels
        if batch["input_ids"].shape[1] > self.max_length:  # `fits` left such samples out
            raise ValueError(f"a batch of {batch['input_ids'].shape[1]} tokens exceeds max_length "
                             f"{self.max_length}: filter the samples with Collator.fits first")
        return {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v)) for k, v in batch.items()}

    def fits(self, sample: dict[str, Any]) -> bool:
        """Whether the sample's text and audio tokens fit in max_length. Cutting a sample would
        cut its audio placeholders but not its audio features (once: loss NaN, and features
        spilling into the next sample of the batch), so a sample that does not fit is left out.
        Cheap for most: the text's tokens plus 25 per second of audio (read from the file's
        header); exact (the processor on the real audio) only within LENGTH_MARGIN of the limit."""
        import soundfile as sf

        from train.data import GAP_S, sample_audio
        from train.records import audio_file

        spec = sample["audio"]
        seconds = sf.info(str(audio_file(spec, self.base_dir))).duration
        if "variants" in spec:
            seconds = sum(seconds / v.get("tempo", 1.0) for v in spec["variants"]) \
                + spec.get("gap_s", GAP_S) * (len(spec["variants"]) - 1)
        text = self.processor.apply_chat_template(sample["messages"], tokenize=False)
        estimate = len(self.processor.tokenizer(text)["input_ids"]) + AUDIO_TOKENS_PER_S * seconds
        if estimate + LENGTH_MARGIN <= self.max_length:
            return True
        audio = sample_audio(sample, self.base_dir)
        return len(self.processor(text=text, audio=[audio])["input_ids"][0]) <= self.max_length


def part_of(name: str) -> str | None:
    """Which trainable part a parameter or module name belongs to."""
    if name.startswith("audio_tower.proj"):
        return "projector"
    if name.startswith("audio_tower."):
        return "audio_encoder"
    if name.startswith(("model.", "lm_head")):
        return "llm"
    return None


def weight_quant(mode: str, cuda: bool) -> str:
    """How the trained model's weights are held. full: fp32 master weights (bf16 autocast on a
    GPU does the arithmetic): a bf16 weight cannot take an update under its rounding step, so at
    lr 1e-6 almost none would move (tests/test_sft.py measures it). lora: the frozen base in bf16
    on a GPU (peft keeps the adapters in fp32). qlora: an nf4 base."""
    if mode == "qlora":
        return "nf4"
    return "bf16" if mode == "lora" and cuda else "fp32"


def adapter_start(source: str) -> Path | None:
    """The folder of a LoRA adapter (train.sft's output) when `source` is one, else None."""
    path = Path(source)
    return path if (path / "adapter_config.json").is_file() else None


def prepare_model(recipe: Recipe):
    """Load through engine.reasoning.model and make the chosen parts trainable: full, a new LoRA
    adapter, or, when `recipe.model` is an adapter (train.sft's output), that adapter trained on
    (its base loaded the same way, its targets kept)."""
    import json

    from engine.reasoning.model import load_model

    adapter = adapter_start(recipe.model)
    if adapter is not None and recipe.mode == "full":
        raise ValueError(f"{adapter} is a LoRA adapter: continue it with mode lora or qlora, or "
                         "merge it into its base first (train.sft with merge: true writes "
                         "OUT/merged) to train every weight")
    source = recipe.model if adapter is None else \
        json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    loaded = load_model(source, quant=weight_quant(recipe.mode, _cuda()), device=recipe.device,
                        quantize_audio_encoder="audio_encoder" in recipe.train_parts)
    model = loaded.model
    if recipe.mode == "full":
        for name, p in model.named_parameters():
            p.requires_grad = part_of(name) in recipe.train_parts
    else:
        from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

        if recipe.mode == "qlora":
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=recipe.gradient_checkpointing)
        if adapter is not None:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
        else:
            targets = [n for n, m in model.named_modules()
                       if n.split(".")[-1] in LORA_TARGETS and part_of(n) in recipe.train_parts
                       and hasattr(m, "weight")]
            config = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                                lora_dropout=recipe.lora_dropout, target_modules=targets,
                                task_type="CAUSAL_LM")
            model = get_peft_model(model, config)
    if recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    return model, loaded


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.sft", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--output-dir")
    ap.add_argument("--max-steps", type=int)
    args = ap.parse_args(argv)
    recipe = Recipe.load(args.config, output_dir=args.output_dir, max_steps=args.max_steps)
    train(recipe)
    return 0


def train(recipe: Recipe) -> Path:
    """Run the recipe; returns OUT/final."""
    from transformers import Trainer, TrainingArguments

    from train.data import build_samples
    from train.records import read_jsonl

    records = list(read_jsonl(recipe.data))
    samples = build_samples(records, recipe.tasks, recipe.n_samples, recipe.seed)
    if not samples:
        raise ValueError(f"{recipe.data} gives no samples for the tasks {list(recipe.tasks)}")
    model, loaded = prepare_model(recipe)
    out = Path(recipe.output_dir)
    collator = Collator(loaded.processor, Path(recipe.data).parent, recipe.max_length)
    kept = [s for s in samples if collator.fits(s)]
    if len(kept) < len(samples):
        print(f"left out {len(samples) - len(kept)} of {len(samples)} samples longer than "
              f"max_length {recipe.max_length} tokens", file=sys.stderr)
    if not kept:
        raise ValueError(f"no sample fits in max_length {recipe.max_length} tokens (audio takes "
                         f"{AUDIO_TOKENS_PER_S} a second): raise max_length or use shorter clips")
    trainer = Trainer(
        model=model, train_dataset=kept, data_collator=collator,
        callbacks=[MetricsLog(out / "metrics.jsonl")],
        args=TrainingArguments(
            output_dir=str(out), per_device_train_batch_size=recipe.batch_size,
            gradient_accumulation_steps=recipe.grad_accum, learning_rate=recipe.learning_rate,
            num_train_epochs=recipe.epochs, max_steps=recipe.max_steps,
            logging_steps=recipe.logging_steps, save_steps=recipe.save_steps, save_total_limit=2,
            seed=recipe.seed, bf16=_cuda(), remove_unused_columns=False,
            report_to=["tensorboard"] if _has("tensorboard") else [], dataloader_num_workers=0,
            use_cpu=not _cuda()))
    resume = recipe.resume and any(out.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    final = out / "final"
    trainer.save_model(str(final))  # the main process writes, ZeRO-3 / FSDP shards gathered first
    if trainer.is_world_process_zero():
        copy_processor_files(Path(loaded.path), final)
        if recipe.merge and recipe.mode == "lora" and trainer.is_deepspeed_enabled:
            print("merge: skipped under DeepSpeed (its weights are partitioned): merge final/ into "
                  "its base afterwards", file=sys.stderr)
        elif recipe.merge and recipe.mode == "lora":
            trainer.model.merge_and_unload().save_pretrained(out / "merged")
            copy_processor_files(Path(loaded.path), out / "merged")
    return final


def copy_processor_files(src: Path, dst: Path) -> None:
    """Tokenizer, feature extractor, chat template and generation config next to the weights."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in PROCESSOR_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


class MetricsLog(TrainerCallback):
    """Every logged value, one JSON object per line, beside the checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with JsonlWriter(self.path, append=True) as f:
                f.write({"step": state.global_step, **logs})


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
