#!/usr/bin/env node
'use strict';

/*
 * express-peer.js: a real hydra-express 1.9.5 service (on hydra 1.9.3) for the
 * hydra-rs HTTP interop tests (driven by testkit/src/express_peer.rs).
 *
 * Environment:
 *   HYDRA_REDIS_URL  (required) e.g. redis://127.0.0.1:6379/0
 *   SERVICE_NAME     (default "express-svc")
 *
 * hydra config: {hydra: {serviceName, serviceDescription: "express peer",
 * serviceIP: "127.0.0.1", servicePort: 0, serviceType: "express", redis: {url}}}.
 * servicePort 0 makes hydra pick a random free port (checked on serviceIP);
 * hydra-express then listens on it on all interfaces (server.listen(port)).
 *
 * Routes, registered with hydraExpress.registerRoutes({'/v1/express': router}):
 *   GET  /v1/express/hello       200 {result: {hello: "from express", query: req.query}}
 *   POST /v1/express/echo        200 {result: {body: req.body, headers: req.headers}}
 *   PUT  /v1/express/echo        same as POST
 *   GET  /v1/express/fail        500 {result: {reason: "express route failed on purpose"}}
 *   GET  /v1/express/slow?ms=N   waits N ms, then 200 {result: {slept: N}}
 *   GET  /v1/express/text        200 text/plain "plain text body" (not the envelope)
 * All but /text answer through hydraExpress.sendResponse (hydra's envelope
 * {statusCode, statusMessage, statusDescription, result}). hydra registers
 * [get]/<svc>, [get]/<svc>/ and [get]/<svc>/:rest as well (Redis only; Express
 * does not serve them).
 *
 * stdout carries exactly one line, once the port listens and the routes are in
 * Redis (hydra:service:<svc>:service:routes):
 *   {"ready":true,"serviceName":"<svc>","instanceID":"<id>","port":<n>}
 * Everything else (console.*, process.stdout.write by any module) goes to stderr.
 * hydraExpress.init()'s own promise resolves only 2 s later (a fixed delay in
 * hydra-express); the ready line does not wait for it.
 *
 * Lifetime: runs until stdin reaches EOF, SIGTERM or SIGINT; then
 * hydraExpress.shutdown() (HTTP server close, then hydra.shutdown(), which deletes
 * the presence key) with a 3 s guard, and exit 0. Requests still in flight
 * after 1 s are cut (their connections destroyed) so the shutdown can finish.
 * hydra-express installs its own SIGTERM/SIGINT handlers (one exits 0 as soon as
 * the HTTP server has closed, before hydra shuts down; the other runs its
 * shutdown and exits 1); they are replaced by ours once hydra-express has
 * installed them. Its other fatal handlers (uncaughtException,
 * unhandledRejection -> shutdown, exit 1) are kept. If Redis is unreachable at
 * start, hydra-express exits 1 (after ~8 s of reconnect attempts) before the
 * ready line. A missing HYDRA_REDIS_URL exits 2.
 */

const util = require('util');

// ---------------------------------------------------------------------------
// Keep stdout pure.
// ---------------------------------------------------------------------------
const rawStdoutWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, encoding, cb) => process.stderr.write(chunk, encoding, cb);
for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
  console[level] = (...a) => {
    process.stderr.write(`[express-peer.js console.${level}] ${util.format(...a)}\n`);
  };
}
// hydra-express's default logger calls console.dir(obj, {colors: true, depth: null}).
console.dir = (obj, options) => {
  const opts = Object.assign({}, options, {colors: false});
  process.stderr.write(`[express-peer.js console.dir] ${util.inspect(obj, opts)}\n`);
};

function logErr(...a) {
  process.stderr.write(`[express-peer.js] ${util.format(...a)}\n`);
}

const redisUrl = process.env.HYDRA_REDIS_URL;
if (!redisUrl) {
  logErr('HYDRA_REDIS_URL is required');
  process.exit(2);
}
const serviceName = process.env.SERVICE_NAME || 'express-svc';

// Failures here exit non-zero before the ready line.
const hydraExpress = require('hydra-express');
const hydra = hydraExpress.getHydra();
const express = hydraExpress.getExpress();

// An 'error' event without a listener would throw.
hydra.on('error', (err) => logErr('hydra error:', err && err.stack || err));

// ---------------------------------------------------------------------------
// Shutdown.
// ---------------------------------------------------------------------------
const SHUTDOWN_GUARD_MS = 3000;
const CLOSE_CONNECTIONS_AFTER_MS = 1000;
let ready = false;
let exiting = false;

function gracefulExit(why) {
  if (exiting) {
    return;
  }
  exiting = true;
  logErr(`${why}: exiting`);
  const guard = new Promise((resolve) => {
    setTimeout(() => {
      logErr(`shutdown did not finish within ${SHUTDOWN_GUARD_MS} ms`);
      resolve();
    }, SHUTDOWN_GUARD_MS).unref();
  });
  const work = Promise.resolve().then(() => {
    const server = hydraExpress.server;
    if (server) {
      // server.close() (inside hydraExpress.shutdown) waits for requests in
      // flight; cut them after a grace period so hydra.shutdown() still runs.
      setTimeout(() => server.closeAllConnections(), CLOSE_CONNECTIONS_AFTER_MS).unref();
      return hydraExpress.shutdown();
    }
    // Not listening yet: only hydra may have been started.
    if (hydra.isService || hydra.initialized) {
      return hydra.shutdown();
    }
    return undefined;
  });
  Promise.race([work, guard])
    .catch((e) => logErr('shutdown failed:', e && e.stack || e))
    .then(() => process.exit(0));
}

function installSignalHandlers() {
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.removeAllListeners(sig);
    process.on(sig, () => gracefulExit(sig));
  }
}

installSignalHandlers();
process.stdin.on('end', () => gracefulExit('stdin closed'));
process.stdin.on('error', () => gracefulExit('stdin error'));
process.stdin.resume();

// ---------------------------------------------------------------------------
// Routes.
// ---------------------------------------------------------------------------
function buildRouter() {
  const router = express.Router();
  router.get('/hello', (req, res) => {
    hydraExpress.sendResponse(200, res, {result: {hello: 'from express', query: req.query}});
  });
  const echo = (req, res) => {
    hydraExpress.sendResponse(200, res, {result: {body: req.body, headers: req.headers}});
  };
  router.post('/echo', echo);
  router.put('/echo', echo);
  router.get('/fail', (req, res) => {
    hydraExpress.sendResponse(500, res, {result: {reason: 'express route failed on purpose'}});
  });
  router.get('/slow', (req, res) => {
    let ms = parseInt(req.query.ms, 10);
    if (!Number.isFinite(ms) || ms < 0) {
      ms = 0;
    }
    setTimeout(() => {
      hydraExpress.sendResponse(200, res, {result: {slept: ms}});
    }, ms);
  });
  router.get('/text', (req, res) => {
    res.type('text/plain').send('plain text body');
  });
  return router;
}

function announceReady() {
  if (ready || exiting) {
    return;
  }
  ready = true;
  const addr = hydraExpress.server && hydraExpress.server.address();
  const line = JSON.stringify({
    ready: true,
    serviceName: hydra.getServiceName(),
    instanceID: hydra.getInstanceID(),
    port: addr && typeof addr === 'object' ? addr.port : Number(hydra.config.servicePort),
  });
  rawStdoutWrite(`${line}\n`);
}

// Runs inside the HTTP server's listen callback (the port is open).
function registerRoutes() {
  // hydra-express's signal handlers exist by now (installed before listen).
  installSignalHandlers();

  // hydraExpress.registerRoutes() drops the promise of hydra.registerRoutes();
  // catch it to know when the routes are in Redis.
  const original = hydra.registerRoutes;
  let registered = Promise.resolve();
  hydra.registerRoutes = function (...args) {
    registered = original.apply(this, args);
    return registered;
  };
  try {
    hydraExpress.registerRoutes({'/v1/express': buildRouter()});
  } finally {
    hydra.registerRoutes = original;
  }
  registered
    .then(() => announceReady())
    .catch((e) => {
      logErr('route registration failed:', e && e.stack || e);
      process.exit(1);
    });
}

const config = {
  hydra: {
    serviceName,
    serviceDescription: 'express peer',
    serviceIP: '127.0.0.1',
    servicePort: 0,
    serviceType: 'express',
    redis: {url: redisUrl},
  },
};

hydraExpress.init(config, registerRoutes)
  .then((info) => logErr('hydraExpress.init resolved:', JSON.stringify(info)))
  .catch((e) => {
    logErr('hydraExpress.init failed:', e && e.stack || e);
    process.exit(1);
  });
