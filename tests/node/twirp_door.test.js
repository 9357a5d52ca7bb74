// LiveKit's Node server SDK (npm livekit-server-sdk, Twirp JSON in camelCase) against the
// gateway binary's Twirp door, with a caller key of its own: as a service would use the
// gateway after changing LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET.
//
// Run: npm install --prefix tests/node && node --test tests/node
// (the gateway binary is $EGRESS_PROXY_BIN, else target/debug/egress-proxy).

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  AccessToken,
  EgressClient,
  EncodedFileOutput,
  ImageOutput,
  SegmentedFileOutput,
  StartEgressRequest,
  StreamOutput,
  StreamProtocol,
  TwirpError,
} from 'livekit-server-sdk';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.EGRESS_PROXY_BIN ?? join(ROOT, 'target', 'debug', 'egress-proxy');
const SIM_BIN = process.env.EGRESS_SIM_BIN ?? join(ROOT, 'target', 'debug', 'egress-sim');
const SDK_KEY = 'APInodesdk';
const SDK_SECRET = 'node-sdk-secret-0123456789abcdefghij';
const ROOM = 'node-room';

let gateway;
let url;
let dir;

/** A policy file whose one caller is this SDK's key, allowed the `node-*` rooms. */
function callerPolicy(directory) {
  const secret = join(directory, 'sdk.secret');
  writeFileSync(secret, `${SDK_SECRET}\n`);
  const policy = join(directory, 'policy.toml');
  writeFileSync(
    policy,
    `[auth]
mode = "bearer"

[[callers]]
name = "node-sdk"
api_key = "${SDK_KEY}"
api_secret_file = "${secret}"
policy = "recording"

[policies.recording]
rpcs = ["*"]
rooms = ["node-*"]
`,
  );
  return policy;
}

/** The environment without the caller's LiveKit or gateway settings, plus `extra`. */
function cleanEnv(extra = {}) {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !k.startsWith('LIVEKIT_') && !k.startsWith('EGRESS_PROXY_'),
    ),
  );
  return { ...env, RUST_LOG: 'info', NO_COLOR: '1', ...extra };
}

/** Spawns `bin` and resolves `{ child, address }` once `pattern` matches its `stream`. */
function spawnReady(bin, args, env, stream, pattern) {
  const child = spawn(bin, args, {
    env,
    stdio: ['ignore', stream === 'stdout' ? 'pipe' : 'ignore', stream === 'stderr' ? 'pipe' : 'ignore'],
  });
  return new Promise((resolveReady, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`${bin} not ready:\n${log}`)), 30_000);
    child[stream].setEncoding('utf8');
    child[stream].on('data', (chunk) => {
      log += chunk;
      const ready = pattern.exec(log);
      if (ready) {
        clearTimeout(timer);
        resolveReady({ child, address: ready[1] });
      }
    });
    child.on('exit', (code) => reject(new Error(`${bin} exited ${code}:\n${log}`)));
  });
}

const GATEWAY_READY = /egress-proxy ready.*? listen=(\S+)/;

/** Starts the gateway (embedded simulator, a policy whose caller is this SDK's key). */
function startGateway() {
  dir = mkdtempSync(join(tmpdir(), 'twirp-door-node-'));
  return spawnReady(
    BIN,
    ['--dev', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policy-file', callerPolicy(dir)],
    cleanEnv(),
    'stderr',
    GATEWAY_READY,
  );
}

before(async () => {
  const started = await startGateway();
  gateway = started.child;
  url = `http://${started.address}`;
});

after(() => {
  gateway?.kill('SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const sdk = (secret = SDK_SECRET) =>
  new EgressClient(url, SDK_KEY, secret, { requestTimeout: 10 });

const rtmp = (u) => new StreamOutput({ protocol: StreamProtocol.RTMP, urls: [u] });

test('every egress method works through the gateway', async () => {
  const eg = sdk();
  const rc = await eg.startRoomCompositeEgress(
    ROOM,
    { stream: rtmp('rtmp://live.example.com/app/key') },
    { layout: 'grid' },
  );
  assert.match(rc.egressId, /^EG_/);
  assert.equal(rc.roomName, ROOM);

  const web = await eg.startWebEgress('https://example.com', {
    segments: new SegmentedFileOutput({ filenamePrefix: 'web' }),
  });
  const participant = await eg.startParticipantEgress(ROOM, 'carol', {
    file: new EncodedFileOutput({ filepath: 'carol.mp4' }),
  });
  const trackComposite = await eg.startTrackCompositeEgress(
    ROOM,
    { images: new ImageOutput({ filenamePrefix: 'img' }) },
    { videoTrackId: 'TR_v' },
  );
  const track = await eg.startTrackEgress(ROOM, 'wss://sink.example.com', 'TR_a');
  const unified = await eg.startEgress(
    new StartEgressRequest({
      roomName: ROOM,
      source: { case: 'template', value: { layout: 'speaker' } },
      outputs: [{ config: { case: 'stream', value: rtmp('rtmp://u.example.com/live/key') } }],
    }),
  );
  for (const info of [web, participant, trackComposite, track, unified]) {
    assert.match(info.egressId, /^EG_/);
  }

  await new Promise((r) => setTimeout(r, 600));
  const updated = await eg.updateLayout(rc.egressId, 'single-speaker');
  assert.equal(updated.request.value.layout, 'single-speaker');
  const streamed = await eg.updateStream(rc.egressId, ['rtmp://new.example.com/live']);
  assert.ok(streamed.streamResults.some((s) => s.url === 'rtmp://new.example.com/live'));

  const listed = await eg.listEgress({ roomName: ROOM });
  assert.ok(listed.some((i) => i.egressId === rc.egressId));
  const stopped = await eg.stopEgress(rc.egressId);
  assert.equal(stopped.egressId, rc.egressId);
});

test('a policy denial surfaces as the SDK surfaces LiveKit errors', async () => {
  await assert.rejects(
    sdk().startRoomCompositeEgress('finance', { stream: rtmp('rtmp://live.example.com/app/k') }),
    (err) => {
      assert.ok(err instanceof TwirpError, String(err));
      assert.equal(err.status, 403);
      assert.equal(err.code, 'permission_denied');
      assert.match(err.message, /policies\.recording\.rooms/);
      assert.equal(err.metadata.rule, 'policies.recording.rooms');
      return true;
    },
  );
  // LiveKit's own error, as LiveKit wrote it.
  await assert.rejects(sdk().stopEgress('EG_doesnotexist'), (err) => {
    assert.equal(err.status, 404);
    assert.equal(err.code, 'not_found');
    return true;
  });
});

test('a wrong secret is a plain-text 401', async () => {
  await assert.rejects(
    sdk('not-the-secret-but-just-as-long-0123456').listEgress({ roomName: ROOM }),
    (err) => {
      assert.ok(err instanceof TwirpError, String(err));
      assert.equal(err.status, 401);
      assert.equal(err.code, undefined);
      assert.match(err.message, /invalid token/);
      return true;
    },
  );
});

test('an expired token is a plain-text 401', async () => {
  // Minted with the SDK's own AccessToken, expired past LiveKit's minute of leeway.
  const mint = (ttl) => {
    const at = new AccessToken(SDK_KEY, SDK_SECRET, { ttl });
    at.addGrant({ roomRecord: true });
    return at.toJwt();
  };
  const post = async (token) =>
    fetch(`${url}/twirp/livekit.Egress/ListEgress`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ roomName: ROOM }),
    });
  const expired = await post(await mint('-2m'));
  assert.equal(expired.status, 401);
  assert.equal(await expired.text(), 'invalid token, error: token has expired');
  // The same grant, unexpired, is accepted: only the expiry was wrong.
  const fresh = await post(await mint('10m'));
  assert.equal(fresh.status, 200, await fresh.clone().text());
  assert.ok(Array.isArray((await fresh.json()).items));
});

test('a deadline ends a Start that LiveKit would hold', async () => {
  // No egress worker: LiveKit keeps a Start waiting about 20 s. The SDK sends no deadline
  // header, so the gateway's --upstream-timeout bounds the call.
  const key = 'APInodesim';
  const secret = 'node-sim-secret-0123456789abcdefghijkl';
  const sim = await spawnReady(
    SIM_BIN,
    ['--listen', '127.0.0.1:0', '--no-egress-workers'],
    cleanEnv({ LIVEKIT_API_KEY: key, LIVEKIT_API_SECRET: secret, RUST_LOG: 'warn' }),
    'stdout',
    /listening on (\S+)/,
  );
  const own = mkdtempSync(join(tmpdir(), 'twirp-door-node-deadline-'));
  let proxy;
  try {
    proxy = await spawnReady(
      BIN,
      ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--upstream-timeout', '400ms',
        '--policy-file', callerPolicy(own)],
      cleanEnv({ LIVEKIT_URL: sim.address, LIVEKIT_API_KEY: key, LIVEKIT_API_SECRET: secret }),
      'stderr',
      GATEWAY_READY,
    );
    const eg = new EgressClient(`http://${proxy.address}`, SDK_KEY, SDK_SECRET, { requestTimeout: 10 });
    const started = Date.now();
    await assert.rejects(
      eg.startRoomCompositeEgress(ROOM, { stream: rtmp('rtmp://live.example.com/app/k') }),
      (err) => {
        assert.ok(err instanceof TwirpError, String(err));
        assert.equal(err.status, 408);
        assert.equal(err.code, 'deadline_exceeded');
        return true;
      },
    );
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  } finally {
    proxy?.child.kill('SIGTERM');
    sim.child.kill('SIGTERM');
    rmSync(own, { recursive: true, force: true });
  }
});
