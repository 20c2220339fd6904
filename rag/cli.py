"""The ``rag`` command: index, ask, eval, ui. A thin layer over ``rag.engine.Engine``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from pathlib import Path

from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PIPE_CLOSED, RagError


class CLIError(RagError):
    """A user error in the command line: printed as one line, exit code 2."""


def _global_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options (also RAG_SOURCES, RAG_INDEX, RAG_CHROMA_URL)")
    g.add_argument("--sources", metavar="DIR", help="folder of articles (default: seeds)")
    g.add_argument("--index", metavar="DIR", help="folder of the embedded index (default: index)")
    g.add_argument("--chroma-url", metavar="URL", help="use a Chroma server instead of the embedded index")
    g.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = argparse.ArgumentParser(prog="rag", description="Question answering over news articles, with citations.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", parents=[common], help="sync the index with the sources folder")
    p.add_argument("--rebuild", action="store_true", help="rebuild the index from scratch")
    p.add_argument("--json", action="store_true", help="print a JSON report last")

    p = sub.add_parser("ask", parents=[common], help="answer a question with cited sources")
    p.add_argument("question", help="the question, in English or Dutch")
    p.add_argument("-k", type=int, default=None, help="passages to retrieve (default: 4)")
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object last")

    p = sub.add_parser("eval", parents=[common], help="measure retrieval (and answers) on a SQuAD-format set")
    p.add_argument("contexts", type=Path, help="SQuAD JSON whose paragraphs are indexed")
    p.add_argument("--questions", type=Path, help="SQuAD JSON whose questions are asked (default: CONTEXTS)")
    p.add_argument("--limit", type=int, help="ask an evenly spread sample of N questions")
    p.add_argument("--k", type=int, default=4, help="passages retrieved per question for --answers (default 4)")
    p.add_argument("--answers", action="store_true", help="also measure answer accuracy of rag.answer")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object last")

    p = sub.add_parser("ui", parents=[common], help="start the chat UI")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    return parser


def _settings(args: argparse.Namespace, **extra):
    from pydantic import ValidationError

    from .settings import Settings

    overrides = {k: v for k, v in {
        "sources": args.sources, "index": args.index, "chroma_url": args.chroma_url, **extra,
    }.items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as e:
        err = e.errors()[0]
        raise CLIError(f"bad setting {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def cmd_index(args: argparse.Namespace) -> int:
    from .engine import Engine

    report = Engine(_settings(args)).sync(rebuild=args.rebuild)
    if report.rebuilt and not args.rebuild:
        print(f"rebuilding the whole index: {report.rebuilt}", file=sys.stderr)
    for s in report.skipped:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        print(f"{report.added} added, {report.updated} updated, {report.deleted} deleted, "
              f"{report.unchanged} unchanged; {report.embedded} chunks embedded, "
              f"{report.chunks} in the index ({report.seconds:.1f} s)")
    return 0


def _print_sources(passages, out) -> None:
    for i, p in enumerate(passages, 1):
        when = f", {p.date}" if p.date else ""
        print(f"[{i}] {p.source} - {p.title}{when} (characters {p.start}-{p.end})", file=out)
        quote = textwrap.shorten(" ".join(p.text.split()), 400, placeholder=" ...")
        print(textwrap.indent(textwrap.fill(f'"{quote}"', 96), "    "), file=out)


def cmd_ask(args: argparse.Namespace) -> int:
    from .answering import Answer, clean_question
    from .engine import Engine
    from .errors import LLMUnavailable

    engine = Engine(_settings(args))
    clean_question(args.question, engine.settings.question_budget)  # bad input fails before any work
    if not engine.settings.chroma_url and not engine.store.exists():
        print("no index yet: building it first", file=sys.stderr)
    engine.ensure_index()
    stream = not args.json and sys.stdout.isatty()
    result = None
    try:
        for result in engine.stream_answer(args.question, k=args.k):
            if stream and not isinstance(result, Answer):
                print(result, end="", flush=True)
    except LLMUnavailable as e:
        if args.json:
            print(json.dumps({"error": str(e), "passages": [p.as_json() for p in e.passages]}, ensure_ascii=False))
        else:
            print("Retrieved passages (no answer could be generated):")
            _print_sources(e.passages, sys.stdout)
        print(f"rag: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
        return 0
    if stream:
        print("\n")
    print(result.text if not stream or result.refused else f"Checked answer: {result.text}")
    for c in result.claims:
        if not c.supported:
            print(f"  (unsupported by the sources: {c.text})")
    if result.citations:
        print("\nSources:")
        _print_sources(result.citations, sys.stdout)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    try:
        result = evaluate(_settings(args), args.contexts, args.questions, limit=args.limit, k=args.k,
                          answers=args.answers)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from ui.app import launch

    launch(_settings(args, ui_host=args.host, ui_port=args.port))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rag`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handlers = {"index": cmd_index, "ask": cmd_ask, "eval": cmd_eval, "ui": cmd_ui}
    try:
        return handlers[args.command](args)
    except (RagError, FileNotFoundError) as e:
        print(f"rag: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`rag ask ... | head`): no traceback, no second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED


if __name__ == "__main__":
    sys.exit(main())
