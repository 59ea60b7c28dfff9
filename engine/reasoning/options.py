"""How the thinker generates: one frozen `GenerationOptions`, the one place that turns sampling
settings into `model.generate` arguments (in the spirit of whisper's `DecodingOptions`).

    from engine.reasoning.options import GenerationOptions
    options = GenerationOptions(max_new_tokens=512, temperature=0.7, top_p=0.9, seed=1)
    tokens = options.generate(model, tokenizer, inputs)          # or, for a custom caller:
    model.generate(**inputs, **options.generate_kwargs(model, tokenizer, stop=[event]))

Used alike by the app's streaming Reasoner, `train.evaluate` and the GRPO-PTR rollout, so every
caller samples the same way and never samples a placeholder token: the audio, image and video
placeholders are suppressed (a sampled placeholder breaks the next forward that carries audio).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_NEW_TOKENS = 2048  # room for long reasoning (the released script cut it at 1024)
MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS  # tokens generated at most
    temperature: float = 0.0  # 0: greedy decoding; above 0: sampling at this temperature
    top_p: float = 1.0  # nucleus sampling: the smallest token set holding this probability
    seed: int | None = None  # torch's generator is seeded with it before generating; None: not

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a whole number >= 1; got {self.max_new_tokens!r}")
        if not 0 <= self.temperature < float("inf"):  # also refuses NaN
            raise ValueError(f"temperature must be >= 0 (0 is greedy) and finite; got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1]; got {self.top_p!r}")
        if self.seed is not None and not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED):
            raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED}; got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generate_kwargs(self, model, tokenizer,
                        stop: Sequence[threading.Event] = ()) -> dict[str, Any]:
        """Keyword arguments for `model.generate`: the token budget, greedy or sampling settings
        (the checkpoint's own sampling defaults switched off for greedy), the suppressed
        placeholder tokens, and a stopping criterion that ends generation at the next token once
        any event in `stop` is set."""
        from engine.reasoning.features import placeholder_ids

        sampling = ({"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
                    if self.greedy else
                    {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p})
        kwargs = {"max_new_tokens": self.max_new_tokens,
                  "suppress_tokens": placeholder_ids(model.config, tokenizer), **sampling}
        if stop:
            kwargs["stopping_criteria"] = _stopping_criteria(tuple(stop))
        return kwargs

    def generate(self, model, tokenizer, inputs, *, stop: Sequence[threading.Event] = (),
                 **extra):
        """`model.generate(**inputs)` with these options (seeded first when `seed` is set);
        `extra` goes to `generate` as is (a streamer, say). Returns its output ids, which are
        ordinary tensors (no inference mode), so a trainer can take gradients through them."""
        import torch

        if self.seed is not None:
            torch.manual_seed(self.seed)
        return model.generate(**inputs, **self.generate_kwargs(model, tokenizer, stop), **extra)


def _stopping_criteria(events: tuple[threading.Event, ...]):
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Halt(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            halted = any(e.is_set() for e in events)
            return torch.full((input_ids.shape[0],), halted, dtype=torch.bool,
                              device=input_ids.device)

    return StoppingCriteriaList([Halt()])


def eos_ids(model) -> set[int]:
    """The token ids that end a generation (the checkpoint's generation config: one or a list)."""
    eos = model.generation_config.eos_token_id
    return set() if eos is None else set(eos) if isinstance(eos, (list, tuple)) else {eos}
