"""Near-duplicates: syndicated copies of one report, found at ingestion and collapsed at question time.

At ingestion each article body gets a MinHash signature over its word shingles (``SHINGLE`` words,
``NUM_PERM`` permutations, datasketch). An article whose estimated Jaccard similarity with an indexed
article (or an earlier one of the same sync) reaches ``THRESHOLD`` joins that article's story; the
story key is the source of its first copy (the earliest by date, then by name, within one sync). Every
chunk stores its ``story``; chunk 0 also stores the signature, so a later sync links a new copy by
reading the manifest it reads anyway (``records.indexed_files``), with no second pass over the index.

At question time a sentence of a passage is dropped when another passage of the same story (the
story's first copy first, then the better scored) holds the same sentence (the same words, or them
inside a longer one: a copy's dateline): copies take one evidence slot, and the citation names the
other files (``Citation.copies``). Sentences that differ between copies stay, so a
copy whose figure was changed still shows up, and as a disagreement (``rag.conflicts``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from .records import MINHASH, STORY, Passage

SHINGLE = 3  # words per shingle
NUM_PERM = 64  # permutations: the estimate's standard error is about 0.05 at J = 0.25
# Calibrated (README, "Near-duplicates") on the 2 seeds and 150 XQuAD paragraphs, each also as a copy with a
# new headline, "(Reuters) -", a byline footer and two words changed: copies 0.38-1.0 (exact Jaccard, 3-word
# shingles), the 11,476 pairs of different texts at most 0.02 (estimated: 0.05). 0.25 lies between, with
# room for the estimate's error on both sides.
THRESHOLD = 0.25
BANDS, ROWS = 32, 2  # LSH banding: a pair at J = 0.25 shares a band with probability 1 - (1 - 0.25**2)**32 = 0.87,
# at J = 0.4 with 0.995; a candidate pair is then checked on the whole signature

_WORD = re.compile(r"\w+", re.UNICODE)


def signature(text: str) -> np.ndarray:
    """The MinHash signature of ``text``'s word shingles (``NUM_PERM`` uint32 values)."""
    from datasketch import MinHash

    tokens = _WORD.findall(text.lower())
    shingles = {" ".join(tokens[i:i + SHINGLE]) for i in range(max(1, len(tokens) - SHINGLE + 1))}
    m = MinHash(num_perm=NUM_PERM)
    m.update_batch([s.encode() for s in shingles])
    return m.hashvalues.astype(np.uint32)  # datasketch keeps them below 2**32


def encode(sig: np.ndarray) -> str:
    """A signature as stored in chunk metadata (base64 of its uint32 values)."""
    return base64.b64encode(np.asarray(sig, dtype=np.uint32).tobytes()).decode("ascii")


def decode(raw: str) -> np.ndarray:
    """A stored signature read back."""
    return np.frombuffer(base64.b64decode(raw), dtype=np.uint32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The estimated Jaccard similarity of the shingle sets behind two signatures."""
    return float(np.mean(a == b))


class Stories:
    """The stories known so far: the indexed articles' signatures as one matrix (compared at once), those
    of the articles of this sync banded for lookup (a rebuild adds every article), each one's story key."""

    def __init__(self, indexed: dict[str, dict]) -> None:
        known = [(meta.get(STORY) or source, base64.b64decode(meta[MINHASH])) for source, meta in indexed.items()
                 if meta.get(MINHASH)]
        known = [(story, raw) for story, raw in known if len(raw) == 4 * NUM_PERM]  # other settings: not comparable
        self._stories = [story for story, _ in known]
        self._matrix = np.frombuffer(b"".join(raw for _, raw in known), dtype=np.uint32).reshape(len(known), NUM_PERM)
        self._bands: dict[tuple[int, bytes], list[str]] = {}
        self._sigs: dict[str, np.ndarray] = {}
        self.story: dict[str, str] = {}

    def add(self, source: str, sig: np.ndarray, story: str) -> None:
        self._sigs[source] = sig
        self.story[source] = story
        for b in range(BANDS):
            self._bands.setdefault((b, sig[b * ROWS:(b + 1) * ROWS].tobytes()), []).append(source)

    def match(self, sig: np.ndarray, threshold: float = THRESHOLD) -> str | None:
        """The story of the most similar known article, if it reaches ``threshold``."""
        best, story = 0.0, None
        if len(self._matrix):
            sims = (self._matrix == sig).mean(axis=1)  # 100k indexed articles: about 10 ms
            k = int(np.argmax(sims))
            best, story = float(sims[k]), self._stories[k]
        for s in {s for b in range(BANDS) for s in self._bands.get((b, sig[b * ROWS:(b + 1) * ROWS].tobytes()), [])}:
            if (sim := similarity(self._sigs[s], sig)) > best:
                best, story = sim, self.story[s]
        return story if best >= threshold else None


def assign(articles: Iterable[tuple[str, str, str]], indexed: dict[str, dict],
           threshold: float = THRESHOLD) -> dict[str, tuple[str, str]]:
    """source -> (story key, encoded signature) for new articles, given as (source, date, body text).

    ``indexed`` is the chunk-0 metadata of the articles that stay in the index: their stored signatures
    and stories are matched, and the new articles in order of date and name.
    """
    known = Stories(indexed)
    out = {}
    for source, _, text in sorted(articles, key=lambda a: (a[1] or "9999", a[0])):
        sig = signature(text)
        story = known.match(sig, threshold) or source
        known.add(source, sig, story)
        out[source] = (story, encode(sig))
    return out


def sentence_key(text: str) -> str:
    """What makes two sentences the same: their words, lower case."""
    return " ".join(_WORD.findall(text.lower()))


def _same(a: str, b: str) -> bool:
    """Whether two sentence keys are one sentence: equal, or the shorter (of 5 words or more) inside the other."""
    short, long_ = sorted((a, b), key=len)
    return bool(short) and (short == long_ or short.count(" ") >= 4 and short in long_)


def collapse(passages: list[Passage]) -> tuple[list[Passage], dict[tuple[str, int], list[str]]]:
    """The passages without the sentences that another passage of the same story holds too (the same
    words, or those words inside a longer sentence: a copy's dateline, "DEVENTER (ANP) - ...").

    The story's first copy keeps its sentences, then the better scored passage. Returns the passages
    (those left with no sentence dropped) and, for each kept sentence that had copies, (source, start)
    -> the other sources that hold it.
    """
    kept: dict[str, list[tuple[str, str, int]]] = {}  # story -> (sentence key, source, start) kept
    copies: dict[tuple[str, int], list[str]] = {}
    out: list[tuple[int, Passage]] = []
    ranked = sorted(enumerate(passages), key=lambda ip: (ip[1].source != (ip[1].story or ip[1].source), -ip[1].score))
    for i, p in ranked:
        if not p.sentences or p.sentence_vectors is None:
            out.append((i, p))
            continue
        same = kept.setdefault(p.story or p.source, [])
        keep = []
        for n, (a, b) in enumerate(p.sentences):
            key = sentence_key(p.text[a - p.start:b - p.start])
            first = next(((src, start) for k, src, start in same if src != p.source and _same(k, key)), None)
            if first is None:
                same.append((key, p.source, a))
                keep.append(n)
            elif p.source not in copies.setdefault(first, []):
                copies[first].append(p.source)
        if len(keep) == len(p.sentences):
            out.append((i, p))
        elif keep:
            out.append((i, replace(p, sentences=tuple(p.sentences[n] for n in keep),
                                   sentence_vectors=p.sentence_vectors[keep])))
    return [p for _, p in sorted(out, key=lambda ip: ip[0])], copies
