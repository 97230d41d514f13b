'use strict';
// Node's global fetch (undici: HTTP/1.1, here over TLS) against the proxy,
// for test_node_interop.py. Sandbox host names resolve to 127.0.0.1 (a
// lookup of our own: fetch has no resolver option); the test certificate
// is trusted through NODE_EXTRA_CA_CERTS. Prints one JSON object: per
// request its status, headers and body.
//
// Config (argv[2], JSON): {requests: [{url, method, headers, body,
// chunks: [text...]}]}
const dns = require('dns');

const lookup = dns.lookup;
dns.lookup = function (hostname, options, callback) {
  if (typeof options === 'function') { callback = options; options = {}; }
  if (typeof options === 'number') options = { family: options };
  if (!hostname.endsWith('.sandbox.test')) return lookup(hostname, options, callback);
  if (options && options.all) return process.nextTick(callback, null, [{ address: '127.0.0.1', family: 4 }]);
  return process.nextTick(callback, null, '127.0.0.1', 4);
};

const cfg = JSON.parse(process.argv[2]);

async function one(r) {
  const init = { method: r.method || 'GET', headers: r.headers || {} };
  if (r.body !== undefined) init.body = r.body;
  if (r.chunks) {
    // a body of unknown length: undici sends it chunked
    const enc = new TextEncoder();
    init.body = new ReadableStream({
      async pull(controller) {
        const c = r.chunks.shift();
        if (c === undefined) controller.close();
        else { await new Promise((ok) => setTimeout(ok, 20)); controller.enqueue(enc.encode(c)); }
      },
    });
    init.duplex = 'half';
  }
  const res = await fetch(r.url, init);
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
}

const deadline = setTimeout(() => {
  process.stdout.write(JSON.stringify({ error: 'no answer within 20 s' }));
  process.exit(1);
}, 20000);

(async () => {
  const results = [];
  for (const r of cfg.requests) results.push(await one(r));
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify({ results }));
})().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e), cause: String(e && e.cause) }));
  process.exit(1); // an open session would keep the process alive
});
