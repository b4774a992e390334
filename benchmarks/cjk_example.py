"""Write a synthetic Chinese-like text: a large-alphabet example for charrnn (docs/results.md).

Usage: python benchmarks/cjk_example.py OUT_FILE [--seed 7] [--kb 450] [--alphabet 3000]

No network and no real corpus: the text is drawn from a seeded random generator (Python's own
``random.Random``), so the same arguments give the same file byte for byte. What it looks like:

    title line        2 to 4 characters, no punctuation
    four lines        all 5 or all 7 characters (one choice per poem), ending in ， 。 ， 。
    blank line        between poems

The characters are the first ``--alphabet`` CJK Unified Ideographs (U+4E00 onward), drawn with
Zipf-like weights (the r-th in a shuffled order weighs r^-0.8). There is something to learn beyond
how often each character occurs:

    words             a lexicon of 800 two-character words, themselves Zipf-like, fills most of
                      every line (the rest are single characters)
    rhyme             each poem picks one of 30 rhyme groups (8 common characters each); lines 2
                      and 4 end in a character of that group
    layout            line length and punctuation are fixed by the poem's first line

It prints the character count, the distinct-character count and the unigram entropy (the loss of
a model that knows only how often each character occurs), so that a trained model's loss can be
compared with it.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import Counter
from pathlib import Path

FIRST = 0x4E00  # CJK Unified Ideographs
ZIPF_EXPONENT = 0.8
LEXICON_SIZE = 800
RHYME_GROUPS, RHYME_GROUP_SIZE, RHYME_POOL = 30, 8, 400
WORD_SHARE = 0.6  # chance that a slot of two or more characters takes a word


def zipf_weights(n: int, exponent: float) -> list[float]:
    return [1.0 / (rank**exponent) for rank in range(1, n + 1)]


class PoemWriter:
    def __init__(self, seed: int, alphabet: int) -> None:
        self.rng = random.Random(seed)
        chars = [chr(FIRST + i) for i in range(alphabet)]
        self.rng.shuffle(chars)  # frequency rank is not code-point order
        self.chars = chars
        self.char_cum = _cumulative(zipf_weights(alphabet, ZIPF_EXPONENT))
        self.words = [self.char() + self.char() for _ in range(LEXICON_SIZE)]
        self.word_cum = _cumulative(zipf_weights(LEXICON_SIZE, 1.0))
        pool = self.chars[:RHYME_POOL]  # rhymes come from the common characters
        self.rhymes = [self.rng.sample(pool, RHYME_GROUP_SIZE) for _ in range(RHYME_GROUPS)]

    def char(self) -> str:
        return self.rng.choices(self.chars, cum_weights=self.char_cum)[0]

    def word(self) -> str:
        return self.rng.choices(self.words, cum_weights=self.word_cum)[0]

    def fill(self, length: int) -> str:
        """``length`` characters, mostly words, the rest single characters."""
        out = ""
        while len(out) < length:
            if length - len(out) >= 2 and self.rng.random() < WORD_SHARE:
                out += self.word()
            else:
                out += self.char()
        return out

    def poem(self) -> str:
        width = self.rng.choice((5, 7))
        group = self.rng.choice(self.rhymes)
        lines = [self.fill(self.rng.randint(2, 4))]  # the title
        for i, mark in enumerate("，。，。"):
            if i % 2:  # lines 2 and 4 rhyme
                body = self.fill(width - 1) + self.rng.choice(group)
            else:
                body = self.fill(width)
            lines.append(body + mark)
        return "\n".join(lines) + "\n"


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def unigram_entropy(counts: Counter, total: int) -> float:
    """Entropy of the character frequencies, in nats per character."""
    return -sum(c / total * math.log(c / total) for c in counts.values())


def unigram_cross_entropy(train: str, held_out: str) -> float:
    """Nats per character of ``held_out`` under ``train``'s character frequencies (add-one)."""
    counts = Counter(train)
    alphabet = set(train) | set(held_out)
    total = len(train) + len(alphabet)
    return -sum(math.log((counts[ch] + 1) / total) for ch in held_out) / len(held_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the text file to write (UTF-8)")
    parser.add_argument("--seed", type=int, default=7, help="same seed, same file")
    parser.add_argument("--kb", type=int, default=450, help="stop at this file size (1 KB = 1,000 bytes)")
    parser.add_argument("--alphabet", type=int, default=3000, help="how many CJK characters to draw from")
    args = parser.parse_args()

    writer = PoemWriter(args.seed, args.alphabet)
    poems, size = [], 0
    while size < args.kb * 1000:
        poem = writer.poem()
        poems.append(poem)
        size += len(poem.encode("utf-8")) + 1  # + the blank line
    text = "\n".join(poems)
    args.out.write_bytes(text.encode("utf-8"))

    counts = Counter(text)
    cjk = sum(1 for ch in counts if ord(ch) >= FIRST and ord(ch) < FIRST + args.alphabet)
    split = len(text) - len(text) // 10  # charrnn's default --val-frac 0.1 holds out the end
    h = unigram_entropy(counts, len(text))
    cross = unigram_cross_entropy(text[:split], text[split:])
    size = len(text.encode("utf-8"))
    print(f"wrote {args.out}: {len(poems):,} poems, {len(text):,} characters, {size:,} bytes")
    print(f"distinct characters: {len(counts):,} ({cjk:,} CJK ideographs, plus newline, ， and 。)")
    print(f"unigram entropy: {h:.4f} nats/char ({h / math.log(2):.4f} bits/char)")
    print(
        f"last 10% under the first 90%'s unigram frequencies: {cross:.4f} nats/char "
        f"({cross / math.log(2):.4f} bits/char)"
    )


if __name__ == "__main__":
    main()
