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

Exactly what `generate` does, token for token in fp32 (tests/test_decoder.py; in 16 bits a
compiled step's fused kernels round differently from eager ones, so long outputs may part
after a while, as any two bf16 kernels would): the same logits
processors in the same order (transformers' own classes: suppressed placeholder tokens,
temperature, top-k, top-p), greedy argmax or `torch.multinomial` on the same generator, the
end-of-sequence token emitted and then the end, the stop events checked after every token. The
positions are Qwen2.5-Omni's 3D rotary ones: the prompt's from the model's `get_rope_index`, then
each new token at its cache position plus the prompt's rope delta.

Several prompts decode together (`decode_batch`, left-padded, each row exactly as alone), and a
running batch takes new prompts into its free rows between two steps (`join`): each prefilled
alone, its cache entries copied to end at the batch's position, its rotary positions its own.

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

from engine.reasoning.options import GenerationOptions, eos_ids

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


BATCH_SIZES = (1, 2, 4, 8)  # a batch is padded up to one of these: one compiled graph each


@dataclass
class Row:
    """One prompt of a batch: how to generate for it, and where its tokens go."""

    options: GenerationOptions
    emit: Callable[[int], None]  # called with each new token id as it is chosen
    stop: Sequence[threading.Event] = ()  # any set: this row ends after its current token
    on_end: Callable[[], None] | None = None  # called once when the row ends, before the next step
    n_tokens: int = 0  # tokens emitted so far
    done: bool = False
    reason: str | None = None  # why it ended: "eos", "length", "stopped" or "error"
    failed: BaseException | None = None  # what went wrong preparing it (it joined and failed)


# join(position, room, length) -> up to `room` (inputs, Row) to add to a running batch, each
# prompt at most `position` tokens and its budget ending within the cache's `length`
Joiner = Callable[[int, int, int], "list[tuple[Any, Row]]"]


@dataclass
class _Bucket:
    cache: Any  # transformers.StaticCache of `length` tokens for `batch` rows
    mask: Any  # [batch, length] attention mask buffer: 1 for the prompts and what was generated
    step: Callable | None  # the one-token step (compiled or eager) on this cache
    compiled: bool  # whether `step` is a compiled function
    warm: bool = False  # compiled and run once: no compile time left to pay


@dataclass
class _Run:
    """A batch being decoded: its cache, a row per slot, and where it stands."""

    bucket: _Bucket  # the cache and step it runs on (a wider one after `_widen`)
    length: int  # the cache length, tokens
    slots: list  # the Row decoding in each slot of the batch (None: never used)
    sequences: Any  # [slots, position] token ids: prompts left-padded, then what was chosen
    deltas: Any  # [slots] rotary delta: a slot's next token sits at the cache position + this
    finished: Any  # [slots] bool: the slot's row ended, or it has none
    logits: Any  # [slots, vocab] float32 logits for each slot's next token
    position: int  # the cache position the next chosen tokens are written to
    suppress: Any  # the placeholder suppression (transformers' processor), or None
    samplers: dict  # slot -> its sampler (the greedy rows have none)

    @property
    def size(self) -> int:
        return len(self.slots)


class Decoder:
    """The static-cache decode loop for one model (see the module docstring). Not thread-safe:
    one decode at a time (the Reasoner's scheduler guarantees it)."""

    def __init__(self, model, tokenizer, *, compile: bool = False) -> None:
        self.model, self.tokenizer, self.compile = model, tokenizer, compile
        self.eos = eos_ids(model)
        self.pad = model.generation_config.pad_token_id or tokenizer.pad_token_id or 0
        self._buckets: dict[tuple[int, int], _Bucket] = {}
        self.compile_s = 0.0  # time spent compiling so far (first calls of compiled steps)
        self.compile_failed: str | None = None  # why compiling was given up, if it was
        if compile:
            import torch._dynamo

            # one graph per (bucket, batch size): let all of them be kept
            config = torch._dynamo.config
            name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
            setattr(config, name, max(getattr(config, name), len(CACHE_BUCKETS) * len(BATCH_SIZES)))

    def bucket_for(self, prompt_tokens: int, max_new_tokens: int) -> int | None:
        """The cache length for a prompt and token budget (None: longer than every bucket)."""
        return next((b for b in CACHE_BUCKETS if b >= prompt_tokens + max_new_tokens), None)

    def unsupported(self, inputs, options: GenerationOptions) -> str | None:
        """Why this loop cannot reproduce `generate` for these inputs and options (None: it can)."""
        if inputs["input_ids"].shape[0] > BATCH_SIZES[-1]:
            return f"a batch of more than {BATCH_SIZES[-1]} prompts"
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
        row = Row(options, emit, stop)
        self.decode_batch(inputs, [row])
        return row.n_tokens

    def decode_batch(self, inputs, rows: list[Row], pad_to: int | None = None, *,
                     join: Joiner | None = None, widest: int | None = None) -> None:
        """Generate for several prompts at once (`inputs`: the processor's left-padded batch,
        one row per `rows` entry). Each row ends on its own (end of sequence, its token budget,
        its stop events) without disturbing the others; the batch ends with its last row. A
        greedy row writes what it would write alone; a sampled row draws from its own generator
        (seeded with its seed), so it does not depend on the other rows either. The batch runs
        `pad_to` rows wide when given (compiled: one graph for every batch size up to it), else
        compiled at the next of BATCH_SIZES, eager at its own size.

        Continuous batching: with `join`, before every step the batch offers its free rows (up
        to `widest` in all, widening once when it must) to `join(position, room, length)`, which
        returns up to `room` (inputs, Row) pairs whose prompts are at most `position` tokens and
        whose budgets end within the cache's `length`. Each is prefilled alone and its cache
        entries copied into a free row, ending at the batch's position (left-padded, as if it
        had been in the batch from the start), so it decodes with the others from the next step,
        writing exactly what it would alone."""
        import torch

        with torch.inference_mode():  # the cache's tensors are made, and so reset, in this mode
            run = self._start(inputs, rows, pad_to)
            while True:
                if join is not None:
                    self._admit(run, join, max(widest or run.size, run.size))
                if not self._step_rows(run):
                    return

    def _start(self, inputs, rows: list[Row], pad_to: int | None) -> _Run:
        """Prefill the batch's first rows together into a fresh cache of their bucket."""
        import torch

        model, ids = self.model, inputs["input_ids"]
        device, prompt = ids.device, ids.shape[1]
        real = len(rows)
        size = (max(pad_to, real) if pad_to is not None else
                next(b for b in BATCH_SIZES if b >= real) if self.compile and not self.compile_failed
                else real)
        if size > real:  # pad the batch with copies of the first prompt, whose tokens go nowhere
            inputs = {k: torch.cat([v, v[:1].expand(size - real, *v.shape[1:])]) for k, v in inputs.items()}
            ids = inputs["input_ids"]
        length = self.bucket_for(prompt, max(r.options.max_new_tokens for r in rows))
        bucket = self._bucket(length, size)
        bucket.cache.reset()
        bucket.mask.zero_()
        bucket.mask[:, :prompt] = inputs["attention_mask"]
        positions, deltas = self._rope(inputs)
        # the next token of row b sits at (its real prompt tokens + n) + delta_b: a left-padded
        # row's pads hold no position, so they come off its share of the cache position
        pads = prompt - inputs["attention_mask"].sum(1)
        deltas = deltas.reshape(-1).to(device) - pads.to(device)
        logits = model(**inputs, position_ids=positions, past_key_values=bucket.cache,
                       cache_position=torch.arange(prompt, device=device),
                       use_cache=True).logits[:, -1].float()
        finished = torch.zeros(size, dtype=torch.bool, device=device)
        finished[real:] = True  # the padding rows
        return _Run(bucket=bucket, length=length, slots=[*rows, *[None] * (size - real)],
                    sequences=ids, deltas=deltas, finished=finished, logits=logits, position=prompt,
                    suppress=self._processors(rows[0].options, device)[0],  # the same placeholders for all
                    samplers={i: self._sampler(r.options, device) for i, r in enumerate(rows)
                              if not r.options.greedy})

    def _rope(self, inputs):
        """(3D rotary positions of the prompt, each row's delta): Qwen2.5-Omni's own reckoning."""
        audio_lengths = inputs["feature_attention_mask"].sum(1) if "feature_attention_mask" in inputs else None
        return self.model.get_rope_index(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                         audio_seqlens=audio_lengths)

    def _step_rows(self, run: _Run) -> bool:
        """Choose every live row's next token, hand it over, and (unless every row has ended:
        False) run the step that gives the logits after it."""
        import torch

        scores = run.suppress(run.sequences, run.logits) if run.suppress is not None else run.logits
        tokens = torch.argmax(scores, dim=-1)  # every greedy row at once
        for i, sample in run.samplers.items():
            if not run.slots[i].done:
                tokens[i] = sample(run.sequences[i:i + 1], scores[i:i + 1])
        tokens = tokens.masked_fill(run.finished, self.pad)
        for i, token in enumerate(tokens.tolist()):  # one device-to-host copy a step
            row = run.slots[i]
            if row is None or row.done:
                continue
            row.emit(token)
            row.n_tokens += 1
            row.reason = ("eos" if token in self.eos else
                          "length" if row.n_tokens == row.options.max_new_tokens else
                          "stopped" if any(e.is_set() for e in row.stop) else None)
            if row.reason is not None:
                self._end(run, i)
        if all(r is None or r.done for r in run.slots):
            return False
        bucket, size = run.bucket, run.size
        run.sequences = torch.cat([run.sequences, tokens[:, None]], dim=1)
        where = torch.tensor([run.position], device=tokens.device)
        bucket.mask[:, run.position] = 1
        position = (where + run.deltas).view(1, size, 1).expand(3, size, 1)
        run.logits = self._step(bucket, tokens[:, None], position, where)
        run.position += 1
        return True

    @staticmethod
    def _end(run: _Run, slot: int) -> None:
        row = run.slots[slot]
        row.done = True
        run.finished[slot] = True
        run.samplers.pop(slot, None)
        if row.on_end is not None:
            row.on_end()

    def _admit(self, run: _Run, join: Joiner, widest: int) -> None:
        """Offer the batch's free rows to `join` and prefill whoever it sends into them."""
        live = sum(r is not None and not r.done for r in run.slots)
        room = widest - live
        if room <= 0:
            return
        joiners = join(run.position, room, run.length)
        if not joiners:
            return
        if len(joiners) > run.size - live:
            try:
                self._widen(run, widest)
            except Exception as exc:  # noqa: BLE001 - the wider cache did not fit: the joiners' failure only
                logger.exception("widening the batch for requests that joined it failed")
                for _, row in joiners:
                    self._fail(row, exc)
                return
        free = (i for i, r in enumerate(run.slots) if r is None or r.done)
        for (inputs, row), slot in zip(joiners, free):
            try:
                self._prefill_into(run, slot, inputs, row)
            except Exception as exc:  # noqa: BLE001 - its own failure (out of memory ...): the batch goes on
                logger.exception("prefilling a request that joined the batch failed")
                run.slots[slot] = None
                run.finished[slot] = True
                self._fail(row, exc)

    @staticmethod
    def _fail(row: Row, exc: BaseException) -> None:
        row.failed, row.reason, row.done = exc, "error", True
        if row.on_end is not None:
            row.on_end()

    def _prefill_into(self, run: _Run, slot: int, inputs, row: Row) -> None:
        """Prefill one prompt alone and place it in row `slot` of the running batch: its cache
        entries (rotary positions already applied) at the cache positions just before the
        batch's, its mask over them only, its next position continuing its own."""
        import torch
        from transformers import DynamicCache

        model, ids = self.model, inputs["input_ids"]
        prompt, here, device = ids.shape[1], run.position, run.logits.device
        positions, delta = self._rope(inputs)
        own = DynamicCache(config=model.config)
        logits = model(**inputs, position_ids=positions, past_key_values=own,
                       cache_position=torch.arange(prompt, device=ids.device), use_cache=True).logits[:, -1]
        for mine, theirs in zip(own.layers, run.bucket.cache.layers, strict=True):
            theirs.keys[slot, :, here - prompt:here] = mine.keys[0].to(theirs.keys.device)
            theirs.values[slot, :, here - prompt:here] = mine.values[0].to(theirs.values.device)
        mask = run.bucket.mask
        mask[slot] = 0
        mask[slot, here - prompt:here] = inputs["attention_mask"][0].to(mask.device)
        run.sequences[slot, :here - prompt] = self.pad
        run.sequences[slot, here - prompt:] = ids[0].to(device)
        run.deltas[slot] = delta.reshape(-1)[0].to(device) - (here - prompt)
        run.logits[slot] = logits[0].float().to(device)
        run.finished[slot] = False
        run.slots[slot] = row
        if not row.options.greedy:
            run.samplers[slot] = self._sampler(row.options, device)

    def _widen(self, run: _Run, widest: int) -> None:
        """Move the running batch into the cache of its bucket that is `widest` rows wide (its
        own compiled step): rows copied, the new ones empty until someone joins."""
        import torch

        size = run.size
        bucket = self._bucket(run.length, widest)
        for old, new in zip(run.bucket.cache.layers, bucket.cache.layers, strict=True):
            new.keys[:size] = old.keys
            new.values[:size] = old.values
            new.keys[size:] = 0
            new.values[size:] = 0
            new.cumulative_length.copy_(old.cumulative_length)
        bucket.mask.zero_()
        bucket.mask[:size] = run.bucket.mask
        bucket.mask[size:, 0] = 1  # an empty row attends to something: no all-masked softmax
        extra = widest - size
        device = run.sequences.device
        run.bucket = bucket
        run.slots += [None] * extra
        run.sequences = torch.cat([run.sequences, run.sequences.new_full((extra, run.sequences.shape[1]), self.pad)])
        run.deltas = torch.cat([run.deltas, run.deltas.new_zeros(extra)])
        run.finished = torch.cat([run.finished, torch.ones(extra, dtype=torch.bool, device=device)])
        run.logits = torch.cat([run.logits, run.logits.new_zeros(extra, run.logits.shape[1])])

    def _sampler(self, options: GenerationOptions, device) -> Callable:
        """(sequence, suppressed scores) -> the next token of one sampling row: transformers'
        warpers, then a draw from the row's own generator."""
        import torch

        warpers = self._processors(options, device)[1]
        generator = torch.Generator(device=device)
        # a fresh generator seeded with s draws what torch.manual_seed(s) then generate() draws
        generator.manual_seed(options.seed if options.seed is not None else
                              int(torch.randint(2**62, (1,)).item()))
        return lambda sequence, scores: torch.multinomial(
            torch.softmax(warpers(sequence, scores), dim=-1), 1, generator=generator).squeeze(1)

    def warmup(self, prompt_tokens: int, max_new_tokens: int, batch: int = 1) -> float:
        """Compile (when compiling) and run once the step of the bucket that a prompt of this
        length and this token budget fall in, `batch` rows wide, so that no user pays for it;
        returns seconds."""
        import torch

        length = self.bucket_for(prompt_tokens, max_new_tokens)
        if length is None:
            return 0.0
        size = batch  # the width the caller will run (the scheduler: 1 or its max_batch)
        t0 = time.perf_counter()
        with torch.inference_mode():
            bucket = self._bucket(length, size)
            bucket.cache.reset()
            bucket.mask.zero_()
            bucket.mask[:, 0] = 1
            zero = torch.zeros(size, dtype=torch.long, device=bucket.mask.device)
            self._step(bucket, zero[:, None], zero.view(1, size, 1).expand(3, size, 1), zero[:1])
        return time.perf_counter() - t0

    # --- internals -----------------------------------------------------------------------------

    def _generation_config(self, options: GenerationOptions):
        """The configuration `generate` would run with: the options over the checkpoint's
        generation_config over transformers' global defaults (top_k 50 among them), resolved by
        transformers' own (private, pinned-version) method, so the two cannot drift apart."""
        kwargs = options.generate_kwargs(self.model, self.tokenizer)
        return self.model._prepare_generation_config(None, **kwargs)[0]

    def _processors(self, options: GenerationOptions, device):
        """(the placeholder suppression, the sampling warpers) that `generate` would apply."""
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            SuppressTokensLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        config = self._generation_config(options)
        suppress = (SuppressTokensLogitsProcessor(config.suppress_tokens, device=device)
                    if config.suppress_tokens is not None else None)
        warpers = LogitsProcessorList()
        if config.do_sample:  # after the suppression, in the order of _get_logits_processor
            if config.temperature is not None and config.temperature != 1.0:
                warpers.append(TemperatureLogitsWarper(config.temperature))
            if config.top_k is not None and config.top_k != 0:
                warpers.append(TopKLogitsWarper(top_k=config.top_k, min_tokens_to_keep=1))
            if config.top_p is not None and config.top_p < 1.0:
                warpers.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=1))
        return suppress, warpers

    def _bucket(self, length: int, size: int = 1) -> _Bucket:
        if (length, size) not in self._buckets:
            import torch
            from transformers import StaticCache

            cache = StaticCache(config=self.model.config, max_cache_len=length)
            # allocated now, outside any compiled code, so that its tensors are marked as static
            # addresses (transformers allocates a cache on its first update, which in a compiled
            # warm-up is inside the traced step: unmarked, and the first real request recompiles)
            text = self.model.config.get_text_config()
            head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
            cache.early_initialization(size, text.num_key_value_heads, head_dim,
                                       self.model.get_input_embeddings().weight.dtype, self.model.device)
            bucket = _Bucket(cache=cache, step=None, compiled=False,
                             mask=torch.zeros(size, length, dtype=torch.long, device=self.model.device))
            bucket.step = _eager_step(self.model, bucket)
            if self.compile and self.compile_failed is None:
                mode = "reduce-overhead" if self.model.device.type == "cuda" else "default"
                bucket.step, bucket.compiled = torch.compile(bucket.step, mode=mode, dynamic=False), True
            self._buckets[length, size] = bucket
        return self._buckets[length, size]

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
