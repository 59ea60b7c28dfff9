"""The engine's own decode loop: a static KV cache and a one-token step that can be compiled.

    decoder = Decoder(model, tokenizer, compile=True)        # compile: CUDA graphs on a GPU
    decoder.decode(inputs, options, stop=[event], emit=print)  # emit(token_id), one per token

Why: transformers' `generate` grows its cache every token and will not compile a bitsandbytes
model, so a 4-bit 7B decodes at a fraction of the GPU's speed. Here the prompt (audio included)
is prefilled once into a `StaticCache` whose length is a fixed bucket (CACHE_BUCKETS: prompt plus
`max_new_tokens`, rounded up), and every further token is one call of the same step function,
`step(token, position, cache_position, mask)`, whose tensors have the same shapes at every call:
compiled once per bucket (`torch.compile`, mode "reduce-overhead": CUDA graphs on a GPU), it is
then replayed for every token of every clip that falls in the bucket, whatever its length.

Exactly what `generate` does, token for token (tests/test_decoder.py): the same logits
processors in the same order (transformers' own classes: suppressed placeholder tokens,
temperature, top-k, top-p), greedy argmax or `torch.multinomial` on the same generator, the
end-of-sequence token emitted and then the end, the stop events checked after every token. The
positions are Qwen2.5-Omni's 3D rotary ones: the prompt's from the model's `get_rope_index`, then
each new token at its cache position plus the prompt's rope delta.

When it does not apply, `unsupported()` says why and the caller uses `generate`: a generation
config with processors this loop does not reproduce (repetition penalty, min-p ...), or a prompt
longer than the largest bucket. When compiling fails, the step runs eagerly, with one warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.reasoning.options import GenerationOptions

logger = logging.getLogger(__name__)

# Static cache lengths in tokens (prompt + new tokens, rounded up to the next): few enough that
# their compiled steps stay few, fine enough not to waste memory. A 10 s clip is ~400 prompt
# tokens (25 audio tokens per second + the prompt), so the app's 1024 new tokens fit 2048; the
# 7B's cache costs 56 KiB per token in 16 bits (28 layers x 2 x 4 heads x 128 x 2 bytes).
CACHE_BUCKETS = (1024, 2048, 4096, 8192, 16384)
# generation_config fields whose processors this loop does not reproduce: any of them active
# sends the call to `generate` (None / these neutral values mean inactive).
_NEUTRAL = {"repetition_penalty": 1.0, "min_p": None, "typical_p": 1.0, "top_h": None,
            "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "no_repeat_ngram_size": 0,
            "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "min_length": 0,
            "min_new_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
            "forced_eos_token_id": None, "sequence_bias": None, "num_beams": 1,
            "diversity_penalty": 0.0, "renormalize_logits": False, "watermarking_config": None,
            "exponential_decay_length_penalty": None}


@dataclass
class _Bucket:
    cache: Any  # transformers.StaticCache of `length` tokens for a batch of one
    mask: Any  # [1, length] attention mask buffer: 1 for the prompt and what was generated
    step: Callable | None  # the one-token step (compiled or eager) on this cache
    compiled: bool  # whether `step` is a compiled function
    warm: bool = False  # compiled and run once: no compile time left to pay


class Decoder:
    """The static-cache decode loop for one model (see the module docstring). Not thread-safe:
    one decode at a time (the Reasoner's lock guarantees it)."""

    def __init__(self, model, tokenizer, *, compile: bool = False) -> None:
        self.model, self.tokenizer, self.compile = model, tokenizer, compile
        self.eos = set(_as_list(model.generation_config.eos_token_id))
        self._buckets: dict[int, _Bucket] = {}
        self.compile_s = 0.0  # time spent compiling so far (first calls of compiled steps)
        self.compile_failed: str | None = None  # why compiling was given up, if it was

    def bucket_for(self, prompt_tokens: int, max_new_tokens: int) -> int | None:
        """The cache length for a prompt and token budget (None: longer than every bucket)."""
        return next((b for b in CACHE_BUCKETS if b >= prompt_tokens + max_new_tokens), None)

    def unsupported(self, inputs, options: GenerationOptions) -> str | None:
        """Why this loop cannot reproduce `generate` for these inputs and options (None: it can)."""
        if inputs["input_ids"].shape[0] != 1:
            return "a batch of several prompts"
        if self.bucket_for(inputs["input_ids"].shape[1], options.max_new_tokens) is None:
            return f"prompt + new tokens over {CACHE_BUCKETS[-1]}"
        config = self._generation_config(options)
        active = [k for k, neutral in _NEUTRAL.items() if getattr(config, k, neutral) not in (neutral, None)]
        return f"generation config sets {', '.join(active)}" if active else None

    def decode(self, inputs, options: GenerationOptions, *, stop: Sequence[threading.Event] = (),
               emit: Callable[[int], None]) -> int:
        """Generate for one prompt (`inputs`: the processor's BatchFeature on the model's
        device), calling `emit(token_id)` for each new token as it is chosen; returns the number
        of tokens. Check `unsupported()` first."""
        import torch

        with torch.inference_mode():  # the cache's tensors are made, and so reset, in this mode
            return self._decode(inputs, options, stop, emit)

    def _decode(self, inputs, options: GenerationOptions, stop, emit) -> int:
        import torch

        model, ids = self.model, inputs["input_ids"]
        prompt = ids.shape[1]
        length = self.bucket_for(prompt, options.max_new_tokens)
        bucket = self._bucket(length)
        bucket.cache.reset()
        bucket.mask.zero_()
        bucket.mask[:, :prompt] = 1
        processors = self._processors(options, ids.device)
        audio_lengths = inputs["feature_attention_mask"].sum(1) if "feature_attention_mask" in inputs else None
        positions, deltas = model.get_rope_index(input_ids=ids, attention_mask=inputs["attention_mask"],
                                                 audio_seqlens=audio_lengths)
        delta = deltas.reshape(-1)[0].to(ids.device)
        if options.seed is not None:
            torch.manual_seed(options.seed)
        logits = model(**inputs, position_ids=positions, past_key_values=bucket.cache,
                       cache_position=torch.arange(prompt, device=ids.device),
                       use_cache=True).logits[:, -1].float()
        sequence = ids
        for n in range(options.max_new_tokens):
            token = self._choose(processors, sequence, logits, options.greedy)
            emit(int(token))
            sequence = torch.cat([sequence, token.view(1, 1)], dim=1)
            if int(token) in self.eos or any(e.is_set() for e in stop) or n + 1 == options.max_new_tokens:
                return n + 1
            where = torch.tensor([prompt + n], device=ids.device)
            bucket.mask[:, prompt + n] = 1
            position = (where + delta).view(1, 1, 1).expand(3, 1, 1)
            logits = self._step(bucket, token.view(1, 1), position, where)
        return options.max_new_tokens

    def warmup(self, prompt_tokens: int, max_new_tokens: int) -> float:
        """Compile (when compiling) and run once the step of the bucket that a prompt of this
        length and this token budget fall in, so that no user pays for it; returns seconds."""
        import torch

        length = self.bucket_for(prompt_tokens, max_new_tokens)
        if length is None:
            return 0.0
        t0 = time.perf_counter()
        with torch.inference_mode():
            bucket = self._bucket(length)
            bucket.cache.reset()
            bucket.mask.zero_()
            bucket.mask[:, 0] = 1
            zero = torch.zeros(1, dtype=torch.long, device=bucket.mask.device)
            self._step(bucket, zero.view(1, 1), zero.view(1, 1, 1).expand(3, 1, 1), zero)
        return time.perf_counter() - t0

    # --- internals -----------------------------------------------------------------------------

    def _generation_config(self, options: GenerationOptions):
        """The configuration `generate` would run with: the options over the checkpoint's
        generation_config over transformers' global defaults (top_k 50 among them), resolved by
        transformers' own (private, pinned-version) method, so the two cannot drift apart."""
        kwargs = options.generate_kwargs(self.model, self.tokenizer)
        return self.model._prepare_generation_config(None, **kwargs)[0]

    def _processors(self, options: GenerationOptions, device):
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            SuppressTokensLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        config = self._generation_config(options)
        processors = LogitsProcessorList()
        if config.suppress_tokens is not None:
            processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens, device=device))
        if config.do_sample:  # the order of transformers' _get_logits_processor
            if config.temperature is not None and config.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(config.temperature))
            if config.top_k is not None and config.top_k != 0:
                processors.append(TopKLogitsWarper(top_k=config.top_k, min_tokens_to_keep=1))
            if config.top_p is not None and config.top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=1))
        return processors

    @staticmethod
    def _choose(processors, sequence, logits, greedy: bool):
        import torch

        scores = processors(sequence, logits)
        if greedy:
            return torch.argmax(scores, dim=-1)
        return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)

    def _bucket(self, length: int) -> _Bucket:
        if length not in self._buckets:
            import torch
            from transformers import StaticCache

            bucket = _Bucket(cache=StaticCache(config=self.model.config, max_cache_len=length),
                             mask=torch.zeros(1, length, dtype=torch.long, device=self.model.device),
                             step=None, compiled=False)
            bucket.step = _eager_step(self.model, bucket)
            if self.compile and self.compile_failed is None:
                mode = "reduce-overhead" if self.model.device.type == "cuda" else "default"
                bucket.step, bucket.compiled = torch.compile(bucket.step, mode=mode, dynamic=False), True
            self._buckets[length] = bucket
        return self._buckets[length]

    def _step(self, bucket: _Bucket, token, position, cache_position):
        """Logits for the next token; the first call of a compiled step compiles it (timed), and
        a failure there switches every bucket to eager decoding for good."""
        if not bucket.compiled or bucket.warm:
            return bucket.step(token, position, cache_position).clone()
        t0 = time.perf_counter()
        try:
            logits = bucket.step(token, position, cache_position).clone()
        except Exception as exc:  # noqa: BLE001 - compiling failed: serve eagerly, say so once
            self.compile_failed = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
            logger.warning("compiling the decode step failed (%s); decoding eagerly", self.compile_failed)
            for other in self._buckets.values():
                other.step, other.compiled = _eager_step(self.model, other), False
            return bucket.step(token, position, cache_position).clone()
        finally:
            self.compile_s += time.perf_counter() - t0
        bucket.warm = True
        return logits


def _eager_step(model, bucket: _Bucket) -> Callable:
    """The one-token step on `bucket`'s cache: logits (float32) for the next token. It calls the
    thinker's text decoder and output layer directly: the thinker's own forward also reads and
    returns its `rope_deltas` attribute, which the label scoring changes between requests, and
    a compiled step guarded on it would recompile."""

    def step(token, position, cache_position):
        hidden = model.model(input_ids=token, attention_mask=bucket.mask, position_ids=position,
                             past_key_values=bucket.cache, cache_position=cache_position,
                             use_cache=True).last_hidden_state
        return model.lm_head(hidden[:, -1]).float()

    return step


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]
