"""The ``rag`` command: index, ask, eval, ui, serve. A thin layer over ``rag.engine.Engine``.

Every subcommand takes every setting as a flag (``--context-budget 300``), over the ``RAG_*`` variables
and the defaults of ``rag.settings.Settings``. Exit codes (``rag.errors``): 0 done, 2 any error (one
line on stderr), 1 the reader of stdout went away, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Literal, NoReturn, get_args, get_origin

from pydantic import ValidationError

from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PIPE_CLOSED, RagError
from .settings import Settings, env_var, flag, shown_default


class CLIError(RagError):
    """A user error in the command line: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error convention: one line on stderr and exit code 2, no usage dump."""

    commands: dict[str, argparse.ArgumentParser]  # the subcommands' parsers, by name

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"rag: error: {message} (see `{self.prog} --help`)\n")


# The settings flags are generated from ``Settings.model_fields`` rather than made by pydantic-settings'
# ``CliSettingsSource``. Tried (2.16) on these argparse subcommands, it listed ``-k`` twice and ignored the
# ``--host``/``--port`` shortcuts, made the one-letter field ``k`` into ``-k`` only (``rag eval --k`` would
# break), printed ``Path`` and ``{str,null}`` as metavars, and dumped validation errors over several
# lines. Generated flags keep the existing names, and their values go through the one validation the
# ``RAG_*`` variables go through: pydantic, in ``Settings(**flags_given)``.
ALIASES = {"k": ["-k"]}  # extra option strings of a setting, in every subcommand
UI_ALIASES = {**ALIASES, "ui_host": ["--host"], "ui_port": ["--port"]}
SERVE_ALIASES = {**ALIASES, "serve_host": ["--host"], "serve_port": ["--port"]}


def _metavar(name: str, annotation: object) -> str:
    kind = next((a for a in get_args(annotation) if a is not type(None)), annotation)
    if name.endswith("_url"):
        return "URL"
    return {Path: "DIR", int: "N", float: "NUM", date: "YYYY-MM-DD"}.get(kind, "TEXT")


def add_settings_flags(parser: argparse.ArgumentParser, aliases: dict[str, list[str]] = ALIASES) -> None:
    """One flag per ``Settings`` field (``--context-budget N``), its help the field's description.

    A flag that is not given is absent from the parsed namespace, so the ``RAG_*`` variable or the
    default (stated once, in ``Settings``) applies.
    """
    group = parser.add_argument_group(
        "settings", "Every setting is a flag; a flag given wins over its RAG_* variable, which wins over the default.")
    for name, field in Settings.model_fields.items():
        help_ = f"{field.description} [{env_var(name)}; default: {shown_default(name)}]".replace("%", "%%")
        kwargs: dict = {"dest": name, "default": argparse.SUPPRESS, "help": help_}
        if field.annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(field.annotation) is Literal:
            kwargs["choices"] = get_args(field.annotation)
        else:
            kwargs["metavar"] = _metavar(name, field.annotation)
        group.add_argument(flag(name), *aliases.get(name, []), **kwargs)


def build_parser() -> Parser:
    """The ``rag`` command line: subcommands index, ask, eval, ui and serve, each with every setting as a flag."""
    common = Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser = Parser(prog="rag", description="Question answering over news articles, with citations.",
                    allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_: str, aliases: dict[str, list[str]] = ALIASES) -> argparse.ArgumentParser:
        # no abbreviations: with a flag per setting, `--chunk` or `--llm-t` would be ambiguous or change meaning
        p = sub.add_parser(name, parents=[common], help=help_, description=help_[0].upper() + help_[1:] + ".",
                           allow_abbrev=False)
        add_settings_flags(p, aliases)  # listed after the command's own options, whatever the order here
        return p

    p = command("index", "sync the index with the sources folder")
    p.add_argument("--rebuild", action="store_true", help="rebuild the index from scratch")
    p.add_argument("--json", action="store_true", help="print a JSON report last")

    p = command("ask", "answer a question with cited sources")
    p.add_argument("question", help="the question, in English or Dutch")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the answer as one JSON object last")
    output.add_argument("--markdown", action="store_true",
                        help="print the answer as Markdown: its text, then each cited sentence quoted with its file, "
                        "title, date and character range (the chat UI's Markdown download)")
    filters = p.add_argument_group("filters", "Answer only from some articles (a range named in the question, "
                                   "like 'last week', applies when neither date is given).")
    filters.add_argument("--since", metavar="YYYY-MM-DD", help="only articles published on or after this date")
    filters.add_argument("--until", metavar="YYYY-MM-DD", help="only articles published on or before this date")
    filters.add_argument("--outlet", metavar="NAME", help="only articles of this outlet (case does not matter)")
    filters.add_argument("--language", choices=("en", "nl"), help="only articles in this language")

    p = command("eval", "measure retrieval and answers (XQuAD, RGB, our questions)")
    p.add_argument("contexts", type=Path, help="SQuAD JSON whose paragraphs are indexed, RGB JSON lines, or a JSON "
                   "list of questions about the sources folder")
    p.add_argument("--questions", type=Path, help="SQuAD JSON whose questions are asked (default: CONTEXTS)")
    p.add_argument("--limit", type=int, help="ask an evenly spread sample of N questions")
    p.add_argument("--answers", action="store_true",
                   help="also measure answer accuracy of rag.answer (from --k passages)")
    p.add_argument("--ids", metavar="A-B",
                   help="RGB: only the questions with ids A to B (0-49 is the development half)")
    p.add_argument("--counterfactual", action="store_true",
                   help="RGB: measure how answers flag sources that disagree (positive and positive_wrong snippets) "
                   "and the false alarms where they agree")
    p.add_argument("--evidence-only", action="store_true",
                   help="with --counterfactual: detect on the evidence alone, without the LLM (fast)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object last")

    command("ui", "start the chat UI (and the OpenAI chat API under /v1)", UI_ALIASES)
    command("serve", "serve the OpenAI chat API (/v1/chat/completions) with citations, for any OpenAI client",
            SERVE_ALIASES)
    parser.commands = sub.choices
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """``Settings`` from the flags given, then the ``RAG_*`` variables, then the defaults."""
    given = {name: value for name, value in vars(args).items() if name in Settings.model_fields}
    try:
        return Settings(**given)  # pydantic-settings: init values win over the environment
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        where = flag(name) if name in given else env_var(name)
        reason = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        raise CLIError(f"bad value for {where}: {reason}") from None


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from .engine import Engine

    report = Engine(settings).sync(rebuild=args.rebuild)
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
    return EXIT_OK


def _print_sources(sources, out) -> None:
    """Each cited sentence (or retrieved passage), quoted, with its file, outlet, date and characters."""
    for i, p in enumerate(sources, 1):
        when = "".join(f", {x}" for x in (p.outlet, p.date) if x)
        print(f"[{i}] {p.source} - {p.title}{when} (characters {p.start}-{p.end})", file=out)
        if getattr(p, "copies", ()):  # a citation with syndicated copies of its article
            print(f"    also in {', '.join(p.copies)}", file=out)
        quote = textwrap.shorten(" ".join(p.text.split()), 400, placeholder=" ...")
        print(textwrap.indent(textwrap.fill(f'"{quote}"', 96), "    "), file=out)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from .answering import clean_question
    from .engine import Engine
    from .errors import LLMUnavailable
    from .filters import Filters

    engine = Engine(settings)
    clean_question(args.question, engine.settings.question_budget)  # bad input fails before any work
    filters = {"since": args.since, "until": args.until, "outlet": args.outlet, "language": args.language}
    Filters.of(**filters)
    if not engine.settings.chroma_url and not engine.store.exists():
        print("no index yet: building it first", file=sys.stderr)
    engine.ensure_index()
    stream = not (args.json or args.markdown) and sys.stdout.isatty()
    answer = engine.stream_answer(args.question, **filters)
    try:
        for piece in answer:
            if stream:
                print(piece, end="", flush=True)
    except LLMUnavailable as e:
        if args.json:
            print(json.dumps({"error": str(e), "passages": [p.as_json() for p in e.passages]}, ensure_ascii=False))
        else:
            print("Retrieved passages (no answer could be generated):")
            _print_sources(e.passages, sys.stdout)
        print(f"rag: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    result = answer.result()
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
        return EXIT_OK
    if args.markdown:
        from .export import export_markdown

        print(export_markdown([result]), end="")
        return EXIT_OK
    if stream:
        print("\n")
    print(result.text if not stream or result.refused else f"Checked answer: {result.text}")
    for c in result.claims:
        if not c.supported:
            print(f"  (unsupported by the sources: {c.text})")
    if result.note:
        print(f"({result.note})")
    if result.citations:
        print("\nSources:")
        _print_sources(result.citations, sys.stdout)
    return EXIT_OK


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from .evaluation import evaluate, evaluate_counterfactual

    ids = None
    if args.ids:
        m = re.fullmatch(r"(\d+)-(\d+)", args.ids)
        if not m:
            raise CLIError(f"--ids must be A-B, like 0-49, not {args.ids!r}")
        ids = range(int(m.group(1)), int(m.group(2)) + 1)
    try:
        if args.counterfactual:
            result = evaluate_counterfactual(settings, args.contexts, ids, args.limit, evidence_only=args.evidence_only)
        else:
            result = evaluate(settings, args.contexts, args.questions, limit=args.limit, answers=args.answers, ids=ids)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            if key != "questions":
                print(f"{key:>25}: {value}")
    return EXIT_OK


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    from ui.app import launch

    launch(settings)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .serve import serve

    serve(settings)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rag`` console script."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the subcommand, whose --help lists its flags
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handlers = {"index": cmd_index, "ask": cmd_ask, "eval": cmd_eval, "ui": cmd_ui, "serve": cmd_serve}
    try:
        return handlers[args.command](args, settings_from(args))
    except BrokenPipeError:  # the reader went away (`rag ask ... | head`): no traceback, no second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED
    except (RagError, OSError) as e:  # OSError: a missing file, a port in use, a full disk
        print(f"rag: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED

if __name__ == "__main__":
    sys.exit(main())
