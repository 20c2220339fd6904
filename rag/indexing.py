"""Syncing the index with the sources folder: only what changed is chunked and embedded."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import sources, stories
from .chunking import chunk_text, sentence_spans
from .records import (
    MINHASH,
    SOURCE,
    STORY,
    Record,
    chunk_record,
    index_metadata,
    index_mismatches,
    indexed_files,
    sentence_metadata,
)
from .settings import Settings
from .store import Store, open_store

log = logging.getLogger(__name__)

BATCH = 64  # chunks embedded and written per step


@dataclass
class SyncReport:
    """What a sync did. ``embedded`` counts chunks sent to the embedder; ``chunks`` is the index size after."""

    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    embedded: int = 0
    chunks: int = 0
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    rebuilt: str | None = None  # why the whole index was rebuilt, if it was

    def as_json(self) -> dict:
        d = asdict(self)
        d.pop("rebuilt")
        return d


def article_chunks(article: sources.Article, settings: Settings
                   ) -> Iterator[tuple[Record, str, list[tuple[tuple[int, int], str]]]]:
    """The records of an article's chunks, each with the text the embedder gets (HTML markup blanked)
    and its sentences: (span in the article, text to embed)."""
    view = sources.masked(article.text, article.kind)
    for n, ch in enumerate(chunk_text(article.text, settings.chunk_tokens, settings.chunk_overlap,
                                      start=article.body_start, view=view)):
        sentences = [((a, b), sources.plain(view[a:b], article.kind))
                     for a, b in sentence_spans(view, ch.start, ch.end)]
        yield (chunk_record(article, ch.start, ch.end, n), sources.plain(view[ch.start:ch.end], article.kind),
               [s for s in sentences if s[1]])


def link_stories(todo: list[sources.Article], kept: dict[str, dict], records: list[Record]) -> None:
    """Store each new article's story key on its chunks and its signature on chunk 0 (``rag.stories``);
    ``kept`` is the chunk-0 metadata of the indexed articles that stay."""
    if not todo:  # a sync that only deletes reads no signature
        return
    bodies = [(a.source, a.date, sources.plain(sources.masked(a.text[a.body_start:], a.kind), a.kind)) for a in todo]
    found = stories.assign(bodies, kept)
    for r in records:
        story, sig = found[r.metadata[SOURCE]]
        r.metadata[STORY] = story
        if r.metadata["chunk"] == 0:
            r.metadata[MINHASH] = sig


def _progress(total: int, desc: str, show: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", disable=not (sys.stderr.isatty() if show is None else show))


def sync(settings: Settings, rebuild: bool = False, progress: bool | None = None,
         store: Store | None = None) -> SyncReport:
    """Bring the index in line with ``settings.sources``; ``rebuild`` starts from an empty index.

    ``store`` is the index to write (an engine passes its own; default: the one ``settings`` name).

    Raises ``sources.SourceError`` for an unusable sources folder and ``IndexUnavailable``
    when the index cannot be written.
    """
    t0 = time.perf_counter()
    root = Path(settings.sources)
    files, skipped = sources.scan(root, int(settings.max_file_mb * 1e6))
    report = SyncReport(skipped=skipped)
    store = store or open_store(settings)

    with store.write_lock():
        old: dict[str, dict] = {}
        live = None
        if rebuild:
            report.rebuilt = "asked for with --rebuild"
        elif store.exists():
            live = store.live()
            changed = index_mismatches(live.metadata, settings)
            if changed:
                report.rebuilt = ", ".join(m.change() for m in changed)
                log.warning("rebuilding the whole index: %s", report.rebuilt)
            else:
                old = indexed_files(live)

        unreadable = {s["path"] for s in skipped if s["reason"].startswith("unreadable")}
        todo: list[sources.Article] = []
        drop: set[str] = set()  # sources whose old chunks go
        for f in files:
            if old.get(f.source, {}).get("sha256") == f.sha256:
                report.unchanged += 1
                continue
            try:
                article = sources.load(root, f.source, f.data)
            except (ValueError, UnicodeError, OSError) as e:
                report.skipped.append({"path": f.source, "reason": str(e)})
                if f.source in old:  # it is no longer an article
                    drop.add(f.source)
                    report.deleted += 1
                continue
            todo.append(article)
            if f.source in old:
                drop.add(f.source)
                report.updated += 1
            else:
                report.added += 1
        # a file that is only unreadable right now keeps its chunks
        on_disk = {f.source for f in files} | unreadable
        for source in old.keys() - on_disk:
            drop.add(source)
            report.deleted += 1

        if not todo and not drop and report.rebuilt is None and live is not None:
            report.chunks = live.count()
            report.seconds = round(time.perf_counter() - t0, 3)
            return report

        from .embedding import get_embedder  # only a sync that changes something loads the embedder

        embedder = get_embedder(settings.embedder)
        # retrieval skips its cross-language query on an index of one language
        languages = {m.get("language", "") for source, m in old.items() if source not in drop}
        languages |= {a.language for a in todo}
        synced = index_metadata(settings, languages, datetime.now(UTC).isoformat(timespec="seconds"))
        pairs = [p for a in todo for p in article_chunks(a, settings)]
        link_stories(todo, {s: m for s, m in old.items() if s not in drop}, [r for r, _, _ in pairs])
        with store.new_snapshot(synced, fresh=report.rebuilt is not None, adding=len(pairs)) as writer:
            writer.drop(drop)
            with _progress(len(pairs), "embedding", progress) as bar:
                for i in range(0, len(pairs), BATCH):
                    batch = pairs[i:i + BATCH]
                    texts = [t for _, t, _ in batch] + [s for _, _, sents in batch for _, s in sents]
                    vectors = embedder.get_text_embedding_batch(texts)
                    rest = len(batch)
                    for (record, _, sents) in batch:
                        record.metadata.update(sentence_metadata([span for span, _ in sents],
                                                                 vectors[rest:rest + len(sents)]))
                        rest += len(sents)
                    writer.add([r.id for r, _, _ in batch], vectors[:len(batch)], [r.document for r, _, _ in batch],
                               [r.metadata for r, _, _ in batch])
                    bar.update(len(batch))
            report.embedded = len(pairs)
            report.chunks = writer.count()
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
