'use strict';
// Node's http2 client against the proxy, for test_node_interop.py: one
// session (TLS with ALPN h2 trusting the test certificate, or prior
// knowledge on a plain port), every request of the config on it at once,
// and optionally a WebSocket over an extended CONNECT (RFC 8441). Prints
// one JSON object: the session's ALPN and remote SETTINGS, and per request
// its status, headers, body and trailers.
//
// Config (argv[2], JSON): {port, tls, ca, servername, requests: [{method,
// path, authority, headers, chunks: [text...], delay_ms}], websocket:
// {path, authority, message} | null}
const http2 = require('http2');
const tls = require('tls');
const fs = require('fs');
const crypto = require('crypto');

const cfg = JSON.parse(process.argv[2]);
const scheme = cfg.tls ? 'https' : 'http';

function connect() {
  if (!cfg.tls)
    return http2.connect(`http://127.0.0.1:${cfg.port}`);
  return http2.connect(`https://${cfg.servername}:${cfg.port}`, {
    createConnection: () => tls.connect({
      host: '127.0.0.1', port: cfg.port, servername: cfg.servername,
      ca: fs.readFileSync(cfg.ca), ALPNProtocols: ['h2'],
    }),
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function request(session, r) {
  return new Promise((resolve, reject) => {
    const headers = Object.assign({
      ':method': r.method, ':path': r.path, ':authority': r.authority, ':scheme': scheme,
    }, r.headers || {});
    const req = session.request(headers, { endStream: !r.chunks });
    const out = { status: null, headers: null, body: '', trailers: null };
    req.setEncoding('utf8');
    req.on('response', (h) => { out.status = h[':status']; out.headers = h; });
    req.on('trailers', (t) => { out.trailers = t; });
    req.on('data', (d) => { out.body += d; });
    req.on('end', () => resolve(out));
    req.on('error', reject);
    if (r.chunks) {
      (async () => {
        for (const c of r.chunks) {
          req.write(c);
          await sleep(r.delay_ms || 0);
        }
        req.end();
      })();
    }
  });
}

// RFC 6455 frames: a client's are masked.
function frame(opcode, payload) {
  const mask = crypto.randomBytes(4);
  const n = payload.length;
  let head;
  if (n < 126) head = Buffer.from([0x80 | opcode, 0x80 | n]);
  else if (n < 65536) { head = Buffer.alloc(4); head[0] = 0x80 | opcode; head[1] = 0x80 | 126; head.writeUInt16BE(n, 2); }
  else { head = Buffer.alloc(10); head[0] = 0x80 | opcode; head[1] = 0x80 | 127; head.writeBigUInt64BE(BigInt(n), 2); }
  const body = Buffer.from(payload);
  for (let i = 0; i < n; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

// Server frames (unmasked) out of a buffer: [{opcode, payload}], rest.
function parse(buf) {
  const out = [];
  for (;;) {
    if (buf.length < 2) break;
    let n = buf[1] & 0x7f, at = 2;
    if (n === 126) { if (buf.length < 4) break; n = buf.readUInt16BE(2); at = 4; }
    else if (n === 127) { if (buf.length < 10) break; n = Number(buf.readBigUInt64BE(2)); at = 10; }
    if (buf.length < at + n) break;
    out.push({ opcode: buf[0] & 0x0f, payload: buf.subarray(at, at + n) });
    buf = buf.subarray(at + n);
  }
  return [out, buf];
}

function websocket(session, ws) {
  return new Promise((resolve, reject) => {
    if (!session.remoteSettings.enableConnectProtocol)
      return reject(new Error('the server did not say SETTINGS_ENABLE_CONNECT_PROTOCOL'));
    const req = session.request({
      ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': scheme, ':path': ws.path,
      ':authority': ws.authority, 'sec-websocket-version': '13',
      'sec-websocket-protocol': 'chat',
    });
    const out = { status: null, headers: null, messages: [], ended: false };
    let buf = Buffer.alloc(0);
    req.on('response', (h) => {
      out.status = h[':status'];
      out.headers = h;
      if (h[':status'] === 200) req.write(frame(1, Buffer.from(ws.message)));
    });
    req.on('data', (d) => {
      let frames;
      [frames, buf] = parse(Buffer.concat([buf, d]));
      for (const f of frames) {
        out.messages.push(f.payload.toString('utf8'));
        if (out.messages.length === 1) req.end(); // END_STREAM: the half-close
      }
    });
    req.on('end', () => { out.ended = true; resolve(out); });
    req.on('close', () => resolve(out));
    req.on('error', reject);
  });
}

const deadline = setTimeout(() => {
  process.stdout.write(JSON.stringify({ error: 'no answer within 20 s' }));
  process.exit(1);
}, 20000);

(async () => {
  const session = connect();
  const settings = await new Promise((resolve, reject) => {
    session.once('remoteSettings', resolve);
    session.once('error', reject);
  });
  const results = await Promise.all((cfg.requests || []).map((r) => request(session, r)));
  const ws = cfg.websocket ? await websocket(session, cfg.websocket) : null;
  const alpn = session.alpnProtocol;
  session.close();
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify({ alpn, settings, results, ws }));
})().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }));
  process.exit(1); // an open session would keep the process alive
});
