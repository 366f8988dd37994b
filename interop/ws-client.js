#!/usr/bin/env node
'use strict';

/*
 * ws-client.js: one WebSocket client (the `ws` package, 8.5.0, the version
 * Node's hydra-router uses) driven over JSON lines, for the hydra-rs router
 * tests (router/tests/ws_node.rs): a browser or app talking to hydra-router.
 *
 * Usage: node ws-client.js <ws-url>
 *
 * Protocol (one JSON value per line, UTF-8):
 *
 *   stdout, once connected:  {"event":"open"}
 *   stdout, each frame:      {"event":"frame","data":"<the frame's text>"}
 *   stdout, on close:        {"event":"close","code":<n>,"reason":"<text>"}
 *   stdout, on error:        {"event":"error","data":"<message>"}
 *   stdin:                   {"send":"<text>"}   sends a text frame
 *                            {"close":true}      closes the socket (code 1000)
 *
 * Frames are passed on as text, unparsed, so the test sees exactly what the
 * router wrote. The process exits when stdin closes, or once the socket is
 * closed and stdin has nothing more to say.
 */

const WebSocket = require('ws');

const url = process.argv[2];
function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

if (!url) {
  emit({event: 'error', data: 'usage: ws-client.js <ws-url>'});
  process.exit(2);
}

const socket = new WebSocket(url);
// Commands that came before the socket opened, run once it is open.
let pending = [];
socket.on('open', () => {
  emit({event: 'open'});
  const waiting = pending;
  pending = null;
  waiting.forEach(run);
});
socket.on('message', (data, isBinary) => {
  emit({event: 'frame', data: isBinary ? Buffer.from(data).toString('base64') : data.toString('utf8')});
});
socket.on('close', (code, reason) => emit({event: 'close', code, reason: reason.toString('utf8')}));
socket.on('error', (e) => emit({event: 'error', data: (e && e.message) || String(e)}));

const readline = require('readline');
const rl = readline.createInterface({input: process.stdin, crlfDelay: Infinity, terminal: false});
rl.on('line', (line) => {
  if (line.trim() === '') {
    return;
  }
  let command;
  try {
    command = JSON.parse(line);
  } catch (e) {
    emit({event: 'error', data: `bad command: ${e.message}`});
    return;
  }
  if (pending) {
    pending.push(command);
  } else {
    run(command);
  }
});

function run(command) {
  try {
    if (typeof command.send === 'string') {
      socket.send(command.send, (e) => {
        if (e) {
          emit({event: 'error', data: `send failed: ${e.message}`});
        }
      });
    } else if (command.close) {
      socket.close(1000, 'done');
    } else {
      emit({event: 'error', data: `unknown command: ${JSON.stringify(command)}`});
    }
  } catch (e) {
    emit({event: 'error', data: (e && e.message) || String(e)});
  }
}
rl.on('close', () => {
  socket.terminate();
  process.exit(0);
});
