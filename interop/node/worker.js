#!/usr/bin/env node
// worker.js drives the real Node library redis-reservation@0.4.0 against a
// real Redis so that Go tests can check that Go and Node workers exclude each
// other. It prints one JSON object per line on stdout for every event, each
// with "t", the time in milliseconds since the Unix epoch (Date.now()). The
// library's own logs (kayvee) and the redis client's warnings go to stderr.
//
// Usage:
//   node worker.js lock RESOURCE HOLD_MS [flags]   lock once; if acquired, hold then release
//   node worker.js wait RESOURCE HOLD_MS [flags]   wait_until_lock, hold, then release
//
// HOLD_MS is how long to hold after the library said the lock is ours; -1
// holds until stdin gets a line or reaches EOF (the Go helper closes stdin
// with Proc.Release), or until SIGTERM/SIGINT.
//
// Flags (each also read from the environment; flags win):
//   --by=NAME          WORKER_BY        worker name (default "node-worker")
//   --ttl=SECONDS      LOCK_TTL         lock_ttl in whole seconds (default 5)
//   --heartbeat=MS     HEARTBEAT_MS     heartbeat_interval in ms (default 1000)
//   --job-id=ID        JOB_ID           the library's holder id (default: the pid)
//   --no-release                        skip release() after holding (exits with the key still set)
// Redis: REDIS_HOST (default 127.0.0.1), REDIS_PORT (default 6379),
// REDIS_PASSWORD (default none).
//
// Events (field "event"):
//   start        {mode, resource, key, value, by, ttl_s, heartbeat_ms, pid}
//   lock         {status, error?}      every lock() attempt, when its callback runs;
//                                      in wait mode these are wait_until_lock's polls
//   acquired     {key}                 the moment lock() reported true (the key was set
//                                      one round trip earlier)
//   wait_done    {reply, key, error?}  wait_until_lock's callback (up to 1 s after acquired)
//   releasing    {}                    release() is called
//   released     {reply, error?}       release()'s callback; reply is DEL's count or true
//   not_acquired {}                    lock mode: someone else holds it
//   uncaught     {error, lost, after_release?}
//                                      an exception escaped (the library throws from
//                                      its heartbeat timer when it loses the lock, and on
//                                      the first redis connection error); exit code 1.
//                                      With after_release it came after a successful
//                                      release (a heartbeat racing release(); see
//                                      README.md) and the exit code is unchanged.
//   signal       {signal}              SIGTERM/SIGINT received
//   exit         {code}                just before exiting
//
// Exit codes: 0 acquired and (unless --no-release) released; 1 uncaught
// exception or error from the library; 2 bad usage; 3 lock mode, not acquired.
'use strict';

const ReserveResource = require('redis-reservation');

function emit(event, fields) {
  const o = Object.assign({ event }, fields || {}, { t: Date.now() });
  process.stdout.write(JSON.stringify(o) + '\n');
}

function usage(msg) {
  process.stderr.write('worker.js: ' + msg + '\n' +
    'usage: node worker.js (lock|wait) RESOURCE HOLD_MS [--by=NAME] [--ttl=SECONDS] ' +
    '[--heartbeat=MS] [--job-id=ID] [--no-release]\n');
  process.exit(2);
}

function errString(err) {
  if (err == null) return undefined;
  return err && err.message ? err.message : String(err);
}

const positional = [];
const flags = {};
for (const a of process.argv.slice(2)) {
  const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
  if (m) flags[m[1]] = m[2] === undefined ? true : m[2];
  else positional.push(a);
}
if (positional.length !== 3) usage('want 3 arguments, got ' + positional.length);
const [mode, resource, holdArg] = positional;
if (mode !== 'lock' && mode !== 'wait') usage('unknown mode ' + JSON.stringify(mode));
if (resource === '') usage('empty resource');
const holdMs = Number(holdArg);
if (!Number.isInteger(holdMs) || holdMs < -1) usage('HOLD_MS must be an integer >= -1');

for (const f of Object.keys(flags)) {
  if (!['by', 'ttl', 'heartbeat', 'job-id', 'no-release'].includes(f)) usage('unknown flag --' + f);
}

const by = flags.by || process.env.WORKER_BY || 'node-worker';
const ttl = Number(flags.ttl || process.env.LOCK_TTL || 5);
const heartbeat = Number(flags.heartbeat || process.env.HEARTBEAT_MS || 1000);
if (!Number.isInteger(ttl) || ttl < 1) usage('ttl must be a whole number of seconds >= 1');
if (!Number.isInteger(heartbeat) || heartbeat < 1) usage('heartbeat must be an integer >= 1 ms');
if (flags['job-id']) process.env.JOB_ID = flags['job-id'];
const noRelease = flags['no-release'] === true;

const host = process.env.REDIS_HOST || '127.0.0.1';
const port = Number(process.env.REDIS_PORT || 6379);
const password = process.env.REDIS_PASSWORD || '';

// The constructor's 6th argument is `metadata` (merged into the log lines),
// not a logger as the README says.
const r = new ReserveResource(by, host, port, heartbeat, ttl, { worker_pid: process.pid }, password);

// What the library will use, computed as it does (lib/index.coffee).
emit('start', {
  mode, resource, key: 'reservation-' + resource,
  value: by + '-' + (process.env.JOB_ID || process.pid),
  by, ttl_s: ttl, heartbeat_ms: heartbeat, pid: process.pid,
});

let exiting = false;
function finish(code) {
  if (exiting) return;
  exiting = true;
  const done = () => {
    emit('exit', { code });
    process.exitCode = code;
    // stdout is a pipe: let it drain, then exit even if a socket lingers.
    process.stdout.write('', () => process.exit(code));
  };
  // The library has no close(); its memoized client is r._redis.
  if (r._redis && r._redis.connected) {
    const timer = setTimeout(done, 1000);
    r._redis.quit(() => { clearTimeout(timer); done(); });
  } else {
    if (r._redis) r._redis.end();
    done();
  }
}

let released = false;

process.on('uncaughtException', (err) => {
  if (released) {
    // A heartbeat whose GET was in flight when release() ran: its next step
    // runs after release's DEL callback has cleared _reserve_val, so the
    // library throws "Worker undefined lost undefined to <our value>". The
    // key is already deleted; record it and let the worker finish.
    emit('uncaught', { error: errString(err), lost: r._lost_reservation === true, after_release: true });
    return;
  }
  // Without this handler node would print the error and exit with code 1;
  // we do the same, after recording it.
  emit('uncaught', { error: errString(err), lost: r._lost_reservation === true });
  exiting = true;
  emit('exit', { code: 1 });
  process.stdout.write('', () => process.exit(1));
});

let holding = false;
let releaseStarted = false;

function release() {
  if (releaseStarted) return;
  releaseStarted = true;
  if (noRelease) return finish(0);
  emit('releasing');
  r.release((err, reply) => {
    released = !err;
    emit('released', { reply, error: errString(err) });
    finish(err ? 1 : 0);
  });
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    emit('signal', { signal: sig });
    if (holding) release();
    else finish(1);
  });
}

function hold() {
  holding = true;
  if (holdMs >= 0) {
    setTimeout(release, holdMs);
    return;
  }
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', release);
  process.stdin.on('end', release);
  process.stdin.on('error', release);
  process.stdin.resume();
}

// Wrap lock() on the instance so that every attempt is recorded, including the
// ones wait_until_lock makes (it calls this.lock).
const libLock = r.lock.bind(r);
r.lock = (res, cb) => libLock(res, (err, status) => {
  emit('lock', { status: status === true, error: errString(err) });
  if (status === true) emit('acquired', { key: r._reserve_key });
  cb(err, status);
});

if (mode === 'lock') {
  r.lock(resource, (err, status) => {
    if (err) return finish(1);
    if (!status) {
      emit('not_acquired');
      return finish(3);
    }
    hold();
  });
} else {
  r.wait_until_lock(resource, (err, reply) => {
    emit('wait_done', { reply, key: r._reserve_key, error: errString(err) });
    if (err) return finish(1);
    hold();
  });
}
