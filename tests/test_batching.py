"""Concurrent users share the model (engine.reasoning.scheduler): requests that wait together
decode together, and requests that arrive while a batch decodes join it (continuous batching),
each exactly as it would alone, each ending on its own; the line keeps arrival order and tells
each request its own place."""

import contextlib
import threading
import time

import pytest

from engine.audio import from_array
from engine.prosody import synth
from engine.reasoning.reasoner import Done, Queued, Reasoner, TextDelta

CLIPS = [(160, 2.0), (120, 4.0), (220, 1.0), (180, 6.0)]  # f0 Hz, seconds: different lengths


def clip_of(f0, seconds):
    return from_array(synth.harmonic(f0, seconds, syllable_hz=4.0), 16000)


@pytest.fixture(scope="module")
def batching(tiny_model):
    return Reasoner(tiny_model, static_cache=True, max_batch=8)


@pytest.fixture(scope="module")
def solo(batching):
    """Each clip's greedy tokens when it is served alone."""
    out = {}
    for f0, s in CLIPS:
        events = list(batching.stream(clip_of(f0, s), max_new_tokens=40, score=False))
        assert events[-1].batch == 1
        out[f0, s] = events[-1].token_ids
    return out


def hold_the_model(reasoner):
    """A long request that keeps the model busy until released: requests submitted meanwhile
    wait, and are admitted together when it ends."""
    blocker = reasoner.submit(clip_of(150, 1.0), max_new_tokens=5000, score=False)
    events = reasoner.events(blocker)
    next(events)  # it is decoding
    return blocker, events


@contextlib.contextmanager
def gathered(reasoner):
    """Hold the model (as a warm-up does) so that the requests submitted meanwhile wait, and
    start as one batch when it is let go."""
    with reasoner.scheduler.model_lock:
        yield


def test_requests_that_wait_together_decode_together_each_as_alone(batching, solo):
    with gathered(batching):
        requests = [batching.submit(clip_of(f0, s), max_new_tokens=40) for f0, s in CLIPS]
    for (f0, s), request in zip(CLIPS, requests):
        events = list(batching.events(request))
        batching.release(request)
        done = events[-1]
        assert isinstance(done, Done) and done.batch == 4 and done.decoder == "static"
        assert done.token_ids == solo[f0, s]  # exactly its solo run
        answer = events[-2]
        assert abs(sum(answer.scores.values()) - 1) < 1e-9  # its own nine scores


def test_one_rows_stop_ends_only_that_row(batching, solo):
    stop = threading.Event()
    with gathered(batching):
        requests = [batching.submit(clip_of(f0, s), max_new_tokens=40, score=False,
                                    stop=stop if i == 2 else None) for i, (f0, s) in enumerate(CLIPS)]
        stop.set()  # the third user presses Stop before the batch starts its first token
    dones = [list(batching.events(r))[-1] for r in requests]
    for r in requests:
        batching.release(r)
    assert dones[2].stop_reason == "stopped" and dones[2].n_tokens == 1
    for i in (0, 1, 3):
        assert dones[i].token_ids == solo[CLIPS[i]] and dones[i].batch == 4


def test_a_client_that_leaves_frees_its_row_and_the_others_go_on(batching, solo):
    with gathered(batching):
        requests = [batching.submit(clip_of(f0, s), max_new_tokens=3000 if i == 1 else 40, score=False)
                    for i, (f0, s) in enumerate(CLIPS)]  # the leaving one could run long
    leaving = batching.events(requests[1])
    assert isinstance(next(leaving), TextDelta)
    leaving.close()
    batching.release(requests[1])  # what stream() and the app do when a client disconnects
    others = {i: list(batching.events(requests[i]))[-1] for i in (0, 2, 3)}
    for i, done in others.items():
        assert done.token_ids == solo[CLIPS[i]]
    assert len(requests[1].tokens) < 3000 and requests[1].finished  # its row ended early
    after = list(batching.stream(clip_of(160, 2.0), max_new_tokens=40, score=False))[-1]
    assert after.token_ids == solo[160, 2.0] and after.batch == 1  # the model is free again


def test_the_line_keeps_arrival_order_and_says_each_its_own_place(tiny_model):
    reasoner = Reasoner(tiny_model)  # generate: one request at a time
    blocker, blocker_events = hold_the_model(reasoner)
    requests = [reasoner.submit(clip_of(150 + 10 * i, 1.0), max_new_tokens=2, score=False)
                for i in range(6)]
    streams = [reasoner.events(r, queued=True) for r in requests]
    assert [next(s) for s in streams] == [Queued(p) for p in range(1, 7)]  # each its own place
    assert reasoner.waiting() == 6 and reasoner.busy()
    reasoner.release(blocker)
    list(blocker_events)
    for stream, request in zip(reversed(streams), reversed(requests)):  # consumed in any order
        assert list(stream)[-1].n_tokens == 2
        reasoner.release(request)
    admitted = [r.t_admitted for r in requests]
    assert admitted == sorted(admitted)  # served in arrival order


def test_a_request_that_leaves_the_line_moves_the_others_up(tiny_model):
    reasoner = Reasoner(tiny_model)
    blocker, blocker_events = hold_the_model(reasoner)
    a, b, c = (reasoner.submit(clip_of(150, 1.0), max_new_tokens=2, score=False) for _ in range(3))
    assert [reasoner.scheduler.position(r) for r in (a, b, c)] == [1, 2, 3]
    reasoner.release(b)
    assert [reasoner.scheduler.position(r) for r in (a, c)] == [1, 2] and reasoner.waiting() == 2
    reasoner.release(blocker)
    list(blocker_events)
    for r in (a, c):
        assert list(reasoner.events(r))[-1].n_tokens == 2
        reasoner.release(r)
    assert not reasoner.busy()


def test_a_batch_computes_each_rows_logits_as_alone(batching):
    """Every decode step of three clips of different lengths batched (left-padded, padded to 4
    rows) gives each row the logits of its solo run: positions, masks and padding rows right."""
    from engine.reasoning.decoder import Row
    from engine.reasoning.options import GenerationOptions

    model = batching.model
    clips = [clip_of(160, 1.0), clip_of(120, 6.0), clip_of(220, 3.0)]
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, a, out: seen.append(out.detach().float()))
    try:
        solo = []
        for clip in clips:
            seen.clear()
            batching.decoder.decode(batching.inputs(clip), GenerationOptions(max_new_tokens=6),
                                    emit=lambda t: None)
            solo.append([out[0, -1] if out.dim() == 3 else out[0] for out in seen])
        seen.clear()
        inputs = batching.processor(text=[batching.prompt] * 3, audio=[c.samples for c in clips],
                                    padding=True, padding_side="left").to(model.device)
        batching.decoder.decode_batch(inputs, [Row(GenerationOptions(max_new_tokens=6), lambda t: None)
                                               for _ in clips], pad_to=4)
    finally:
        hook.remove()
    for i in range(3):
        batched = [out[i, -1] if out.dim() == 3 else out[i] for out in seen]
        assert len(batched) == len(solo[i]) == 6
        for a, b in zip(solo[i], batched):
            assert (a - b).abs().max() < 1e-4  # a misplaced position gives ~3e-3 here


def test_rows_with_their_own_budgets_and_sampling_share_a_batch(batching, solo):
    from engine.reasoning.options import GenerationOptions

    sampled = GenerationOptions(max_new_tokens=30, temperature=1.2, top_p=0.9, seed=5)
    alone = list(batching.stream(clip_of(180, 6.0), sampled, score=False))[-1].token_ids
    with gathered(batching):
        short = batching.submit(clip_of(160, 2.0), max_new_tokens=7, score=False)
        greedy = batching.submit(clip_of(120, 4.0), max_new_tokens=40, score=False)
        sampling = batching.submit(clip_of(180, 6.0), sampled, score=False)
    dones = {name: list(batching.events(r))[-1] for name, r in
             (("short", short), ("greedy", greedy), ("sampling", sampling))}
    for r in (short, greedy, sampling):
        batching.release(r)
    assert {d.batch for d in dones.values()} == {3}
    assert dones["short"].token_ids == solo[160, 2.0][:7]
    assert dones["greedy"].token_ids == solo[120, 4.0]
    assert dones["sampling"].token_ids == alone  # its own generator: the others do not move it


def test_one_rows_failure_is_its_own(batching, monkeypatch):
    """Scoring one row fails: its caller hears why, the others get their scores."""
    import engine.reasoning.scheduler as scheduler
    from engine.reasoning.reasoner import GenerationError

    real = scheduler.score_labels
    victim = {}

    def flaky(model, inputs, text, tokenizer):
        if inputs is victim["inputs"]:
            raise RuntimeError("scoring broke (injected)")
        return real(model, inputs, text, tokenizer)

    monkeypatch.setattr(scheduler, "score_labels", flaky)
    with gathered(batching):
        requests = [batching.submit(clip_of(f0, s), max_new_tokens=5) for f0, s in CLIPS[:3]]
        victim["inputs"] = requests[1].inputs
    with pytest.raises(GenerationError, match="scoring broke"):
        list(batching.events(requests[1]))
    for i in (0, 2):
        events = list(batching.events(requests[i]))
        assert len(events[-2].scores) == 9 and events[-1].batch == 3
    for r in requests:
        batching.release(r)


def test_timings_are_when_tokens_were_made_not_when_read(batching):
    request = batching.submit(clip_of(160, 2.0), max_new_tokens=30, score=False)
    time.sleep(1.0)  # a caller that reads late
    done = list(batching.events(request))[-1]
    batching.release(request)
    assert done.ttft_s < 0.8 and done.tok_per_s > 20 and done.queued_s < 0.5


def test_a_batch_never_exceeds_the_widest_graph(tiny_model):
    from engine.reasoning.decoder import BATCH_SIZES

    wide = Reasoner(tiny_model, static_cache=True, max_batch=64)
    assert wide.scheduler.max_batch == BATCH_SIZES[-1]
    with pytest.raises(ValueError, match="max_batch"):
        Reasoner(tiny_model, static_cache=True, max_batch=0)


def test_why_a_row_ended_is_decided_when_it_ends(batching):
    """A row that ran out of budget stays "length" even if Stop is pressed before it is read."""
    stop = threading.Event()
    request = batching.submit(clip_of(160, 2.0), max_new_tokens=8, score=False, stop=stop)
    while not request.finished:
        time.sleep(0.01)
    stop.set()
    done = list(batching.events(request))[-1]
    batching.release(request)
    assert done.stop_reason == "length" and done.n_tokens == 8


def test_rows_of_a_batch_get_their_own_token_logprobs(batching, solo):
    """Log-probabilities asked by one row of a batch: one per token of its own, the greedy token
    the best of its alternatives (in bf16 within rounding: the teacher-forced forward and the
    decode steps round differently; tests/test_serve.py checks equality in fp32); the row that
    did not ask gets none."""
    (f0a, sa), (f0b, sb) = CLIPS[:2]
    with gathered(batching):
        asking = batching.submit(clip_of(f0a, sa), max_new_tokens=40, score=False, logprobs=3)
        silent = batching.submit(clip_of(f0b, sb), max_new_tokens=40, score=False)
    done = [list(batching.events(r))[-1] for r in (asking, silent)]
    for r in (asking, silent):
        batching.release(r)
    assert done[0].batch == 2 and done[0].token_ids == solo[f0a, sa]
    got = done[0].logprobs
    assert [t.token_id for t in got] == list(done[0].token_ids)
    assert all(len(t.top) == 3 and t.logprob >= t.top[0][1] - 0.1 and t.top[0][1] >= t.top[1][1] >= t.top[2][1]
               for t in got)
    assert sum(t.top[0][0] == t.token_id for t in got) >= 0.8 * len(got)
    assert done[1].logprobs == ()
    with pytest.raises(ValueError, match="0 to 20"):
        batching.submit(clip_of(f0a, sa), logprobs=21)


# --- continuous batching: arrivals join the running batch ----------------------------------------

def solo_tokens(reasoner, clip, max_new_tokens, **kw):
    done = list(reasoner.stream(clip, max_new_tokens=max_new_tokens, score=False, **kw))[-1]
    assert done.batch == 1
    return done.token_ids


def started(reasoner, clip, max_new_tokens, tokens=3):
    """A request submitted and decoding: `tokens` of its tokens were made."""
    request = reasoner.submit(clip, max_new_tokens=max_new_tokens, score=False)
    while len(request.tokens) < tokens:
        time.sleep(0.002)
    return request


def test_a_request_that_arrives_mid_batch_joins_it_and_writes_its_solo_tokens(batching):
    """The first request decodes alone (one row); a second arrives while it runs, is prefilled
    alone, joins (the batch widens to max_batch) and both write exactly their solo tokens."""
    first_clip, second_clip = clip_of(150, 1.0), clip_of(210, 1.0)
    alone = {c: solo_tokens(batching, c, n) for c, n in ((first_clip, 300), (second_clip, 30))}
    first = started(batching, first_clip, 300)
    second = batching.submit(second_clip, max_new_tokens=30, score=False)
    done_second = list(batching.events(second))[-1]
    done_first = list(batching.events(first))[-1]
    for r in (first, second):
        batching.release(r)
    assert done_second.batch == 2 and done_second.token_ids == alone[second_clip]
    assert second.t_admitted < first.t_last  # it joined while the first was decoding
    assert done_first.token_ids == alone[first_clip]  # the first was not disturbed by it


def test_a_row_that_ended_is_reused_by_the_next_arrival(tiny_model):
    two = Reasoner(tiny_model, static_cache=True, max_batch=2)
    clips = [clip_of(150, 1.0), clip_of(190, 1.0), clip_of(230, 1.0)]
    budgets = [400, 8, 20]
    sampled = dict(temperature=1.1, top_p=0.9, seed=11)  # the reused row samples from its own generator
    alone = [solo_tokens(two, clips[0], budgets[0]), solo_tokens(two, clips[1], budgets[1]),
             solo_tokens(two, clips[2], budgets[2], **sampled)]
    first = started(two, clips[0], budgets[0])
    second = two.submit(clips[1], max_new_tokens=budgets[1], score=False)
    while not second.finished:
        time.sleep(0.002)
    third = two.submit(clips[2], max_new_tokens=budgets[2], score=False, **sampled)
    dones = [list(two.events(r))[-1] for r in (first, second, third)]
    for r in (first, second, third):
        two.release(r)
    assert third.t_admitted < first.t_last  # it took the second's row, in the same batch
    assert [d.batch for d in dones] == [3, 2, 3]
    assert [d.token_ids for d in dones] == alone


def test_a_prompt_longer_than_the_running_batch_waits_for_the_next_batch(batching):
    """A clip whose prompt is longer than where the running batch stands cannot be placed in
    it: it waits, and is served alone when the batch ends."""
    short, long = clip_of(150, 1.0), clip_of(200, 8.0)
    budget = 150  # the running batch never reaches the long prompt's length
    assert batching.inputs(long)["input_ids"].shape[1] > batching.inputs(short)["input_ids"].shape[1] + budget
    alone = solo_tokens(batching, long, 20)
    first = started(batching, short, budget)
    waiting = batching.submit(long, max_new_tokens=20, score=False)
    dones = [list(batching.events(r))[-1] for r in (first, waiting)]
    for r in (first, waiting):
        batching.release(r)
    assert first.t_last > waiting.t_submit  # it did arrive while the batch was decoding
    assert dones[0].batch == 1 and dones[1].batch == 1
    assert waiting.t_admitted >= first.t_last and dones[1].token_ids == alone


@pytest.mark.parametrize("where", ["_prefill_into", "_widen"])
def test_a_joiner_that_fails_fails_alone(batching, monkeypatch, where):
    """Preparing a request that joins fails (out of memory in its prefill, or in the wider cache
    it needs): that caller hears why; the running request goes on to its solo tokens."""
    from engine.reasoning.decoder import Decoder
    from engine.reasoning.reasoner import GenerationError

    first_clip = clip_of(150, 1.0)
    alone = solo_tokens(batching, first_clip, 200)

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (injected)")

    monkeypatch.setattr(Decoder, where, broken)
    first = started(batching, first_clip, 200)
    joiner = batching.submit(clip_of(210, 1.0), max_new_tokens=20, score=False)
    with pytest.raises(GenerationError, match="out of memory"):
        list(batching.events(joiner))
    done = list(batching.events(first))[-1]
    for r in (first, joiner):
        batching.release(r)
    assert joiner.t_admitted < first.t_last and done.token_ids == alone


def test_a_wait_for_a_joiner_is_decoding_time_not_a_stall():
    from engine.reasoning.options import GenerationOptions
    from engine.reasoning.scheduler import Request

    def request_with(gaps, waited=()):
        r = Request(inputs=None, samples=None, options=GenerationOptions(), stop=None, score=False)
        r.gaps, r.waited = list(gaps), set(waited)
        return r

    gaps = [0.01] * 30 + [2.0]  # one long gap: the process stopped, or a joiner's prefill
    decoding, stalled = request_with(gaps).decode_time()
    assert stalled == pytest.approx(1.99) and decoding == pytest.approx(0.31)
    decoding, stalled = request_with(gaps, waited={30}).decode_time()
    assert stalled == 0 and decoding == pytest.approx(2.3)


def test_a_joined_row_computes_its_logits_as_alone(batching):
    """Every logit vector of a request that joins a running batch at a later position (its cache
    entries copied into a free row, left-padded to the batch's position, the batch widened from
    one row to four) equals its solo run's within 1e-4: positions, mask and copy right."""
    from engine.reasoning.decoder import Row
    from engine.reasoning.options import GenerationOptions

    model, decoder = batching.model, batching.decoder
    runner, joiner = batching.inputs(clip_of(150, 1.0)), batching.inputs(clip_of(220, 2.0))
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, a, out: seen.append(out.detach().float()))
    try:
        decoder.decode(joiner, GenerationOptions(max_new_tokens=6), emit=lambda t: None)
        alone = [out[0, -1] if out.dim() == 3 else out[0] for out in seen]
        seen.clear()
        joined_at = []

        def join(position, room, length):
            if joined_at or position < joiner["input_ids"].shape[1] + 5:
                return []
            joined_at.append(len(seen))
            return [(joiner, Row(GenerationOptions(max_new_tokens=6), lambda t: None))]

        decoder.decode_batch(runner, [Row(GenerationOptions(max_new_tokens=200), lambda t: None)],
                             join=join, widest=4)
    finally:
        hook.remove()
    assert joined_at, "the joiner never joined"
    prefill, *steps = seen[joined_at[0]:]
    assert prefill.dim() == 3 and all(s.shape[0] == 4 for s in steps[:5])  # widened to four rows
    joined = [prefill[0, -1]] + [s[1] for s in steps[:5]]  # it took row 1
    for a, b in zip(alone, joined, strict=True):
        assert (a - b).abs().max() < 1e-4  # a position off by one gives ~3e-3 here
