"""Concurrent users share the model (engine.reasoning.scheduler): requests that wait together
decode together, each exactly as it would alone, each ending on its own; the line keeps arrival
order and tells each request its own place."""

import threading

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


def test_requests_that_wait_together_decode_together_each_as_alone(batching, solo):
    blocker, blocker_events = hold_the_model(batching)
    requests = [batching.submit(clip_of(f0, s), max_new_tokens=40) for f0, s in CLIPS]
    batching.release(blocker)
    list(blocker_events)
    for (f0, s), request in zip(CLIPS, requests):
        events = list(batching.events(request))
        batching.release(request)
        done = events[-1]
        assert isinstance(done, Done) and done.batch == 4 and done.decoder == "static"
        assert done.token_ids == solo[f0, s]  # exactly its solo run
        answer = events[-2]
        assert abs(sum(answer.scores.values()) - 1) < 1e-9  # its own nine scores


def test_one_rows_stop_ends_only_that_row(batching, solo):
    blocker, blocker_events = hold_the_model(batching)
    stop = threading.Event()
    requests = [batching.submit(clip_of(f0, s), max_new_tokens=40, score=False,
                                stop=stop if i == 2 else None) for i, (f0, s) in enumerate(CLIPS)]
    stop.set()  # the third user presses Stop before the batch starts its first token
    batching.release(blocker)
    list(blocker_events)
    dones = [list(batching.events(r))[-1] for r in requests]
    for r in requests:
        batching.release(r)
    assert dones[2].stop_reason == "stopped" and dones[2].n_tokens == 1
    for i in (0, 1, 3):
        assert dones[i].token_ids == solo[CLIPS[i]] and dones[i].batch == 4


def test_a_client_that_leaves_frees_its_row_and_the_others_go_on(batching, solo):
    blocker, blocker_events = hold_the_model(batching)
    requests = [batching.submit(clip_of(f0, s), max_new_tokens=40, score=False) for f0, s in CLIPS]
    batching.release(blocker)
    list(blocker_events)
    leaving = batching.events(requests[1])
    assert isinstance(next(leaving), TextDelta)
    leaving.close()
    batching.release(requests[1])  # what stream() and the app do when a client disconnects
    others = {i: list(batching.events(requests[i]))[-1] for i in (0, 2, 3)}
    for i, done in others.items():
        assert done.token_ids == solo[CLIPS[i]]
    assert len(requests[1].tokens) < 40  # its row stopped early
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
