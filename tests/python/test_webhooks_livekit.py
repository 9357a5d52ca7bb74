"""Webhooks checked against LiveKit's own Python SDK (PyPI ``livekit-api``), both ways:

* the simulator's webhooks pass ``livekit.api.WebhookReceiver`` (our signer agrees with
  LiveKit's verifier), and parse into ``livekit.protocol.webhook.WebhookEvent`` with the
  lifecycle LiveKit reports;
* the gateway's receiver (``--webhook-listen``) accepts a webhook signed by
  ``livekit.api.AccessToken(...).with_sha256(...)`` and refuses it with a tampered body (our
  verifier agrees with LiveKit's signer).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.protobuf.json_format import MessageToJson
from livekit import api
from livekit.protocol import egress, webhook

from proxy_harness import start_proxy


class Collector:
    """A loopback HTTP server that records every POST (path, lower-case headers, body) and
    answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with lock:
                    received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[str, dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(self.received)} of {count} webhooks arrived: {self.received}")
            time.sleep(0.02)
        return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def collector():
    c = Collector()
    yield c
    c.close()


def test_livekit_verifies_the_simulators_webhooks(sim_factory, collector):
    sim = sim_factory("--webhook-url", collector.url)

    async def scenario():
        async with api.LiveKitAPI(sim.url, sim.api_key, sim.api_secret) as lkapi:
            info = await lkapi.egress.start_room_composite_egress(
                egress.RoomCompositeEgressRequest(
                    room_name="py-hooks",
                    stream_outputs=[
                        egress.StreamOutput(
                            protocol=egress.StreamProtocol.RTMP,
                            urls=["rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl"],
                        )
                    ],
                )
            )
            # STARTING, then ACTIVE (the simulator's --activate-after-ms 200).
            await asyncio.to_thread(collector.wait_for, 2)
            await lkapi.egress.stop_egress(api.StopEgressRequest(egress_id=info.egress_id))
            return info

    info = asyncio.run(scenario())
    received = collector.wait_for(4)
    receiver = api.WebhookReceiver(api.TokenVerifier(sim.api_key, sim.api_secret))
    events = []
    for path, headers, body in received:
        assert path == "/hook"
        assert headers["content-type"] == "application/webhook+json"
        assert headers["user-agent"] == "LiveKit"
        # LiveKit's verifier, exactly as a LiveKit user's receiver calls it.
        event = receiver.receive(body.decode(), headers["authorization"])
        assert isinstance(event, webhook.WebhookEvent)
        events.append(event)
        # Redacted like the API's answers.
        assert b"abcd-efgh-ijkl" not in body

    assert [(e.event, e.egress_info.status) for e in events] == [
        ("egress_started", egress.EgressStatus.EGRESS_STARTING),
        ("egress_updated", egress.EgressStatus.EGRESS_ACTIVE),
        ("egress_updated", egress.EgressStatus.EGRESS_ENDING),
        ("egress_ended", egress.EgressStatus.EGRESS_COMPLETE),
    ]
    assert all(e.egress_info.egress_id == info.egress_id for e in events)
    assert all(e.room.name == "py-hooks" and e.room.sid == info.room_id for e in events)
    assert len({e.id for e in events}) == 4
    assert all(e.id.startswith("EV_") for e in events)
    assert all(abs(time.time() - e.created_at) < 60 for e in events)

    # A body changed after signing fails LiveKit's check.
    _, headers, body = received[0]
    with pytest.raises(Exception, match="hash mismatch"):
        receiver.receive(body.decode().replace("py-hooks", "py-other"), headers["authorization"])
    # Another secret fails it too.
    with pytest.raises(Exception):
        api.WebhookReceiver(api.TokenVerifier(sim.api_key, "not-the-secret")).receive(
            body.decode(), headers["authorization"]
        )

    # The simulator's log agrees.
    deliveries = sim.control("GET", "/sim/webhooks")
    assert [d["id"] for d in deliveries] == [e.id for e in events]
    assert all(d["outcome"] == "delivered" and d["http_status"] == 200 for d in deliveries)


def test_drop_webhook_fault_over_http(sim_factory, collector):
    sim = sim_factory("--webhook-url", collector.url)
    sim.add_faults({"kind": "drop_webhook", "event": "egress_started", "times": 1})

    async def scenario():
        async with api.LiveKitAPI(sim.url, sim.api_key, sim.api_secret) as lkapi:
            return await lkapi.egress.start_web_egress(
                egress.WebEgressRequest(
                    url="https://example.com",
                    file_outputs=[egress.EncodedFileOutput(filepath="x.mp4")],
                )
            )

    asyncio.run(scenario())
    received = collector.wait_for(1)
    receiver = api.WebhookReceiver(api.TokenVerifier(sim.api_key, sim.api_secret))
    first = receiver.receive(received[0][2].decode(), received[0][1]["authorization"])
    assert first.event == "egress_updated", "egress_started was dropped"
    deliveries = sim.control("GET", "/sim/webhooks")
    assert deliveries[0]["event"] == "egress_started"
    assert deliveries[0]["outcome"] == "dropped"
    assert deliveries[0]["fault"] == "drop_webhook"
    assert sim.control("GET", "/sim/faults") == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, authorization: str) -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/webhook+json")
    request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_gateway_accepts_webhooks_signed_by_livekit(sim):
    port = free_port()
    proxy = start_proxy(
        "--webhook-listen",
        f"127.0.0.1:{port}",
        env={
            "LIVEKIT_URL": sim.url,
            "LIVEKIT_API_KEY": sim.api_key,
            "LIVEKIT_API_SECRET": sim.api_secret,
        },
    )
    try:
        event = webhook.WebhookEvent(
            event="egress_started",
            id="EV_pytest000001",
            created_at=int(time.time()),
            egress_info=egress.EgressInfo(
                egress_id="EG_pytest000001",
                room_name="py-room",
                status=egress.EgressStatus.EGRESS_STARTING,
            ),
        )
        body = MessageToJson(event)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        token = api.AccessToken(sim.api_key, sim.api_secret).with_sha256(digest).to_jwt()
        url = f"http://127.0.0.1:{port}/webhook"

        assert post(url, body.encode(), token) == 200
        tampered = body.replace("EG_pytest000001", "EG_pytest000002")
        assert post(url, tampered.encode(), token) == 401
        # A token of another secret, over the right body.
        forged = api.AccessToken(sim.api_key, "not-the-secret").with_sha256(digest).to_jwt()
        assert post(url, body.encode(), forged) == 401

        admin = re.search(r" admin=(\S+)", proxy.log).group(1)
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'egress_proxy_events_received_total{source="webhook"} 1' in metrics, metrics
        assert 'egress_proxy_webhooks_rejected_total{reason="hash_mismatch"} 1' in metrics, metrics
        assert 'egress_proxy_webhooks_rejected_total{reason="bad_signature"} 1' in metrics, metrics
    finally:
        proxy.stop()
