'use strict';
// herd-bench: Node's cluster IPC, one primary and one worker.
//
// HERD_BENCH_MODE      oneway | rtt | 1mib
// HERD_BENCH_DURATION_MS  measuring time
//
// oneway: the worker sends {s: n} with process.send for the duration,
//   honouring back-pressure (when send returns false it waits for the
//   write callback), then {done: n}; the primary counts 'message' events and
//   reports messages per second from its request to the done message.
// rtt: the primary sends {s: n}, the worker sends it back; median round
//   trip in microseconds.
// 1mib: the same with a 1 MiB Buffer in the message, with serialization
//   'advanced' (V8 serializer: the Buffer travels as binary), or, with
//   HERD_BENCH_NODE_SERIALIZATION=json, as a base64 string in JSON; median
//   round trip in milliseconds.
//
// The primary prints one line, "result {json}", and exits.
const cluster = require('node:cluster');
const { performance } = require('node:perf_hooks');

const mode = process.env.HERD_BENCH_MODE;
const durationMs = Number(process.env.HERD_BENCH_DURATION_MS);
const json = process.env.HERD_BENCH_NODE_SERIALIZATION === 'json';
const WARMUP = 100;
const SIZE = 1 << 20;

function median(xs) {
  xs.sort((a, b) => a - b);
  const n = xs.length;
  return n % 2 ? xs[(n - 1) / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

function finish(worker, result) {
  console.log('result ' + JSON.stringify(result));
  worker.disconnect();
  worker.on('exit', () => process.exit(0));
}

function primary() {
  if (mode === '1mib' && !json) cluster.setupPrimary({ serialization: 'advanced' });
  const w = cluster.fork();
  w.on('exit', (code, signal) => {
    console.error(`worker exited early: code ${code} signal ${signal}`);
    process.exit(1);
  });
  w.once('online', () => {
    w.removeAllListeners('exit');
    if (mode === 'oneway') oneway(w);
    else if (mode === 'rtt') rtt(w, { s: 0 }, 1e3);
    else if (mode === '1mib') {
      const buf = Buffer.alloc(SIZE);
      for (let i = 0; i < SIZE; i++) buf[i] = (i * 7) & 0xff;
      rtt(w, { s: 0, b: json ? buf.toString('base64') : buf }, 1);
    } else {
      console.error('unknown mode ' + mode);
      process.exit(2);
    }
  });
}

function oneway(w) {
  let count = 0;
  const t0 = performance.now();
  w.on('message', (m) => {
    if (m.s !== undefined) {
      count++;
      return;
    }
    const secs = (performance.now() - t0) / 1e3;
    if (m.done !== count) {
      console.error(`worker sent ${m.done} messages, primary got ${count}`);
      process.exit(1);
    }
    finish(w, { value: count / secs });
  });
  w.send({ go: durationMs });
}

// rtt sends msg back and forth; scale turns milliseconds into the unit.
function rtt(w, msg, scale) {
  const samples = [];
  let i = 0;
  let end = 0;
  let t = 0;
  const minSamples = mode === '1mib' ? 5 : 1;
  const next = () => {
    msg.s = i;
    t = performance.now();
    w.send(msg);
  };
  w.on('message', (m) => {
    const took = performance.now() - t;
    if (m.s !== i) {
      console.error(`echo ${i} came back as ${m.s}`);
      process.exit(1);
    }
    const warm = mode === '1mib' ? 3 : WARMUP;
    if (i === warm) end = performance.now() + durationMs;
    if (i >= warm) samples.push(took * scale);
    i++;
    if (i <= warm || performance.now() < end || samples.length < minSamples) next();
    else finish(w, { value: median(samples) });
  });
  next();
}

function worker() {
  process.on('message', (m) => {
    if (m.go === undefined) {
      process.send(m); // echo
      return;
    }
    const end = performance.now() + m.go;
    let n = 0;
    const loop = () => {
      for (;;) {
        if (performance.now() >= end) {
          process.send({ done: n });
          return;
        }
        for (let i = 0; i < 64; i++) {
          n++;
          if (!process.send({ s: n })) {
            // The channel holds 128 KiB or more: send one more and go on
            // once it has been written.
            n++;
            process.send({ s: n }, loop);
            return;
          }
        }
      }
    };
    loop();
  });
}

setTimeout(() => {
  console.error('timed out');
  process.exit(1);
}, durationMs + 60000).unref();

if (cluster.isPrimary) primary();
else worker();
