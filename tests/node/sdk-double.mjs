// Amplitude's official Node SDK (@amplitude/analytics-node, pinned in package-lock.json) sends a
// generated day of ampsim events to `ampsim amplitude-double`, which must ingest every event
// exactly once (issue 18, item 2). Run it with `bash tests/node/run.sh path/to/ampsim`.
//
// 1. `ampsim serve` (temporary database), then create, generate and `ampsim events` for one day:
//    the HTTP V2 JSON objects ampsim emits (the same as `export --format jsonl` and `upload`).
// 2. For each route of the double, /2/httpapi (the SDK's default) and /batch (`useBatch`), a
//    fresh `ampsim amplitude-double` with its default limits and a fresh SDK client:
//    `track(event)` with every whole event as a BaseEvent, then one `flush()`. The SDK talks to
//    the double through a transparent recording proxy (bodies and headers forwarded byte for
//    byte), so the test sees each request the SDK made and each answer of the double.
// 3. Checks: every track() result is 200; the double's GET /stats counts every event once
//    (events_ingested == generated, duplicates_ignored == 0, only 200 responses, one request
//    per SDK request); its GET /ingested (insert_id -> times ingested) holds exactly the
//    generated insert_ids, each once; the insert_ids it acknowledged are the same set;
//    each event arrived with every field ampsim gave it unchanged except those the SDK
//    overwrites (event_id, see below). On /batch, the same day is sent a second time through
//    a new client: the double must ignore all of it as duplicates (insert_id dedupe).
// 4. Prints what the SDK adds or changes, and one request (headers, top-level keys, one event).
//
// Rate limits: the double allows 30 events/s per device or user on /2/httpapi, averaged over
// 30 s of wall-clock time, so an id may send at most 900 events in any 30 s. The whole day is
// sent in a few seconds, so the /2/httpapi pass is only deterministic if no device or user has
// more than 900 events in the day: that is checked first, and the day chosen (busiest device
// under 100 events) is far below it. /batch (1,000 events/s, 30,000 per 30 s) is the route
// Amplitude documents for backfills such as this one. The double runs with its default limits
// on both routes (no --eps): the SDK's explicit flush() does not retry a 429, it drops the
// throttled events, so a limit hit would show as a failure here, never as a slow retry.
//
// Exits 0 when everything holds, 1 with the mismatches listed otherwise.

import { createInstance } from '@amplitude/analytics-node';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';

const SDK_VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/@amplitude/analytics-node/package.json', import.meta.url)),
).version;

// Seed 3 at scale 0.02 from 2025-01-06: 2025-01-20 has about 6,300 events, 2 of them purchases
// with revenue, and no device or user with more than 100 events.
const SEED = '3';
const SCALE = '0.02';
const START = '2025-01-06';
const DAYS = '15';
const DAY = '2025-01-20';
const API_KEY = 'ampsim-node-sdk-test-key';
// What the double allows an id on /2/httpapi within its 30 s window (30 events/s x 30 s).
const HTTP_V2_WINDOW_EVENTS = 900;
// Fields the SDK sets on every event whatever the event says (its context plugin).
const SDK_OVERWRITES = new Set(['event_id', 'library']);

const bin = path.resolve(process.argv[2] ?? 'target/release/ampsim');
const work = mkdtempSync(path.join(tmpdir(), 'ampsim-node-sdk.'));
const children = [];
const failures = [];

function fail(msg) {
  failures.push(msg);
  console.error(`FAIL: ${msg}`);
}

function ampsim(...args) {
  try {
    return execFileSync(bin, args, { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`ampsim ${args.join(' ')} exited ${e.status}:\n${e.stderr}`);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// SIGTERM, then waits for the exit (SIGKILL after 20 s).
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

function start(args, logName) {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  child.log = () => log;
  child.logName = logName;
  children.push(child);
  return child;
}

// Waits (at most 30 s) until `ready()` resolves true; the child must still be running.
async function waitReady(child, ready) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`${child.logName} exited ${child.exitCode}:\n${child.log()}`);
    }
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${child.logName} not ready after 30 s:\n${child.log()}`);
    await sleep(100);
  }
}

function getJson(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`GET ${url}: ${res.statusCode} ${body}`));
          else resolve(JSON.parse(body));
        });
      })
      .on('error', reject);
  });
}

// A transparent proxy in front of the double that keeps every request and answer.
async function recordingProxy(target) {
  const exchanges = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const up = http.request(
        { host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers },
        (ur) => {
          const rchunks = [];
          ur.on('data', (c) => rchunks.push(c));
          ur.on('end', () => {
            const rbody = Buffer.concat(rchunks);
            exchanges.push({ method: req.method, path: req.url, headers: req.headers, body, status: ur.statusCode, response: rbody.toString('utf8') });
            res.writeHead(ur.statusCode, ur.headers);
            res.end(rbody);
          });
        },
      );
      up.on('error', (e) => {
        exchanges.push({ method: req.method, path: req.url, headers: req.headers, body, status: 0, response: String(e) });
        res.destroy();
      });
      up.end(body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, exchanges, close: () => new Promise((r) => server.close(r)) };
}

async function startDouble() {
  const port = await freePort();
  const child = start(['amplitude-double', '--listen', `127.0.0.1:${port}`], 'ampsim amplitude-double');
  await waitReady(child, async () => (await getJson(`http://127.0.0.1:${port}/stats`)) !== null);
  return {
    port,
    child,
    stats: () => getJson(`http://127.0.0.1:${port}/stats`),
    ingested: () => getJson(`http://127.0.0.1:${port}/ingested`),
  };
}

// One SDK client sends every event (track, then one flush); returns the track() results.
async function sendThroughSdk(events, serverUrl, useBatch) {
  const client = createInstance();
  // flushIntervalMillis: only the explicit flush() below sends (no timer flush racing it).
  await client.init(API_KEY, { serverUrl, useBatch, flushIntervalMillis: 3_600_000, logLevel: 2 }).promise;
  const results = events.map((e) => client.track(structuredClone(e)).promise);
  await client.flush().promise;
  return Promise.all(results);
}

// A message cut to one line of at most 300 characters.
function short(text) {
  const t = String(text).replace(/\s+/g, ' ');
  return t.length > 300 ? `${t.slice(0, 300)}...` : t;
}

function count(map, key) {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function describeSdkChanges(byInsertId, sent) {
  const added = new Map();
  const changed = new Map();
  const dropped = new Map();
  for (const e of sent) {
    const o = byInsertId.get(e.insert_id);
    if (!o) continue;
    for (const k of Object.keys(e)) {
      if (!(k in o)) count(added, `${k}=${JSON.stringify(e[k])}`);
      else if (!isDeepStrictEqual(e[k], o[k])) count(changed, k);
    }
    for (const k of Object.keys(o)) if (!(k in e)) count(dropped, k);
  }
  return { added, changed, dropped };
}

async function runRoute(route, events, byInsertId) {
  const t0 = Date.now();
  const useBatch = route === '/batch';
  const double = await startDouble();
  const proxy = await recordingProxy(double.port);
  const serverUrl = `http://127.0.0.1:${proxy.port}${route}`;
  const label = `${route} (useBatch: ${useBatch})`;
  try {
    const results = await sendThroughSdk(events, serverUrl, useBatch);
    const codes = new Map();
    for (const r of results) count(codes, r.code);
    const not200 = results.filter((r) => r.code !== 200);
    if (not200.length > 0) {
      fail(
        `${label}: ${not200.length} of ${results.length} track() results are not 200 ` +
          `(codes: ${JSON.stringify(Object.fromEntries(codes))}), e.g. ${short(not200[0].message)}`,
      );
    }

    // What the double answered, request by request, and what it acknowledged.
    const acked = new Map();
    const sent = [];
    const badAnswers = [];
    for (const x of proxy.exchanges) {
      if (x.path !== route) badAnswers.push(`${x.method} ${x.path}: the SDK used another path`);
      if (x.status !== 200) badAnswers.push(`${x.method} ${x.path} -> ${x.status} ${short(x.response)}`);
      const req = JSON.parse(x.body.toString('utf8'));
      for (const e of req.events) {
        sent.push(e);
        if (x.status === 200) count(acked, e.insert_id);
      }
    }
    if (badAnswers.length > 0) {
      fail(`${label}: ${badAnswers.length} requests were refused, e.g.:\n  ${badAnswers.slice(0, 3).join('\n  ')}`);
    }
    const missing = [...byInsertId.keys()].filter((id) => !acked.has(id));
    const twice = [...acked].filter(([, n]) => n > 1);
    const extra = [...acked.keys()].filter((id) => !byInsertId.has(id));
    if (missing.length || twice.length || extra.length) {
      fail(
        `${label}: acknowledged insert_ids differ from the generated set: ${missing.length} missing ` +
          `(e.g. ${missing[0]}), ${twice.length} more than once, ${extra.length} not generated`,
      );
    }

    // The double's own counters.
    const stats = await double.stats();
    const want = { requests: proxy.exchanges.length, responses: { 200: proxy.exchanges.length }, events_ingested: events.length, duplicates_ignored: 0 };
    if (!isDeepStrictEqual(stats, want)) {
      fail(`${label}: GET /stats is ${JSON.stringify(stats)}, want ${JSON.stringify(want)}`);
    }
    // The double's own record: each generated insert_id ingested exactly once, no other.
    const ingested = await double.ingested();
    const ids = Object.keys(ingested);
    const notOnce = ids.filter((id) => ingested[id] !== 1);
    const unknown = ids.filter((id) => !byInsertId.has(id));
    if (ids.length !== byInsertId.size || notOnce.length || unknown.length) {
      fail(
        `${label}: GET /ingested has ${ids.length} insert_ids for ${byInsertId.size} generated, ` +
          `${notOnce.length} not ingested exactly once, ${unknown.length} not generated`,
      );
    }

    // The events as they arrived: ampsim's fields unchanged, except what the SDK overwrites.
    const changes = describeSdkChanges(byInsertId, sent);
    for (const [k, n] of changes.changed) {
      if (!SDK_OVERWRITES.has(k)) fail(`${label}: the SDK changed ${k} on ${n} events`);
    }
    for (const [k, n] of changes.dropped) fail(`${label}: the SDK dropped ${k} from ${n} events`);

    // The same day again through a new client: every event is a repeat of its insert_id.
    const sizes = proxy.exchanges.map((x) => JSON.parse(x.body).events.length);
    let again = null;
    if (useBatch) {
      const before = proxy.exchanges.length;
      const results2 = await sendThroughSdk(events, serverUrl, useBatch);
      const bad2 = results2.filter((r) => r.code !== 200).length;
      if (bad2 > 0) fail(`${label}, resent: ${bad2} track() results are not 200`);
      again = await double.stats();
      const requests = proxy.exchanges.length;
      const want2 = { requests, responses: { 200: requests }, events_ingested: events.length, duplicates_ignored: events.length };
      if (requests === before || !isDeepStrictEqual(again, want2)) {
        fail(`${label}, resent: GET /stats is ${JSON.stringify(again)}, want ${JSON.stringify(want2)}`);
      }
    }

    const first = proxy.exchanges[0];
    return { label, seconds: (Date.now() - t0) / 1000, stats, again, changes, first, sizes };
  } finally {
    await proxy.close();
    await stop(double.child);
  }
}

function printReport(r) {
  const per = [...new Set(r.sizes)].join(' or ');
  console.log(`\n== ${r.label}: ${r.sizes.length} requests of ${per} events, ${r.seconds.toFixed(1)} s`);
  console.log(`   double /stats: ${JSON.stringify(r.stats)}`);
  if (r.again) console.log(`   after resending the day: ${JSON.stringify(r.again)}`);
  const fmt = (m) => [...m].map(([k, n]) => `${k} (${n})`).join(', ') || 'none';
  console.log(`   SDK added: ${fmt(r.changes.added)}`);
  console.log(`   SDK changed: ${fmt(r.changes.changed)}`);
  console.log(`   SDK dropped: ${fmt(r.changes.dropped)}`);
  if (r.first) {
    const body = JSON.parse(r.first.body.toString('utf8'));
    const { events: evs, ...top } = body;
    console.log(`   one request: ${r.first.method} ${r.first.path}, headers ${JSON.stringify(r.first.headers)}`);
    console.log(`   top level (besides events): ${JSON.stringify(top)}`);
    console.log(`   events[0]: ${JSON.stringify(evs[0])}`);
  }
}

async function main() {
  const t0 = Date.now();
  console.log(`@amplitude/analytics-node ${SDK_VERSION}, ${bin}`);
  const port = await freePort();
  const server = `http://127.0.0.1:${port}`;
  const serve = start(['serve', '--listen', `127.0.0.1:${port}`, '--db', path.join(work, 'ampsim.db')], 'ampsim serve');
  await waitReady(serve, async () => {
    ampsim('list', '--server', server);
    return true;
  });
  ampsim('create', '--id', 'node', '--seed', SEED, '--start', START, '--scale', SCALE, '--server', server);
  ampsim('generate', '--simulation', 'node', '--days', DAYS, '--server', server);
  const lines = ampsim('events', '--simulation', 'node', '--from', DAY, '--to', DAY, '--server', server);
  const events = lines.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
  await stop(serve);

  // The day itself: enough events, unique insert_ids, revenue among them, within the limits.
  const byInsertId = new Map(events.map((e) => [e.insert_id, e]));
  const perId = new Map();
  for (const e of events) {
    if (e.device_id) count(perId, `device_id ${e.device_id}`);
    if (e.user_id) count(perId, `user_id ${e.user_id}`);
  }
  const [busiest, busiestN] = [...perId].sort((a, b) => b[1] - a[1])[0] ?? ['none', 0];
  const revenue = events.filter((e) => 'revenue' in e).length;
  console.log(`${DAY}: ${events.length} events, ${revenue} with revenue, busiest ${busiest} with ${busiestN}`);
  if (events.length < 3000) fail(`only ${events.length} events on ${DAY}`);
  if (byInsertId.size !== events.length || events.some((e) => typeof e.insert_id !== 'string')) {
    fail(`the generated insert_ids are not one distinct string per event (${byInsertId.size} of ${events.length})`);
  }
  if (revenue === 0) fail(`no revenue event on ${DAY}: pick another day`);
  if (busiestN > HTTP_V2_WINDOW_EVENTS) {
    fail(`${busiest} has ${busiestN} events, over the ${HTTP_V2_WINDOW_EVENTS} /2/httpapi allows in 30 s: pick another day`);
  }
  if (failures.length > 0) return;

  for (const route of ['/2/httpapi', '/batch']) printReport(await runRoute(route, events, byInsertId));
  console.log(`\ntotal ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

let code = 0;
try {
  await main();
} catch (e) {
  fail(e.stack ?? String(e));
} finally {
  for (const c of children) await stop(c);
  rmSync(work, { recursive: true, force: true });
}
if (failures.length > 0) {
  console.error(`\n${failures.length} failure(s):\n- ${failures.join('\n- ')}`);
  code = 1;
} else {
  console.log('OK: the Node SDK delivered every event and the double ingested each exactly once');
}
process.exit(code);
