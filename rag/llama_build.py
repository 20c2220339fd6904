"""The llama.cpp build: which instruction sets it is compiled for, and a check that it runs on this CPU.

llama-cpp-python builds llama.cpp from source, by default with ``-march=native``. On an Intel Xeon
with AMX that compiles ggml's AMX kernels, and the first answer then killed the whole process with
SIGILL (``tilezero`` in ``libggml-cpu.so``). ``install.sh`` therefore builds for a named
instruction set (``BUILDS``), and before the first generation in a process the local backend runs
``check`` on the installed build: a child process loads the model and evaluates a few tokens, and
a child that dies by a signal becomes ``LLMUnavailable`` with the command that rebuilds it. The
verdict is kept per installed build, model and CPU, so the child runs once, not on every start.

Standard library only: ``install.sh`` runs ``python3 -m rag.llama_build cmake-args BUILD`` before
anything else is installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

LLAMA_CPP_PYTHON = "0.3.36"  # the version pyproject.toml pins; install.sh builds it

_NO_AMX = ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
_AVX2 = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON"]
BUILDS: dict[str, list[str]] = {
    # x86-64 with AVX2 (Intel since Haswell, 2013; AMD since Excavator and every Zen): every AMD EPYC and
    # Intel Xeon the project runs on. The default.
    "portable": [*_AVX2, "-DGGML_AVX512=OFF", *_NO_AMX],
    # AVX-512 (F, BW, DQ, VL, VBMI, VNNI, BF16) but never AMX: AMD Zen 4 and later, Intel Xeon since Ice Lake.
    "avx512": [*_AVX2, "-DGGML_AVX512=ON", "-DGGML_AVX512_VBMI=ON", "-DGGML_AVX512_VNNI=ON",
               "-DGGML_AVX512_BF16=ON", *_NO_AMX],
}
PROBE_TIMEOUT = 300.0  # seconds for the child to load the model and evaluate (a loaded machine is slow)
# Signals that say the build cannot run here; SIGKILL/SIGTERM/SIGINT come from outside (OOM killer, user).
_BUILD_SIGNALS = {signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT}


def rebuild_command(build: str = "portable", python: str | None = None) -> str:
    """The shell command that reinstalls llama-cpp-python built for ``build`` into this environment."""
    args = " ".join(BUILDS[build])
    return (f'CMAKE_ARGS="{args}" {shlex.quote(python or sys.executable)} -m pip install --force-reinstall '
            f"--no-cache-dir --no-deps llama-cpp-python=={LLAMA_CPP_PYTHON}")


def library_files() -> list[Path]:
    """The shared libraries of the installed llama-cpp-python, found without importing it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return []
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return sorted(p for p in lib.glob("*.so*") if p.is_file() and not p.is_symlink()) if lib.is_dir() else []


def _cpu() -> str:
    """The CPU's model name and feature flags, as /proc/cpuinfo gives them."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    fields = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return f"{fields.get('model name', '?')} | {fields.get('flags', '')}"


def build_key(model: Path) -> str:
    """Identifies the installed llama.cpp build (its libraries' bytes), the model file and this CPU."""
    h = hashlib.sha256()
    for lib in library_files():
        h.update(lib.name.encode())
        h.update(hashlib.sha256(lib.read_bytes()).digest())
    st = model.stat()
    h.update(f"\0{model.resolve()}\0{st.st_size}\0{_cpu()}".encode())
    return h.hexdigest()[:24]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _message(signum: int) -> str:
    name = _signal_name(signum)
    what = ("an instruction this CPU does not have (SIGILL, illegal instruction)" if signum == signal.SIGILL
            else f"{name}")
    return (f"the installed llama.cpp cannot run on this CPU: a test evaluation of the model died with {what}; "
            f"rebuild it for a portable instruction set: {rebuild_command()}")


_UNKNOWN = object()  # the probe gave no verdict (it failed without a signal, or timed out)
# (cache, key) -> None (runs) or the error message: the verdicts this process has read or made
_checked: dict[tuple[Path, str], str | None] = {}


def check(model: Path, cache: Path, n_threads: int | None = None, command: list[str] | None = None) -> None:
    """Raise ``LLMUnavailable`` if the installed llama.cpp dies evaluating ``model`` on this CPU.

    Runs ``command`` (default: this module's probe child) once per installed build, model and CPU;
    the verdict is saved in ``cache`` and remembered for the process. A child that fails without a
    signal, or runs out of time, is logged and not held against the build: loading the model in
    this process will report whatever is wrong with it.
    """
    from .errors import LLMUnavailable

    key = build_key(model)
    if (cache, key) not in _checked:
        verdict = _verdict(key, model, cache, n_threads, command)
        if verdict is _UNKNOWN:
            return
        _checked[cache, key] = verdict
    if _checked[cache, key] is not None:
        raise LLMUnavailable(_checked[cache, key])


def _verdict(key: str, model: Path, cache: Path, n_threads: int | None, command: list[str] | None):
    """None (the build runs), an error message, or ``_UNKNOWN``."""
    saved = cache / f"{key}.json"
    try:
        data = json.loads(saved.read_text())
        return data.get("error")
    except (OSError, ValueError, AttributeError):
        pass
    cmd = command or [sys.executable, "-m", "rag.llama_build", "probe", str(model), str(n_threads or 0)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        log.warning("the llama.cpp probe did not finish in %.0f s; going on without its verdict", PROBE_TIMEOUT)
        return _UNKNOWN
    seconds = time.perf_counter() - t0
    if proc.returncode < 0 and -proc.returncode not in _BUILD_SIGNALS:
        log.warning("the llama.cpp probe was killed by %s; going on without its verdict",
                    _signal_name(-proc.returncode))
        return _UNKNOWN
    if proc.returncode > 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning("the llama.cpp probe failed (exit %d: %s); going on without its verdict", proc.returncode, last)
        return _UNKNOWN
    error = _message(-proc.returncode) if proc.returncode < 0 else None
    log.info("llama.cpp probe: %s in %.1f s", error or "runs", seconds)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = saved.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"error": error, "cpu": _cpu().split(" | ")[0], "model": str(model),
                                   "libraries": [str(p) for p in library_files()], "seconds": round(seconds, 2)}))
        os.replace(tmp, saved)
    except OSError as e:
        log.warning("cannot save the llama.cpp probe verdict in %s: %s", cache, e)
    return error


def _probe(model: str, n_threads: int) -> None:
    """The child: load the model and evaluate a batch (prefill kernels) and single tokens (generation)."""
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=256, n_batch=64, n_threads=n_threads or os.cpu_count(), verbose=False)
    tokens = llm.tokenize(b"The central bank raises its rate by a quarter of a percentage point, to 4 percent. " * 2)
    llm.eval(tokens)
    for _ in range(2):
        llm.eval([llm.sample(temp=0.0)])


def main(argv: list[str]) -> int:
    """``cmake-args BUILD`` prints the CMake flags of a build; ``probe MODEL THREADS`` is the check's child."""
    if len(argv) == 2 and argv[0] == "cmake-args" and argv[1] in BUILDS:
        print(" ".join(BUILDS[argv[1]]))
        return 0
    if len(argv) == 1 and argv[0] == "version":
        print(LLAMA_CPP_PYTHON)
        return 0
    if len(argv) == 3 and argv[0] == "probe":
        _probe(argv[1], int(argv[2]))
        return 0
    print(f"usage: python -m rag.llama_build cmake-args {{{','.join(BUILDS)}}} | version | probe MODEL THREADS",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
