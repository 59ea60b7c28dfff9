"""GRPO-PTR: the paper's prosody-aware reinforcement learning, `python -m train.grpo_ptr --config R.yaml`.

    python -m train.grpo_ptr --config train/recipes/grpo_ptr.yaml
    accelerate launch --config_file train/recipes/accelerate_ddp.yaml -m train.grpo_ptr --config ...

What is implemented (docs/paper.md §5). Per prompt (a clip and the released question), K
completions are sampled from the policy (K = 8). Each gets the format reward R_f, the outcome
reward R_o (engine.reasoning.parse, as the app reads answers), and the reasoning reward R_t = sum_j w_j g_j/5
from a judge's four 1-5 scores (train.judges; equal weights). The group's trust weight tau
(1 if the correct completions reason at least as well as the wrong ones, else exp(c - w); 1 for a
group without correct or without wrong completions: an assumption) multiplies R_t in the total
R = 0.3 R_f + 1.0 R_o + 0.5 tau R_t, whose reasoning term stays off until the progressive gate
opens (rolling accuracy over `gate_window` completions >= `gate_threshold` and stable: moved by
at most `gate_tolerance` over `gate_stable_steps` steps; its inputs logged every step).
Advantages are group-relative, A_i = (R_i - mean) / (std + 1e-4). The loss is GRPO's:
per token -[min(rho A, clip(rho, 1-eps, 1+eps) A) - beta KL], KL the k3 estimator against the
frozen reference, averaged over each completion's tokens and then over the group; beta = 0.04.
Only the policy is updated (LoRA / QLoRA adapters or the chosen parts). The KL reference is the
starting model: for a run that starts from an adapter (train.sft's output) and trains it on, a
frozen copy of that adapter on the same base (two named adapters); for a new adapter on a full
checkpoint, the same weights with the adapter switched off; for full training, a frozen copy at
the policy's precision (fp32 master weights, bf16 autocast on a GPU; never nf4).

The loop reads like nanochat's chat_rl.py: `rollout` samples and scores one prompt's group (a
`Group`), `policy_step` turns a group into the loss and its gradient, and `train` only wires
them to the optimiser, the gate, the log and the checkpoints. Sampling goes through the engine's
`GenerationOptions`, as the app and the evaluation sample. The recipe (train/recipes/grpo_ptr.yaml,
checked by train.config) names the reward weights: {format: 0.3, outcome: 1.0, reasoning: 0.5}.

Where it departs from the textbook and from TRL:
- TRL 1.16's GRPOTrainer was the starting point, but its log-prob path (a fused LM head returning
  `log_probs`, multimodal fields plumbed for images only) drops the audio and does not fit the
  Omni thinker; rather than override its central methods, this file implements the same loss in
  a short loop around transformers' `generate`. Every log-prob forward here (policy, old policy,
  reference) receives the clip's `input_features` (tests/test_grpo_ptr.py proves it with a
  forward hook, KL on), and the audio, image and video placeholder tokens are never sampled.
- One optimisation step per generation round (num_iterations = 1, TRL's default): the old policy
  is the current one, so rho = 1 in value but carries the gradient. Dropout is off (TRL's
  disable_dropout), so the policy and the reference forwards compare like with like: the KL is 0
  at the first step.
- Groups are whole on each process (each process samples all K completions of its prompts), so
  tau is exact per group with any number of processes; the gate counts every process's outcomes
  (gathered), so all processes switch at the same step; logged metrics are means over processes.
- No vLLM generation (transformers' generate only); the paper's trained reward model is not
  public, so the default judge is train.judges.ProsodyFactJudge.
"""

from __future__ import annotations

import argparse
import random
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.reasoning.options import GenerationOptions, eos_ids
from engine.reasoning.prompts import build_messages
from train.config import BaseRecipe
from train.rewards import CRITERIA, TOTAL_WEIGHTS


@dataclass
class Recipe(BaseRecipe):
    """GRPO-PTR's recipe: the shared keys (train.config.BaseRecipe) and these."""

    num_generations: int = 8  # K, completions per prompt (docs/paper.md §5)
    prompts_per_step: int = 1
    beta: float = 0.04  # KL coefficient (docs/paper.md §5)
    epsilon: float = 0.2  # ratio clipping
    learning_rate: float = 1e-6  # docs/paper.md §5 (weak source)
    max_steps: int = 3000
    logging_steps: int = 1
    max_new_tokens: int = 512  # rarely cuts 50-200 words of reasoning; `truncated` is logged
    temperature: float = 1.0  # sampling, > 0: a group needs different completions
    top_p: float = 1.0
    reward_weights: dict[str, float] = field(default_factory=lambda: dict(TOTAL_WEIGHTS))
    reasoning_weights: dict[str, float] | None = None  # None: the four criteria weighted equally
    gate_threshold: float = 0.5  # rolling accuracy that switches the reasoning reward on (> 1: never)
    gate_window: int = 256  # completions per process in the rolling window (the paper's is unknown)
    gate_stable_steps: int = 10  # ... and it must have stabilised: over this many steps,
    gate_tolerance: float = 0.05  # moved by at most this much (train.rewards.ProgressiveGate)
    judge: str = "fact"  # fact, or a local chat model for train.judges.ModelJudge

    def validate(self) -> None:
        super().validate()
        if self.num_generations < 2:
            raise ValueError(f"recipe key num_generations must be >= 2 (a group); got {self.num_generations}")
        for key in ("prompts_per_step", "max_steps", "gate_window", "gate_stable_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"recipe key {key} must be >= 1; got {getattr(self, key)!r}")
        if self.beta < 0 or self.epsilon <= 0:
            raise ValueError(f"recipe keys beta (>= 0) and epsilon (> 0); got {self.beta}, {self.epsilon}")
        if self.gate_threshold < 0 or self.gate_tolerance < 0:
            raise ValueError("recipe keys gate_threshold and gate_tolerance must be >= 0; got "
                             f"{self.gate_threshold}, {self.gate_tolerance}")
        unknown = set(self.reward_weights) - set(TOTAL_WEIGHTS)
        if unknown:
            raise ValueError(f"recipe key reward_weights names unknown rewards {sorted(unknown)}; "
                             f"known: {', '.join(TOTAL_WEIGHTS)}")
        self.reward_weights = {**TOTAL_WEIGHTS, **self.reward_weights}
        if self.reasoning_weights is not None:
            unknown = set(self.reasoning_weights) - set(CRITERIA)
            if unknown:
                raise ValueError(f"recipe key reasoning_weights names unknown criteria {sorted(unknown)}; "
                                 f"known: {', '.join(CRITERIA)}")
            if set(self.reasoning_weights) != set(CRITERIA) or abs(sum(self.reasoning_weights.values()) - 1) > 1e-6:
                raise ValueError("recipe key reasoning_weights must weigh all four criteria "
                                 f"({', '.join(CRITERIA)}) and sum to 1; got {self.reasoning_weights}")
        if self.temperature <= 0:
            raise ValueError(f"recipe key temperature must be > 0 (GRPO samples); got {self.temperature}")
        _ = self.generation  # GenerationOptions refuses a bad max_new_tokens or top_p

    @property
    def generation(self) -> GenerationOptions:
        """How completions are sampled (the engine's options: placeholders suppressed)."""
        return GenerationOptions(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                 top_p=self.top_p)


@dataclass(frozen=True)
class Group:
    """One prompt's K sampled completions, scored: what a policy step learns from."""

    inputs: Any  # the prompt's BatchFeature (ids, attention, the clip's audio features)
    prompt_len: int  # prompt tokens
    sequences: Any  # [K, T] completion token ids
    mask: Any  # [K, T] 1 up to and including each completion's end-of-sequence token
    texts: list[str]  # the completions as text
    rewards: dict[str, list[float]]  # train.rewards.group_rewards: format, outcome, ... total
    truncated: list[bool]  # cut at max_new_tokens before an end-of-sequence token


def completion_mask(ids, eos_ids: set[int]):
    """1 for each completion token up to and including its first end-of-sequence token."""
    import torch

    is_eos = torch.zeros_like(ids, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= ids == e
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(ids[:, 0], ids.shape[1]))
    return (torch.arange(ids.shape[1], device=ids.device)[None, :] <= first[:, None]).long()


def token_logps(model, inputs, sequences, mask, prompt_len: int):
    """Log-probabilities of the completion tokens, the clip's audio features in the forward."""
    import torch

    attention = torch.cat([inputs["attention_mask"].expand(sequences.shape[0], -1), mask], dim=1)
    k = sequences.shape[0]
    audio = {key: inputs[key].expand(k, *inputs[key].shape[1:])
             for key in ("input_features", "feature_attention_mask")}
    full = torch.cat([inputs["input_ids"].expand(k, -1), sequences], dim=1)
    logits = model(input_ids=full, attention_mask=attention, **audio).logits
    logits = logits[:, prompt_len - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, sequences.unsqueeze(-1)).squeeze(-1)


def grpo_loss(logp, old_logp, ref_logp, advantages, mask, beta: float, epsilon: float):
    """GRPO's clipped objective with a k3 KL penalty, mean over each completion's tokens, then
    over completions. Returns (loss, mean KL)."""
    import torch

    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    surrogate = torch.min(ratio * a, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * a)
    kl = torch.zeros_like(logp) if ref_logp is None else \
        torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    per_token = -(surrogate - beta * kl)
    lengths = mask.sum(1).clamp(min=1)
    loss = ((per_token * mask).sum(1) / lengths).mean()
    return loss, float(((kl.detach() * mask).sum(1) / lengths).mean())


def rollout(policy, processor, record: dict, clip, recipe: Recipe, judges, gate_open: bool) -> Group:
    """Sample K completions for one clip and score them (format, outcome, judged reasoning,
    tau, total)."""
    import torch

    from engine.prosody import analyze
    from engine.reasoning.parse import parse
    from train.records import map_label, voice_type
    from train.rewards import group_rewards

    judge, fact_judge = judges
    tokenizer = processor.tokenizer
    prompt = processor.apply_chat_template(build_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=prompt, audio=[clip.samples]).to(policy.device)
    prompt_len = inputs["input_ids"].shape[1]
    k = recipe.num_generations
    repeated = {"input_ids": inputs["input_ids"].repeat(k, 1),
                "attention_mask": inputs["attention_mask"].repeat(k, 1),
                "input_features": inputs["input_features"].repeat(k, 1, 1),
                "feature_attention_mask": inputs["feature_attention_mask"].repeat(k, 1)}
    with torch.no_grad(), sampling(policy):
        generated = recipe.generation.generate(policy, tokenizer, repeated)
    sequences = generated[:, prompt_len:]
    ends = eos_ids(policy)
    mask = completion_mask(sequences, ends)
    truncated = [not any(int(t) in ends for t in row) for row in sequences]
    texts = tokenizer.batch_decode(sequences * mask + (1 - mask) * (tokenizer.pad_token_id or 0),
                                   skip_special_tokens=True)
    report = analyze(clip, voice=voice_type(record))
    thinks = [parse(t).think for t in texts]
    scores = [judge.score(t, record, report) or fact_judge.score(t, record, report)
              for t in thinks]  # a model judge that cannot answer: the fact judge
    rewards = group_rewards(texts, map_label(record["emotion"], record.get("dataset")), scores, gate_open,
                            recipe.reasoning_weights, recipe.reward_weights)
    return Group(inputs, prompt_len, sequences, mask, texts, rewards, truncated)


REFERENCE_ADAPTER = "reference"  # a frozen copy of the starting adapter: the KL reference


@contextmanager
def sampling(model):
    """Generation with gradient checkpointing switched off for its duration: a checkpointed
    layer in training mode drops the KV cache (transformers' GradientCheckpointingLayer), so
    every sampled token would attend only to itself. (Not eval mode: on a CPU, bitsandbytes
    repacks 4-bit weights for inference in eval mode, and the next training forward fails.)"""
    checkpointing = bool(getattr(model, "is_gradient_checkpointing", False))
    if checkpointing:
        model.gradient_checkpointing_disable()
    try:
        yield
    finally:
        if checkpointing:
            model.gradient_checkpointing_enable()


def reference_logps(model, reference, args, accelerator):
    """The KL reference's log-probabilities: the starting model. `reference` is a frozen copy
    (full training); else the policy with its frozen REFERENCE_ADAPTER active (a run that
    continues an adapter), or with its adapter switched off (a new adapter on a full model)."""
    import torch

    peft_model = accelerator.unwrap_model(model)
    with torch.no_grad():
        if reference is not None:  # under the policy's autocast: the same bf16 arithmetic
            with accelerator.autocast():
                return token_logps(reference, *args)
        if REFERENCE_ADAPTER in getattr(peft_model, "peft_config", {}):
            peft_model.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
            try:  # called before the policy's forward: no adapter switch under a live graph
                return token_logps(model, *args)
            finally:  # the trained adapter again, requiring grad again
                peft_model.set_adapter("default")
        with peft_model.disable_adapter():
            return token_logps(model, *args)


def policy_step(model, reference, group: Group, recipe: Recipe, accelerator) -> tuple[float, float]:
    """Backpropagate GRPO's loss for one group (scaled for `prompts_per_step` groups a step);
    returns (loss, mean KL) against the starting model (`reference_logps`)."""
    import torch

    rewards = torch.tensor(group.rewards["total"], device=group.sequences.device)
    advantages = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
    args = (group.inputs, group.sequences, group.mask, group.prompt_len)
    ref_logp = reference_logps(model, reference, args, accelerator) if recipe.beta > 0 else None
    logp = token_logps(model, *args)  # after the reference: no adapter switch under a live graph
    loss, kl = grpo_loss(logp, logp.detach(), ref_logp, advantages, group.mask.float(),
                         recipe.beta, recipe.epsilon)
    accelerator.backward(loss / recipe.prompts_per_step)
    return float(loss), kl


def group_stats(group: Group, loss: float, kl: float) -> dict[str, float]:
    """What one group contributes to the step's logged means."""
    r, k = group.rewards, len(group.texts)
    return {"loss": loss, "accuracy": sum(r["outcome"]) / k, "format_rate": sum(r["format"]) / k,
            "reasoning_reward": sum(r["reasoning"]) / k, "tau": r["tau"][0],
            "reward": sum(r["total"]) / k, "kl": kl,
            "completion_tokens": float(group.mask.sum(1).float().mean()),
            "truncated": sum(group.truncated) / k}


def train(recipe: Recipe) -> Path:
    """Run GRPO-PTR; returns OUT/final."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    from train.judges import ModelJudge, ProsodyFactJudge
    from train.records import JsonlWriter, load_clip, map_label, read_jsonl
    from train.rewards import ProgressiveGate
    from train.sft import adapter_start, copy_processor_files, prepare_model, weight_quant

    cuda = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no")
    if accelerator.distributed_type.name in ("DEEPSPEED", "FSDP"):
        raise ValueError(f"GRPO-PTR runs under DDP (train/recipes/accelerate_ddp.yaml), not "
                         f"{accelerator.distributed_type.name}: each process samples from the whole "
                         "model, which sharding takes apart; use mode qlora or lora to fit a GPU")
    rng = random.Random(recipe.seed + accelerator.process_index)
    torch.manual_seed(recipe.seed + accelerator.process_index)
    base = Path(recipe.data).parent
    records = [r for r in read_jsonl(recipe.data) if map_label(r.get("emotion"), r.get("dataset"))]
    if not records:
        raise ValueError(f"{recipe.data} has no record with one of the nine emotions")
    model, loaded = prepare_model(recipe)
    reference, start = None, adapter_start(recipe.model)
    if recipe.beta > 0 and recipe.mode == "full":  # a frozen copy at the policy's precision
        from engine.reasoning.model import load_model

        reference = load_model(recipe.model, quant="bf16" if cuda else weight_quant("full", cuda),
                               device=str(accelerator.device)).model.requires_grad_(False)
    elif recipe.beta > 0 and start is not None:
        model.load_adapter(str(start), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        model.train()  # peft leaves the whole model in eval mode after loading a frozen adapter
    for module in model.modules():  # deterministic forwards (the reference adapter's too): the
        if isinstance(module, torch.nn.Dropout):  # ratio and the KL compare them
            module.p = 0.0
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=recipe.learning_rate)
    model, optimizer = accelerator.prepare(model, optimizer)
    fact_judge = ProsodyFactJudge()
    judges = (fact_judge if recipe.judge == "fact" else ModelJudge(recipe.judge), fact_judge)
    # the window holds gate_window completions per process: with more GPUs each step adds more,
    # and a window that one step refills would make the stability check a coin toss
    gate = ProgressiveGate(recipe.gate_threshold, recipe.gate_window * accelerator.num_processes,
                           recipe.gate_stable_steps, recipe.gate_tolerance)
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with JsonlWriter(out / "metrics.jsonl", append=True) as log:
        for step in range(1, recipe.max_steps + 1):
            stats, outcomes, clips = [], [], []
            for _ in range(recipe.prompts_per_step):
                record = rng.choice(records)
                clips.append(str(record["audio_path"]))
                group = rollout(accelerator.unwrap_model(model), loaded.processor, record,
                                load_clip(record, base), recipe, judges, gate.open)
                stats.append(group_stats(group, *policy_step(model, reference, group, recipe,
                                                             accelerator)))
                outcomes.extend(group.rewards["outcome"])
            # every process sees every outcome, so all switch the reasoning reward on at one step
            everyone = accelerator.gather(torch.tensor(outcomes, device=accelerator.device)).tolist()
            if gate.update(everyone, step) and accelerator.is_main_process:
                print(f"step {step}: rolling accuracy {gate.accuracy:.2f} reached "
                      f"{recipe.gate_threshold}: the reasoning reward is on", file=sys.stderr)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            if step % recipe.logging_steps == 0:
                keys = sorted(stats[0])  # the mean over processes (each holds whole groups)
                local = [[sum(s[key] for s in stats) / len(stats) for key in keys]]
                means = accelerator.gather(torch.tensor(local, device=accelerator.device)).mean(0).tolist()
                sums = accelerator.gather(weights_checksum(model, accelerator.device)[None])
                prompts = gather_object([clips])  # each process's clips, in process order
                if accelerator.is_main_process:
                    row = {"step": step, "phase": "reasoning" if gate.open else "outcome",
                           "gate_opened_at": gate.opened_at_step, "gate_accuracy": gate.accuracy,
                           "gate_change": gate.change,
                           "processes": accelerator.num_processes, "clips": prompts,
                           "weights_in_sync": bool(torch.all(sums == sums[0])),
                           **dict(zip(keys, means))}
                    log.write(row)
            if step % recipe.save_steps == 0:
                save(accelerator, model, out / f"checkpoint-{step}")
    final = out / "final"
    save(accelerator, model, final)
    if accelerator.is_main_process:
        copy_processor_files(Path(loaded.path), final)
    accelerator.wait_for_everyone()
    return final


def weights_checksum(model, device):
    """A sum over the trained weights (float64 accumulation, no copy): equal on every process
    while they hold the same model (DDP: each holds all of it)."""
    import torch

    trained = [p.detach().sum(dtype=torch.float64) for p in model.parameters() if p.requires_grad]
    return torch.stack(trained).sum().to(device) if trained else torch.zeros((), device=device)


def save(accelerator, model, folder: Path) -> None:
    """The trained weights, written once (the main process) from the gathered state dict (ZeRO-3
    and FSDP shard it); an adapter run writes only its trained adapter, not the reference."""
    state = accelerator.get_state_dict(model)  # every process takes part in the gathering
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        extra = {"selected_adapters": ["default"]} if hasattr(unwrapped, "peft_config") else {}
        unwrapped.save_pretrained(folder, state_dict=state, safe_serialization=True, **extra)
    accelerator.wait_for_everyone()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.grpo_ptr", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--output-dir")
    ap.add_argument("--max-steps", type=int)
    args = ap.parse_args(argv)
    train(Recipe.load(args.config, output_dir=args.output_dir, max_steps=args.max_steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
