"""The think/answer parser and label normalisation, on literal strings."""

import pytest

from engine.reasoning.parse import SYNONYMS, StreamParser, format_ok, normalize_label, parse
from engine.reasoning.prompts import LABELS


def stream(chunks):
    p = StreamParser()
    segments = [s for c in chunks for s in p.feed(c)] + p.finish()
    return segments, p.result()


def test_clean_output():
    r = parse("<think> The pitch rises sharply. </think><answer> surprise </answer>")
    assert r.think == "The pitch rises sharply." and r.answer == "surprise"
    assert r.label == "surprise" and r.format_ok and r.n_answers == 1 and r.other == ""


def test_tags_split_across_chunks_at_every_position():
    text = "<think>low and slow</think><answer>sad</answer>"
    for cut in range(1, len(text)):
        segments, r = stream([text[:cut], text[cut:]])
        assert r.think == "low and slow" and r.label == "sad" and r.format_ok, cut
        assert "".join(s.text for s in segments if s.kind == "think") == "low and slow"
        assert all("<" not in s.text for s in segments), cut


def test_one_character_at_a_time():
    text = "<think>a < b, yet </think> <answer>Happy.</answer>"
    segments, r = stream(list(text))
    assert r.think == "a < b, yet" and r.label == "happy"
    assert "".join(s.text for s in segments if s.kind == "think") == "a < b, yet "


def test_missing_closing_think_and_missing_closing_answer():
    r = parse("<think>trembling voice, rising pitch<answer> fear")
    assert r.think == "trembling voice, rising pitch" and r.answer == "fear" and r.label == "fear"
    assert not r.format_ok


def test_missing_opening_think_counts_as_reasoning():
    segments, r = stream(["The voice is loud and ", "sharp.</think><answer>anger</answer>"])
    assert r.think == "The voice is loud and sharp." and r.label == "angry"
    assert [s.kind for s in segments] == ["think", "think", "answer"]


def test_text_outside_tags_is_kept_apart_and_breaks_the_format():
    r = parse("Sure! <think>flat</think><answer>neutral</answer> Hope this helps.")
    assert r.label == "neutral" and not r.format_ok
    assert r.think == "Sure! flat"  # text before any tag is taken as reasoning
    assert r.other == "Hope this helps."


def test_several_answers_last_counts():
    r = parse("<think>hmm</think><answer>happy</answer><answer>surprise</answer>")
    assert r.n_answers == 2 and r.label == "surprise" and not r.format_ok


def test_no_answer_at_all():
    r = parse("<think>the reasoning was cut off because the token limit")
    assert r.answer is None and r.label is None and r.n_answers == 0


def test_capital_tags():
    assert parse("<THINK>x</THINK><Answer>Sad</Answer>").label == "sad"


@pytest.mark.parametrize("text,label", [
    ("disgust", "contempt"), ("Contempt or Disgust", "contempt"), ("disgusted.", "contempt"),
    ("anger", "angry"), ("ANGRY!", "angry"), ("happiness", "happy"), ("Joy", "happy"),
    ("sadness", "sad"), ("Surprised", "surprise"), ("fearful", "fear"), ("scared", "fear"),
    ("whispering", "whisper"), ("confusion", "confused"), ("neutral", "neutral"),
    ("The emotion expressed is sadness.", "sad"), ("  'happy'  ", "happy"),
    ("It is an angry clip", "angry"),
    ("bored", "unknown"), ("happy or sad", "unknown"), ("", "unknown"), ("!!!", "unknown"),
])
def test_label_normalisation(text, label):
    assert normalize_label(text) == label


def test_every_label_and_prompt_option_normalises_to_itself():
    assert set(SYNONYMS) == set(LABELS)
    for label in LABELS:
        assert normalize_label(label) == label
        assert normalize_label(label.upper() + ".") == label


@pytest.mark.parametrize("text,ok", [
    ("<think>a</think><answer>b</answer>", True),
    ("  <think>\na\n</think>\n<answer> b </answer>\n", True),
    ("<think>a</think>", False), ("<answer>b</answer>", False),
    ("x<think>a</think><answer>b</answer>", False),
    ("<think>a</think><answer>b</answer>y", False),
])
def test_format_check(text, ok):
    assert format_ok(text) is ok


def test_feed_after_finish_is_an_error():
    p = StreamParser()
    p.finish()
    with pytest.raises(RuntimeError):
        p.feed("x")
