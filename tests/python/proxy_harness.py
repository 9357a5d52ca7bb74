"""Starts the real egress-proxy binary for the Python tests and stops it afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROXY_BIN = Path(os.environ.get("EGRESS_PROXY_BIN", ROOT / "target" / "debug" / "egress-proxy"))
READY = re.compile(r"egress-proxy ready.*? listen=(\S+)")


@dataclass
class RunningProxy:
    process: subprocess.Popen
    address: str
    log_lines: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise
        return self.process.returncode


def start_proxy(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> RunningProxy:
    """Starts egress-proxy on 127.0.0.1:0 and waits for its readiness line."""
    if not PROXY_BIN.exists():
        raise RuntimeError(f"{PROXY_BIN} is missing: run `cargo build -p egress-proxy` first")
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LIVEKIT_") and not k.startswith("EGRESS_PROXY_")
    }
    environment.update({"RUST_LOG": "info", "NO_COLOR": "1"})
    environment.update(env or {})
    process = subprocess.Popen(
        [str(PROXY_BIN), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *args],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    proxy = RunningProxy(process=process, address="")
    ready = threading.Event()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            proxy.log_lines.append(line.rstrip("\n"))
            match = READY.search(line)
            if match and not ready.is_set():
                proxy.address = match.group(1)
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("egress-proxy did not become ready:\n" + proxy.log)
    return proxy
