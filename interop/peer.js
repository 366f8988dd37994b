#!/usr/bin/env node
'use strict';

/*
 * peer.js: a line-oriented JSON RPC driver around the Node `hydra` singleton,
 * used by the hydra-rs interop tests (testkit/src/node_peer.rs) to make a real
 * Node hydra 1.9.3 do anything a Node service could do.
 *
 * Protocol (one JSON value per line, UTF-8):
 *
 *   stdout, once at start:  {"ready":true}
 *   stdin, request:         {"id":<n>,"method":"<name>","args":[...]}
 *   stdout, reply:          {"id":<n>,"ok":<result>}      (undefined result -> null)
 *                           {"id":<n>,"err":"<message>"}  (throw / rejection / unknown method)
 *   stdout, bad request:    {"id":<n or null>,"err":"bad request: ..."}
 *   stdout, events:         {"event":"message","data":<short UMF object>}
 *                           {"event":"log","data":<health-log entry object>}
 *                           {"event":"metric","data":"<metric string>"}
 *                           {"event":"error","data":"<message>"}  (only if hydra emits 'error')
 *
 * A request calls hydra[method](...args) and awaits the result if it is a
 * promise. Requests are handled concurrently; replies carry the request id and
 * may come back in any order. Special methods (handled here, not by hydra):
 *
 *   init [config]            hydra.init(config); if config.hydra has no
 *                            serviceIP it is set to "" first (hydra 1.9.3 bug).
 *   createUMFMessage [obj]   the message's plain long form (what JSON.stringify gives).
 *   toShort [obj]            hydra.createUMFMessage(obj).toShort().
 *   signMessage [obj, algo, secret]
 *                            long form of createUMFMessage(obj) after signMessage(algo, secret).
 *   validateUMF [obj]        hydra.createUMFMessage(obj).validate().
 *   parseRoute [route]       hydra.getUMFMessageHelper().parseRoute(route).
 *   getProperty [name]       the value of the property hydra[name] (e.g. "instanceID", "config").
 *   ping []                  "pong".
 *   echo []                  from now on, answer every incoming message with
 *                            hydra.sendReplyMessage(msg, {body: {echo: <its body>}})
 *                            instead of emitting a "message" event (Node's echo
 *                            service, for the burst benchmark); returns null.
 *   shutdown []              await hydra.shutdown(); reply; keep running until stdin closes.
 *   exit []                  reply null, then process.exit(0) at once (no hydra shutdown).
 *
 * Everything else that goes to stdout from hydra or its dependencies
 * (console.*, process.stdout.write) is redirected to stderr, so stdout only
 * carries the JSON lines above.
 *
 * On stdin EOF, SIGTERM or SIGINT: if a service is registered (and not yet shut
 * down), await hydra.shutdown() with a 3 s guard; then exit 0.
 */

const util = require('util');

// ---------------------------------------------------------------------------
// Keep stdout pure: our JSON lines use the original writer, everybody else
// (console.*, direct process.stdout.write) goes to stderr.
// ---------------------------------------------------------------------------
const rawStdoutWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, encoding, cb) => process.stderr.write(chunk, encoding, cb);
for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir']) {
  console[level] = (...a) => {
    process.stderr.write(`[peer.js console.${level}] ${util.format(...a)}\n`);
  };
}

function logErr(...a) {
  process.stderr.write(`[peer.js] ${util.format(...a)}\n`);
}

// ---------------------------------------------------------------------------
// Safe conversion of any value into plain JSON data: Buffers, circular
// references, BigInts, Errors, Maps/Sets, functions, deep object graphs.
// ---------------------------------------------------------------------------
const MAX_DEPTH = 32;

function toPlain(value, ancestors, depth) {
  if (value === null || value === undefined) {
    return null;
  }
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? value : null;
    case 'bigint':
      return value.toString();
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  if (depth > MAX_DEPTH) {
    return '[MaxDepth]';
  }
  if (ancestors.includes(value)) {
    return '[Circular]';
  }
  if (Buffer.isBuffer(value)) {
    return {type: 'Buffer', data: Array.from(value)};
  }
  if (value instanceof Error) {
    const out = {name: value.name, message: value.message};
    for (const k of Object.keys(value)) {
      const v = toPlain(value[k], ancestors.concat([value]), depth + 1);
      if (v !== undefined) {
        out[k] = v;
      }
    }
    return out;
  }
  const next = ancestors.concat([value]);
  if (typeof value.toJSON === 'function') {
    let j;
    try {
      j = value.toJSON();
    } catch (e) {
      return `[toJSON threw: ${e && e.message}]`;
    }
    if (j !== value) {
      return toPlain(j, next, depth + 1);
    }
  }
  if (value instanceof Map) {
    const out = {};
    for (const [k, v] of value) {
      const pv = toPlain(v, next, depth + 1);
      if (pv !== undefined) {
        out[String(k)] = pv;
      }
    }
    return out;
  }
  if (Array.isArray(value) || value instanceof Set || ArrayBuffer.isView(value)) {
    return Array.from(value, (v) => {
      const pv = toPlain(v, next, depth + 1);
      return pv === undefined ? null : pv;
    });
  }
  const out = {};
  for (const k of Object.keys(value)) {
    let v;
    try {
      v = value[k];
    } catch (e) {
      continue;
    }
    const pv = toPlain(v, next, depth + 1);
    if (pv !== undefined) {
      out[k] = pv;
    }
  }
  return out;
}

function plain(value) {
  const p = toPlain(value, [], 0);
  return p === undefined ? null : p;
}

function emitLine(obj) {
  let line;
  try {
    line = JSON.stringify(obj);
  } catch (e) {
    line = JSON.stringify({id: obj.id === undefined ? null : obj.id, err: `unserializable result: ${e.message}`});
  }
  rawStdoutWrite(line + '\n');
}

function errText(e) {
  if (e instanceof Error) {
    return e.message || String(e);
  }
  if (typeof e === 'string') {
    return e;
  }
  try {
    return JSON.stringify(plain(e));
  } catch (_) {
    return String(e);
  }
}

// ---------------------------------------------------------------------------
// hydra and its events
// ---------------------------------------------------------------------------
const hydra = require('hydra'); // a failure here exits non-zero before {"ready":true}

// From now on, never die from a stray error inside hydra or node_redis.
process.on('uncaughtException', (e) => logErr('uncaughtException:', e && e.stack || e));
process.on('unhandledRejection', (e) => logErr('unhandledRejection:', e && e.stack || e));

let echoing = false;
let echoFailures = 0;

hydra.on('message', (m) => {
  if (!echoing) {
    emitLine({event: 'message', data: plain(m)});
    return;
  }
  const body = m.bdy !== undefined ? m.bdy : m.body;
  Promise.resolve()
    .then(() => hydra.sendReplyMessage(m, {body: {echo: body}}))
    .catch((e) => {
      echoFailures += 1;
      if (echoFailures <= 3) {
        logErr('echo reply failed:', e && e.stack || e);
      }
    });
});
hydra.on('log', (e) => emitLine({event: 'log', data: plain(e)}));
hydra.on('metric', (s) => emitLine({event: 'metric', data: plain(s)}));
hydra.on('error', (e) => emitLine({event: 'error', data: errText(e)}));

function umf(obj) {
  return hydra.createUMFMessage(obj);
}

const special = {
  init(config, ...rest) {
    if (config && typeof config === 'object' && config.hydra && typeof config.hydra === 'object' &&
        !Object.prototype.hasOwnProperty.call(config.hydra, 'serviceIP')) {
      config.hydra.serviceIP = '';
    }
    return hydra.init(config, ...rest);
  },
  createUMFMessage(obj) {
    return JSON.parse(JSON.stringify(umf(obj)));
  },
  toShort(obj) {
    return umf(obj).toShort();
  },
  signMessage(obj, algo, secret) {
    const msg = umf(obj);
    msg.signMessage(algo, secret);
    return JSON.parse(JSON.stringify(msg));
  },
  validateUMF(obj) {
    return umf(obj).validate();
  },
  parseRoute(route) {
    return hydra.getUMFMessageHelper().parseRoute(route);
  },
  getProperty(name) {
    return hydra[name];
  },
  ping() {
    return 'pong';
  },
  echo() {
    echoing = true;
    return null;
  },
  async shutdown() {
    await hydra.shutdown();
    return null;
  },
};

async function dispatch(method, args) {
  if (Object.prototype.hasOwnProperty.call(special, method)) {
    return special[method](...args);
  }
  if (typeof hydra[method] !== 'function') {
    throw new Error(`unknown method: ${method}`);
  }
  return hydra[method](...args);
}

let exiting = false;

function handleLine(line) {
  if (line.trim() === '') {
    return;
  }
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    emitLine({id: null, err: `bad request: invalid JSON: ${e.message}`});
    return;
  }
  if (req === null || typeof req !== 'object' || Array.isArray(req)) {
    emitLine({id: null, err: 'bad request: expected a JSON object'});
    return;
  }
  const id = (typeof req.id === 'number' || typeof req.id === 'string') ? req.id : null;
  if (id === null) {
    emitLine({id: null, err: 'bad request: missing or invalid "id" (number or string)'});
    return;
  }
  if (typeof req.method !== 'string' || req.method === '') {
    emitLine({id, err: 'bad request: missing or invalid "method" (string)'});
    return;
  }
  let args = req.args;
  if (args === undefined || args === null) {
    args = [];
  }
  if (!Array.isArray(args)) {
    emitLine({id, err: 'bad request: "args" must be an array'});
    return;
  }

  if (req.method === 'exit') {
    emitLine({id, ok: null});
    process.exit(0);
  }

  Promise.resolve()
    .then(() => dispatch(req.method, args))
    .then(
      (result) => emitLine({id, ok: plain(result)}),
      (e) => emitLine({id, err: errText(e)})
    )
    .catch((e) => logErr('reply failed:', e && e.stack || e));
}

function gracefulExit(why) {
  if (exiting) {
    return;
  }
  exiting = true;
  logErr(`${why}: exiting`);
  const registered = hydra.isService && hydra.initialized;
  if (!registered) {
    process.exit(0);
  }
  const guard = new Promise((resolve) => setTimeout(() => {
    logErr('hydra.shutdown() did not finish within 3 s');
    resolve();
  }, 3000));
  Promise.race([Promise.resolve().then(() => hydra.shutdown()), guard])
    .catch((e) => logErr('hydra.shutdown() failed:', e && e.stack || e))
    .then(() => process.exit(0));
}

process.on('SIGTERM', () => gracefulExit('SIGTERM'));
process.on('SIGINT', () => gracefulExit('SIGINT'));

const readline = require('readline');
const rl = readline.createInterface({input: process.stdin, crlfDelay: Infinity, terminal: false});
rl.on('line', (line) => {
  try {
    handleLine(line);
  } catch (e) {
    logErr('handleLine failed:', e && e.stack || e);
  }
});
rl.on('close', () => gracefulExit('stdin closed'));

logErr(`pid ${process.pid}, node ${process.version}, hydra ${require('hydra/package.json').version}`);
emitLine({ready: true});
