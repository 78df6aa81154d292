'use strict';
// herd-bench: PM2 (the pm2 package named by HERD_BENCH_PM2_MODULE, its
// daemon in PM2_HOME) running node/pm2_app.js in cluster mode with
// HERD_BENCH_WORKERS instances on a free loopback port. Prints
// "ready {"port": N}" once every instance listens. Then, by
// HERD_BENCH_MODE:
//   reload:  each "reload" line on stdin runs `pm2 reload` and prints
//            "reloaded {"ok": 1}" when it is done (0 when it failed);
//            stdin ending stops PM2 and prints "result {}".
//   restart: SIGKILLs an instance HERD_BENCH_KILLS times, in turn, each
//            time waiting until its replacement listens, and prints
//            "result {"value": MS, "restart_ms_pm2_online": MS}": the
//            medians from the kill to the replacement listening, and to
//            PM2 saying it is online.
// It stops PM2's daemon (`pm2 kill`) before it exits.
const net = require('node:net');
const path = require('node:path');
const readline = require('node:readline');
const pm2 = require(process.env.HERD_BENCH_PM2_MODULE);

const mode = process.env.HERD_BENCH_MODE;
const n = Number(process.env.HERD_BENCH_WORKERS || 2);
const kills = Number(process.env.HERD_BENCH_KILLS || 5);
const name = 'herd-bench-app';
const app = path.join(__dirname, 'pm2_app.js');
const now = () => performance.timeOrigin + performance.now();

let stopping = false;
function stop(code, result) {
  if (stopping) return;
  stopping = true;
  const end = () => {
    if (result) console.log('result ' + JSON.stringify(result));
    pm2.disconnect();
    process.exit(code);
  };
  pm2.delete(name, () => pm2.killDaemon(end));
  setTimeout(end, 20000).unref();
}

function fail(msg) {
  console.error(msg);
  stop(1);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

let onListening = null; // (packet, time)
let onOnline = null; // (packet, time)

pm2.connect((err) => {
  if (err) return fail('pm2 connect: ' + err.message);
  pm2.launchBus((err, bus) => {
    if (err) return fail('pm2 bus: ' + err.message);
    bus.on('herd:listening', (packet) => { if (onListening) onListening(packet, now()); });
    bus.on('process:event', (packet) => {
      if (packet.event === 'online' && onOnline) onOnline(packet, now());
    });
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => start(port));
    });
  });
});

function start(port) {
  const listening = new Set();
  onListening = (packet) => {
    listening.add(packet.data.pid);
    if (listening.size !== n) return;
    onListening = null;
    console.log('ready ' + JSON.stringify({ port }));
    if (mode === 'reload') reloads();
    else if (mode === 'restart') restarts();
    else fail('unknown HERD_BENCH_MODE ' + mode);
  };
  pm2.start({ script: app, name, instances: n, exec_mode: 'cluster', env: { PORT: String(port) } }, (err) => {
    if (err) fail('pm2 start: ' + err.message);
  });
}

function reloads() {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() !== 'reload') return;
    pm2.reload(name, (err) => {
      if (err) console.error('pm2 reload: ' + err.message);
      console.log('reloaded ' + JSON.stringify({ ok: err ? 0 : 1 }));
    });
  });
  rl.on('close', () => stop(0, {}));
}

function restarts() {
  const listened = [];
  const online = [];
  let i = 0;
  const next = () => {
    if (i === kills) {
      return stop(0, { value: median(listened), restart_ms_pm2_online: median(online) });
    }
    pm2.list((err, list) => {
      if (err) return fail('pm2 list: ' + err.message);
      const procs = list.filter((p) => p.name === name).sort((a, b) => a.pm_id - b.pm_id);
      const victim = procs[i % procs.length];
      if (!victim || !victim.pid) return fail('no instance to kill in ' + JSON.stringify(procs.map((p) => p.pm2_env.status)));
      let tOnline = 0;
      onOnline = (packet, t) => {
        if (packet.process.pm_id === victim.pm_id && !tOnline) tOnline = t;
      };
      const t0 = now();
      onListening = (packet, t) => {
        if (packet.process.pm_id !== victim.pm_id || packet.data.pid === victim.pid) return;
        onListening = onOnline = null;
        listened.push(t - t0);
        online.push((tOnline || t) - t0);
        i++;
        next();
      };
      process.kill(victim.pid, 'SIGKILL');
    });
  };
  next();
}
