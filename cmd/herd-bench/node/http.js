'use strict';
// herd-bench: Node's cluster serving HTTP hello world with
// HERD_BENCH_WORKERS workers on 127.0.0.1, port 0 (one port, shared by the
// workers), under NODE_CLUSTER_SCHED_POLICY (rr or none, set by the
// harness). Prints "ready {"port": N}" once every worker listens; when
// stdin ends it disconnects the workers, waits for them to exit (so that
// they are reaped, and their CPU time is the primary's children's), prints
// "result {}" and exits.
// With HERD_BENCH_KILL set (the kill scenario) the ready line also names
// the first worker's PID as the victim, which the harness SIGKILLs; that
// death is expected, nothing replaces the worker, and the result says
// whether it died of SIGKILL.
const cluster = require('node:cluster');
const http = require('node:http');

const n = Number(process.env.HERD_BENCH_WORKERS || 2);
const kill = !!process.env.HERD_BENCH_KILL;

if (cluster.isPrimary) {
  let listening = 0;
  let port = 0;
  cluster.on('listening', (w, address) => {
    if (port && address.port !== port) {
      console.error(`worker ${w.id} listens on ${address.port}, not ${port}`);
      process.exit(1);
    }
    port = address.port;
    if (++listening !== n) return;
    const ready = { port };
    if (kill) ready.victim = workers[0].process.pid;
    console.log('ready ' + JSON.stringify(ready));
  });
  let stopping = false;
  let exited = 0;
  let victimKilled = 0;
  const done = () => {
    console.log('result ' + JSON.stringify(kill ? { victim_killed: victimKilled } : {}));
    process.exit(0);
  };
  cluster.on('exit', (w, code, signal) => {
    const victim = kill && w === workers[0];
    if (victim && signal === 'SIGKILL') victimKilled = 1;
    if (!stopping && !victim) {
      console.error(`worker ${w.id} exited: code ${code} signal ${signal}`);
      process.exit(1);
    }
    if (++exited === n && stopping) done();
  });
  // Our own list: a primary-side disconnect takes a worker out of
  // cluster.workers at once.
  const workers = [];
  for (let i = 0; i < n; i++) {
    const w = cluster.fork();
    // Disconnecting the SIGKILLed victim before its exit event arrived
    // writes to a dead channel (EPIPE): expected for it, fatal otherwise.
    w.on('error', (err) => {
      if (kill && w === workers[0]) return;
      console.error(`worker ${w.id}: ${err.message}`);
      process.exit(1);
    });
    workers.push(w);
  }
  process.stdin.on('end', () => {
    stopping = true;
    // Idle keep-alive connections could hold a graceful disconnect.
    setTimeout(() => {
      for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL');
    }, 5000).unref();
    for (const w of workers) if (!w.isDead()) w.disconnect();
    if (exited === n) done();
  });
  process.stdin.resume();
} else {
  const body = 'Hello, World!\n';
  const headers = { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) };
  http
    .createServer((req, res) => {
      res.writeHead(200, headers);
      res.end(body);
    })
    .listen(0, '127.0.0.1');
}
