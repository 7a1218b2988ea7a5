"""A real `vllm serve` for the vLLM CPU lane's tests (issue 24): started by the test, on a free 127.0.0.1 port, and
always stopped.

    with VLLMServer(lora_modules={"student": adapter_dir}) as server:   # waits for /health
        client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY")
        server.kill()    # SIGKILL of the whole process group (API server, engine core, worker): a crash
        server.start()   # the same port again

or the ``served`` fixture factory (``served(**kwargs)`` starts one; every server it started is stopped at the end of
the test, failed or not). The server runs in its own session (process group), with the CPU backend's settings the
in-process engine uses (``vllm_engine.cpu_engine_kwargs``: eager, float32, no chunked prefill, a bounded KV cache),
under the python of the vLLM CPU lane (``sys.executable`` when it imports vLLM, else ``VLLM_CPU_PYTHON``). Its log
is kept in a file and its tail is shown when it fails to start.

Starting one costs tens of seconds on the 2-core machine (see ``last_start_s``): tests share a server where they can.
The API key, when one is asked, reaches the server through ``VLLM_API_KEY`` (never its command line).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from prompt_distill.models import resolve_model

MODEL = "smollm2-135m-instruct"
VLLM_CPU_PYTHON = Path.home() / ".cache/prompt-distill/venv-vllm-cpu-4a64138e5ec9/bin/python"
START_TIMEOUT_S = 600
# The KV cache of a served CPU model (the in-process engine's CPU_KV_CACHE_GIB is 4; a test server needs less).
KV_CACHE_BYTES = 1 * 2**30
MAX_MODEL_LEN = 8192  # SmolLM2's own context


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_python() -> str:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return str(VLLM_CPU_PYTHON)
    return sys.executable


class ServerStartError(RuntimeError):
    pass


class VLLMServer:
    """One `vllm serve` process group on 127.0.0.1; ``start`` waits for /health, ``stop`` ends it (TERM, then
    KILL), ``kill`` ends it at once (a crash), ``start`` again reuses the port."""

    def __init__(self, model: str = MODEL, *, served_model_name: str | None = None, api_key: str | None = None,
                 lora_modules: dict[str, str] | None = None, max_lora_rank: int = 16,
                 reasoning_parser: str | None = None, max_model_len: int = MAX_MODEL_LEN,
                 kv_cache_bytes: int = KV_CACHE_BYTES, extra_args: tuple[str, ...] = (), port: int | None = None,
                 log_dir: str | Path | None = None, start_timeout_s: float = START_TIMEOUT_S):
        self.model_path = resolve_model(model)
        self.served_model_name = served_model_name or model
        self.api_key = api_key
        self.lora_modules = dict(lora_modules or {})
        self.max_lora_rank = max_lora_rank
        self.reasoning_parser = reasoning_parser
        self.max_model_len = max_model_len
        self.kv_cache_bytes = kv_cache_bytes
        self.extra_args = tuple(extra_args)
        self.port = port or free_port()
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="vllm-serve-"))
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.last_start_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        return self.log_dir / "vllm-serve.log"

    def command(self) -> list[str]:
        # `vllm serve MODEL` is this module's main (vllm/entrypoints/cli/serve.py runs it); the `vllm` command itself
        # cannot start under vllm-cpu, whose package is not named "vllm" (the CLI asks for vllm's version).
        argv = [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_path,
                "--served-model-name", self.served_model_name, "--host", "127.0.0.1", "--port", str(self.port),
                "--enforce-eager", "--dtype", "float32", "--no-enable-chunked-prefill",
                "--max-model-len", str(self.max_model_len),
                "--max-num-batched-tokens", str(max(self.max_model_len, 4096)),
                "--kv-cache-memory-bytes", str(self.kv_cache_bytes), "--enable-prompt-tokens-details"]
        if self.reasoning_parser:
            argv += ["--reasoning-parser", self.reasoning_parser]
        if self.lora_modules:
            argv += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank), "--max-loras", "1",
                     "--lora-modules", *(f"{name}={path}" for name, path in self.lora_modules.items())]
        return argv + list(self.extra_args)

    def environment(self) -> dict:
        env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONUNBUFFERED": "1", "VLLM_NO_USAGE_STATS": "1"}
        env.pop("VLLM_API_KEY", None)
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key
        return env

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> VLLMServer:
        if self.running():
            raise ServerStartError(f"vllm serve is already running on port {self.port}")
        started = time.perf_counter()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.environment(), start_new_session=True)
        finally:
            log.close()
        self.starts += 1
        try:
            while not self.healthy():
                if self.process.poll() is not None:
                    raise ServerStartError(f"vllm serve exited with {self.process.returncode} before it was healthy:"
                                           f"\n{self.log_tail()}")
                if time.perf_counter() - started > self.start_timeout_s:
                    raise ServerStartError(f"vllm serve was not healthy after {self.start_timeout_s:.0f} s:\n"
                                           f"{self.log_tail()}")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        self.last_start_s = time.perf_counter() - started
        return self

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the server's whole process group (its engine core and worker too), as a crash would."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=60)
        self._wait_group_gone()

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM to the group, SIGKILL after ``timeout_s``; returns once every process of the group is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout_s)
        self._signal_group(signal.SIGKILL)  # what is left of the group (the engine core, the worker)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=60)
        self._wait_group_gone()

    def _wait_group_gone(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                return
            self._signal_group(signal.SIGKILL)
            time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text("utf-8", errors="replace").splitlines()[-lines:])

    def __enter__(self) -> VLLMServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def serving(**kwargs):
    """``VLLMServer(**kwargs)`` started, and stopped when the block ends (an exception included)."""
    server = VLLMServer(**kwargs)
    try:
        yield server.start()
    finally:
        server.stop()


def _fixture(scope: str):
    import pytest

    @pytest.fixture(scope=scope)
    def factory(tmp_path_factory):
        """``served(**kwargs)`` starts a ``VLLMServer`` (logs under the test's temporary folder); every server it
        started is stopped when the fixture ends, whether the test passed or failed."""
        servers: list[VLLMServer] = []

        def start(**kwargs) -> VLLMServer:
            kwargs.setdefault("log_dir", tmp_path_factory.mktemp("vllm-serve"))
            server = VLLMServer(**kwargs)
            servers.append(server)
            return server.start()

        try:
            yield start
        finally:
            for server in servers:
                server.stop()

    return factory


served = _fixture("function")
served_module = _fixture("module")
