'use strict';
// herd-bench: the app PM2 runs in cluster mode for the reload and restart
// scenarios: a tiny http server with the hello world of the other systems,
// on 127.0.0.1:$PORT, with no shutdown handling of its own (what
// `pm2 start app.js -i 2` runs for most users). Once it listens it tells
// the driver (node/pm2.js) through PM2's bus.
const http = require('node:http');

const body = 'Hello, World!\n';
http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
}).listen(Number(process.env.PORT), '127.0.0.1', () => {
  if (process.send) process.send({ type: 'herd:listening', data: { pid: process.pid } });
});
