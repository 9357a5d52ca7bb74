"""Shared fixtures for the Python tests: the `egress-sim` binary (LiveKit egress simulator).

Fixtures:

* ``sim`` — a simulator shared by the whole session, reset (egresses, faults, request log)
  before each test. Yields a :class:`Sim` with ``url``, ``api_key``, ``api_secret`` and helpers
  for the ``/sim/...`` control endpoints.
* ``sim_factory`` — starts extra simulators with their own flags, e.g.
  ``sim_factory("--prefix", "/lk", "--page-size", "2")``; all are stopped after the test.

The binary is ``$EGRESS_SIM_BIN`` if set; otherwise ``cargo build -p egress-sim`` is run
(a no-op when up to date) and ``$CARGO_TARGET_DIR`` (default ``<repo>/target``)
``/debug/egress-sim`` is used.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIM_API_KEY = "APIpytestkey"
SIM_API_SECRET = "pytest-secret-for-the-egress-simulator"
_STARTUP_TIMEOUT = 20.0


def sim_binary() -> Path:
    """Path of the egress-sim binary, building it first unless EGRESS_SIM_BIN is set."""
    explicit = os.environ.get("EGRESS_SIM_BIN")
    if explicit:
        path = Path(explicit)
        if not path.exists():
            raise RuntimeError(f"EGRESS_SIM_BIN={explicit} does not exist")
        return path
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    path = target / "debug" / "egress-sim"
    cargo = shutil.which("cargo")
    if cargo is not None:
        result = subprocess.run(
            [cargo, "build", "--quiet", "-p", "egress-sim", "--bin", "egress-sim"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if result.returncode != 0:
            raise RuntimeError(f"cargo build -p egress-sim failed:\n{result.stderr}")
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `cargo build -p egress-sim` first")
    return path


@dataclass
class Sim:
    """A running egress-sim process."""

    process: subprocess.Popen
    url: str
    api_key: str = SIM_API_KEY
    api_secret: str = SIM_API_SECRET
    stderr_path: Optional[Path] = None
    args: tuple = field(default_factory=tuple)

    # -- control endpoints -------------------------------------------------------------

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Calls a ``/sim/...`` endpoint; returns the decoded JSON answer (or text)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            if response.headers.get_content_type() == "application/json":
                return json.loads(raw)
            return raw.decode()

    def reset(self) -> None:
        """Forgets egresses, faults and recorded requests."""
        self.control("POST", "/sim/reset")

    def add_faults(self, *faults: dict) -> None:
        """Arms faults (see crates/egress-sim/README.md for the JSON format)."""
        self.control("POST", "/sim/faults", list(faults))

    def clear_faults(self) -> None:
        self.control("DELETE", "/sim/faults")

    def requests(self) -> list:
        """The request log: method, path, rpc, content_type, headers (authorization replaced
        by the token's claims JSON), claims, body (base64), fault, received_at_ms."""
        return self.control("GET", "/sim/requests")

    def egresses(self) -> list:
        return self.control("GET", "/sim/egresses").get("items", [])

    def fail_egress(self, egress_id: str, error: str = "simulated failure") -> dict:
        return self.control("POST", f"/sim/egresses/{egress_id}/fail", {"error": error})

    # -- lifecycle ---------------------------------------------------------------------

    def stderr(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def start_sim(
    *args: str,
    activate_after_ms: int = 200,
    complete_after_ms: int = 100,
    gone_worker_delay_ms: int = 200,
) -> Sim:
    """Starts egress-sim on a free loopback port and waits until it answers.

    ``gone_worker_delay_ms`` shortens LiveKit's 3 s wait before StopEgress / UpdateStream on
    an egress without a worker (unknown or ended) answer from the store."""
    binary = sim_binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    env.update(
        {
            "LIVEKIT_API_KEY": SIM_API_KEY,
            "LIVEKIT_API_SECRET": SIM_API_SECRET,
            "RUST_LOG": env.get("RUST_LOG", "warn"),
        }
    )
    stderr_file = tempfile.NamedTemporaryFile(prefix="egress-sim-", suffix=".log", delete=False)
    command = [
        str(binary),
        "--listen",
        "127.0.0.1:0",
        "--activate-after-ms",
        str(activate_after_ms),
        "--complete-after-ms",
        str(complete_after_ms),
        "--gone-worker-delay",
        f"{gone_worker_delay_ms}ms",
        *args,
    ]
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
    )
    stderr_file.close()
    sim = Sim(process=process, url="", stderr_path=Path(stderr_file.name), args=args)

    # The first stdout line is "egress-sim listening on http://127.0.0.1:PORT".
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    line = b""
    assert process.stdout is not None
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            sim.stop()
            raise RuntimeError(f"egress-sim did not start ({command}):\n{sim.stderr()}")
        ready, _, _ = select.select([process.stdout], [], [], min(remaining, 0.2))
        if ready:
            chunk = os.read(process.stdout.fileno(), 1)
            if not chunk:
                continue
            line += chunk
    sim.url = line.decode().strip().rsplit(" ", 1)[-1]

    while True:
        try:
            if sim.control("GET", "/sim/health") == "ok":
                return sim
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            sim.stop()
            raise RuntimeError(f"egress-sim at {sim.url} never became healthy:\n{sim.stderr()}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def sim_session() -> Iterator[Sim]:
    sim = start_sim()
    yield sim
    sim.stop()


@pytest.fixture()
def sim(sim_session: Sim) -> Iterator[Sim]:
    """The session's simulator, reset before the test."""
    if sim_session.process.poll() is not None:
        pytest.fail(f"egress-sim exited early:\n{sim_session.stderr()}")
    sim_session.reset()
    yield sim_session


@pytest.fixture()
def sim_factory() -> Iterator[Callable[..., Sim]]:
    """Starts simulators with extra command-line flags; stops them after the test."""
    started: list = []

    def factory(*args: str, **kwargs: int) -> Sim:
        sim = start_sim(*args, **kwargs)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()
