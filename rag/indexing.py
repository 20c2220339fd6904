"""Syncing the index with the sources folder: only what changed is chunked and embedded."""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import sources
from .chunking import chunk_text
from .settings import Settings
from .store import Generation, Store

log = logging.getLogger(__name__)

CHUNKER_VERSION = "s1"
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


def index_config(settings: Settings) -> dict[str, str]:
    """What an index depends on besides the sources; a change forces a rebuild."""
    from .embedding import embedder_id

    return {
        "embedder": embedder_id(settings.embedder),
        "chunking": f"{CHUNKER_VERSION}/{settings.chunk_tokens}/{settings.chunk_overlap}",
    }


def chunk_id(source: str, start: int, end: int, text: str) -> str:
    """Deterministic chunk id: the same chunk of the same file always gets the same id."""
    return hashlib.sha256(f"{source}\0{start}\0{end}\0{text}".encode()).hexdigest()[:32]


def indexed_files(gen: Generation) -> dict[str, dict]:
    """source -> the metadata of its first chunk (``sha256``, ``language``, ...) for every file in a generation."""
    got = gen.collection.get(where={"chunk": 0}, include=["metadatas"])
    return {m["source"]: m for m in got["metadatas"]}


def _nodes(article: sources.Article, settings: Settings):
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    view = sources.masked(article.text, article.kind)
    for n, ch in enumerate(chunk_text(article.text, settings.chunk_tokens, settings.chunk_overlap,
                                      start=article.body_start, view=view)):
        node = TextNode(
            id_=chunk_id(article.source, ch.start, ch.end, ch.text),
            text=ch.text,
            metadata={
                "source": article.source, "title": article.title, "date": article.date,
                "language": article.language, "start": ch.start, "end": ch.end,
                "chunk": n, "sha256": article.sha256, "kind": article.kind,
            },
        )
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=article.source)
        yield node, sources.plain(view[ch.start:ch.end], article.kind)


def _progress(total: int, desc: str, show: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", disable=not (sys.stderr.isatty() if show is None else show))


def sync(settings: Settings, rebuild: bool = False, progress: bool | None = None) -> SyncReport:
    """Bring the index in line with ``settings.sources``; ``rebuild`` starts from an empty index.

    Raises ``sources.SourceError`` for an unusable sources folder and ``store.IndexUnavailable``
    when the index cannot be written.
    """
    t0 = time.perf_counter()
    root = Path(settings.sources)
    files, skipped = sources.scan(root, int(settings.max_file_mb * 1e6))
    report = SyncReport(skipped=skipped)
    store = Store(settings)
    config = index_config(settings)

    with store.write_lock():
        old: dict[str, dict] = {}
        if rebuild:
            report.rebuilt = "asked for with --rebuild"
        elif store.exists():
            gen = store.reader()
            meta = gen.collection.metadata or {}
            changed = [k for k in config if meta.get(k) != config[k]]
            if changed:
                report.rebuilt = ", ".join(f"{k} changed ({meta.get(k)} -> {config[k]})" for k in changed)
                log.warning("rebuilding the whole index: %s", report.rebuilt)
            else:
                old = indexed_files(gen)

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

        if not todo and not drop and report.rebuilt is None and store.exists():
            report.chunks = store.reader().collection.count()
            report.seconds = round(time.perf_counter() - t0, 3)
            return report

        # only a sync that changes something pays for these imports
        from llama_index.vector_stores.chroma import ChromaVectorStore

        from .embedding import get_embedder
        from .retrieval import BM25

        embedder = get_embedder(settings.embedder)
        # retrieval skips its cross-language query on an index of one language
        languages = {m.get("language", "") for source, m in old.items() if source not in drop}
        languages |= {a.language for a in todo}
        synced = {**config, "synced_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "languages": ",".join(sorted(languages))}
        with store.new_generation(synced, fresh=report.rebuilt is not None) as gen:
            vs = ChromaVectorStore(chroma_collection=gen.collection)
            for source in sorted(drop):
                vs.delete(ref_doc_id=source)
            pairs = [p for a in todo for p in _nodes(a, settings)]
            with _progress(len(pairs), "embedding", progress) as bar:
                for i in range(0, len(pairs), BATCH):
                    batch = pairs[i:i + BATCH]
                    vectors = embedder.get_text_embedding_batch([t for _, t in batch])
                    for (node, _), vec in zip(batch, vectors):
                        node.embedding = vec
                    vs.add([node for node, _ in batch])
                    bar.update(len(batch))
            report.embedded = len(pairs)
            if gen.bm25_dir is not None:  # on a Chroma server BM25 is built in memory by readers that use it
                BM25.build(gen)
            report.chunks = gen.collection.count()
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
