'use strict';
// herd-bench: Node's cluster forking HERD_BENCH_WORKERS workers (8), each
// an HTTP server listening on 127.0.0.1, port 0 (shared, round-robin by
// default). The primary reports the time from its first fork() to the
// last worker's 'listening' event, in milliseconds, and its own RSS then,
// as "result {json}", then disconnects the workers and exits once they
// have all exited (and been reaped).
const cluster = require('node:cluster');
const http = require('node:http');
const { performance } = require('node:perf_hooks');

const n = Number(process.env.HERD_BENCH_WORKERS || 8);

if (cluster.isPrimary) {
  let listening = 0;
  const t0 = performance.now();
  cluster.on('listening', () => {
    if (++listening !== n) return;
    const ms = performance.now() - t0;
    const rss = process.memoryUsage().rss / (1 << 20);
    console.log('result ' + JSON.stringify({ value: ms, node_primary_rss_mib_8_workers: rss }));
    for (const w of Object.values(cluster.workers)) w.disconnect();
  });
  let exited = 0;
  cluster.on('exit', (w, code, signal) => {
    if (listening < n) {
      console.error(`worker ${w.id} exited early: code ${code} signal ${signal}`);
      process.exit(1);
    }
    if (++exited === n) process.exit(0);
  });
  for (let i = 0; i < n; i++) cluster.fork();
  setTimeout(() => {
    console.error('timed out');
    process.exit(1);
  }, 60000).unref();
} else {
  http.createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1');
}
