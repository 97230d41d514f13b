"""Issue 13, a real browser end to end: headless Chromium (Debian's package)
opens https://<port>-<id>.sandbox.test:<port>/ through the proxy's TLS
listener, the name mapped to 127.0.0.1 by --host-resolver-rules and the
test certificate trusted the way a user's machine trusts a CA (an NSS
database in Chromium's HOME: see browser.py; no certificate errors are
ignored). The page, served by sandbox A, fetches sandbox B cross-origin
(CORS, with a preflight) and opens a WebSocket to wss://<A>/ws; a second
page fetches a private sandbox without its token.

How the test learns what the page saw: the page reports to a collector.
Its script gathers its observations (the navigation's nextHopProtocol, the
cross-origin fetch's status, header and body, the WebSocket's echo) and
POSTs them as JSON to /report on sandbox A, through the proxy like every
other request; the test's upstream records the report. Why not the DevTools
protocol: driving Chromium over --remote-debugging-port needs a WebSocket
client and a CDP session in the test, more moving parts for the same facts,
while the collector needs only the upstream the test has anyway (and the
report is one more request the browser makes over HTTP/2). As second
evidence the page writes the same JSON into its DOM, Chromium's --dump-dom
of it must agree, and a screenshot is left in the test's workdir for a
person to look at.

Bounded and deterministic: --dump-dom prints once the page's load event
fired, and the page holds its load event with an image (/held/...) that
sandbox A answers only when the report has arrived, or after HOLD_S so a
broken run still dumps what the page saw. The page gives the WebSocket
5 s; Chromium runs at most CHROMIUM_TIMEOUT_S (its process group is killed
after that). A failure message carries the report, the DOM and the tail of
Chromium's stderr; each test prints what it saw (pytest -s).

Where Chromium is not installed the tests fail, saying to run
scripts/deps.sh; they skip instead only when EDGEPROXY_BROWSER_OPTIONAL=1.
"""

import base64
import hashlib
import html
import json
import os
import re
import struct
import threading
import uuid

import pytest

import browser
from browser import Browser
from harness import DOMAIN, make_cert, new_sid, private_record, public_record, sandbox_host, wait_until
from upstreams import EchoUpstream

CHROMIUM_TIMEOUT_S = 30.0
HOLD_S = 10.0  # how long /held waits for the report

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3

# The page's script. CONFIG: {fetch, probe, ws, message, report}; each step
# records what it saw or the error it met, never stops the others.
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>edgeproxy browser test</title></head>
<body><h1>edgeproxy browser test</h1><pre id="out">running</pre>
<script>
const cfg = %(config)s;
const seen = {origin: location.origin};
function show(state) {
  document.title = state;
  document.getElementById('out').textContent = JSON.stringify(seen, null, 1);
}
async function step(name, fn) {
  try { await fn(); } catch (e) { seen[name + '_error'] = String(e); }
}
async function main() {
  const nav = performance.getEntriesByType('navigation')[0];
  seen.page_protocol = nav ? nav.nextHopProtocol : null;
  if (cfg.fetch) await step('fetch', async () => {
    const r = await fetch(cfg.fetch, cfg.probe ? {headers: {'X-Probe': cfg.probe}} : {});
    seen.fetch_status = r.status;
    seen.fetch_from = r.headers.get('X-From');
    seen.fetch_body = await r.text();
    const t = performance.getEntriesByName(cfg.fetch)[0];
    seen.fetch_protocol = t ? t.nextHopProtocol : null;
  });
  if (cfg.ws) await step('ws', () => new Promise((resolve, reject) => {
    const ws = new WebSocket(cfg.ws);
    const timer = setTimeout(() => reject(new Error('no echo within 5 s')), 5000);
    ws.onopen = () => ws.send(cfg.message);
    ws.onmessage = (ev) => { clearTimeout(timer); seen.ws_echo = ev.data; ws.close(1000); resolve(); };
    ws.onerror = () => { clearTimeout(timer); reject(new Error('WebSocket error')); };
  }));
  show('reporting');
  await step('report', async () => {
    const r = await fetch(cfg.report, {method: 'POST', body: JSON.stringify(seen),
                                       headers: {'Content-Type': 'application/json'}});
    seen.report_status = r.status;
  });
  show('done');
}
main();
</script>
<img src="%(held)s" alt="" width="1" height="1">
</body></html>
"""

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'


class SandboxApp(EchoUpstream):
    """A sandbox's web app as a browser meets it (HTTP/1.1 behind the proxy,
    recording every request like EchoUpstream):

      GET /page/N       the HTML registered in pages["/page/N"]
      GET /held/N       an image, answered once /report/N arrived (at most HOLD_S)
      POST /report/N    the page's JSON observations: reports[N]
      OPTIONS /data/N   CORS preflight: allowed only for `cors_origin`
      GET /data/N       "hello from <name> N", X-From: <name>, CORS headers
      /ws/... Upgrade   RFC 6455 echo: each text message back as "echo:" + it
                        (frames unmasked, as a server must send them; the
                        raw echo of EchoUpstream would be refused by a browser)
    Anything else gets EchoUpstream's JSON echo."""

    def __init__(self, name):
        self.pages = {}
        self.reports = {}
        self.report_events = {}
        self.ws_messages = []
        self.cors_origin = None
        super().__init__(name=name)  # starts serving

    def _report_event(self, nonce):
        with self.lock:
            return self.report_events.setdefault(nonce, threading.Event())

    def wait_report(self, nonce, timeout):
        self._report_event(nonce).wait(timeout)
        with self.lock:
            return self.reports.get(nonce)

    @staticmethod
    def _send(s, status, headers, body=b""):
        reason = {200: "OK", 204: "No Content", 403: "Forbidden"}[status]
        head = "HTTP/1.1 %d %s\r\n" % (status, reason)
        if status != 204:
            headers = list(headers) + [("Content-Length", str(len(body)))]
        head += "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
        s.sendall(head.encode("latin-1") + body)

    def _cors(self, rec):
        origin = rec.header("origin")
        if origin is None or origin != self.cors_origin:
            return []
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]

    def _answer(self, s, r, rec):
        path = rec.target.split("?", 1)[0]
        kind, _, nonce = path[1:].partition("/")
        if kind == "ws" and (rec.header("upgrade") or "").lower() == "websocket":
            return self._websocket(s, r, rec)
        if kind == "page" and path in self.pages:
            self._send(s, 200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                       self.pages[path].encode())
        elif kind == "held":
            self._report_event(nonce).wait(HOLD_S)
            self._send(s, 200, [("Content-Type", "image/svg+xml"), ("Cache-Control", "no-store")], SVG)
        elif kind == "report" and rec.method == "POST":
            with self.lock:
                self.reports[nonce] = json.loads(rec.body)
            self._report_event(nonce).set()
            self._send(s, 204, [])
        elif kind == "data" and rec.method == "OPTIONS":
            cors = self._cors(rec)
            if not cors:
                self._send(s, 403, [("Content-Type", "text/plain")], b"origin not allowed")
            else:
                self._send(s, 204, cors + [("Access-Control-Allow-Methods", "GET"),
                                           ("Access-Control-Allow-Headers", "X-Probe"),
                                           ("Access-Control-Max-Age", "0")])
        elif kind == "data":
            cors = self._cors(rec)
            if cors:
                cors += [("Access-Control-Expose-Headers", "X-From"),
                         ("Timing-Allow-Origin", self.cors_origin)]
            self._send(s, 200, cors + [("Content-Type", "text/plain"), ("X-From", self.name)],
                       ("hello from %s %s" % (self.name, nonce)).encode())
        else:
            return super()._answer(s, r, rec)
        return True

    def _websocket(self, s, r, rec):
        accept = base64.b64encode(hashlib.sha1((rec.header("sec-websocket-key", "") + WS_GUID).encode())
                                  .digest()).decode()
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
        while True:
            b0, b1 = r.exact(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", r.exact(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", r.exact(8))
            mask = r.exact(4) if b1 & 0x80 else b"\0\0\0\0"
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(r.exact(n)))
            if opcode == 0x1:  # text (a browser sends short messages unfragmented)
                with self.lock:
                    self.ws_messages.append(payload.decode())
                self._ws_send(s, 0x1, b"echo:" + payload)
            elif opcode == 0x9:
                self._ws_send(s, 0xA, payload)
            elif opcode == 0x8:
                self._ws_send(s, 0x8, payload[:2])
                return False

    @staticmethod
    def _ws_send(s, opcode, payload):
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n))
        s.sendall(head + payload)


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def chromium():
    gone = browser.missing()
    if gone:
        if os.environ.get(browser.OPTIONAL_ENV) == "1":
            pytest.skip("%s not installed and %s=1" % (gone, browser.OPTIONAL_ENV))
        pytest.fail("%s not installed: scripts/deps.sh installs chromium and libnss3-tools "
                    "(set %s=1 where browser tests may skip)" % (gone, browser.OPTIONAL_ENV), pytrace=False)
    return browser.version()


@pytest.fixture(scope="module")
def cert(workdir):
    d = workdir / "tls"
    d.mkdir(exist_ok=True)
    return make_cert(d, "wild", DOMAIN)


@pytest.fixture(scope="module")
def access_log(workdir):
    return workdir / "access.log"


@pytest.fixture(scope="module")
def proxy(make_proxy, cert, access_log):
    p = make_proxy({"access_log": {"path": str(access_log)}}, name="browser",
                   extra_listeners=[{"tls": {"certificates": [cert]}}])
    p.tls_port = p.extra_ports[0]
    return p


@pytest.fixture(scope="module")
def web(chromium, workdir, cert):
    b = Browser(workdir / "chromium", trust=[cert["cert"]], host_rules="MAP *.%s 127.0.0.1" % DOMAIN)
    yield b
    b.close()


@pytest.fixture(scope="module")
def apps():
    a, b = SandboxApp("app-a"), SandboxApp("app-b")
    yield a, b
    a.stop()
    b.stop()


def https_origin(proxy, host):
    return "https://%s:%d" % (host, proxy.tls_port)


def open_page(web, proxy, app, host, config, workdir):
    """Registers a page on `app` (sandbox `host`), loads it in Chromium and
    returns (report or None, visit, nonce)."""
    nonce = uuid.uuid4().hex[:12]
    config = dict(config, report="/report/" + nonce)
    app.pages["/page/" + nonce] = PAGE % {"config": json.dumps(config), "held": "/held/" + nonce}
    visit = web.load("%s/page/%s" % (https_origin(proxy, host), nonce), timeout=CHROMIUM_TIMEOUT_S,
                     screenshot=workdir / ("browser-%s.png" % nonce))
    return app.wait_report(nonce, 0), visit, nonce


def dom_observations(visit):
    m = re.search(r'<pre id="out">(.*?)</pre>', visit.dom, re.S)
    assert m, "no <pre id=out> in the DOM\n" + visit.describe()
    return json.loads(html.unescape(m.group(1)))


def access_lines(access_log, pred, n, what):
    """The first n access-log lines matching pred (the log is flushed once
    a second)."""
    def lines():
        if not access_log.exists():
            return []
        return [l for l in (json.loads(x) for x in access_log.read_text().splitlines()) if pred(l)]
    wait_until(lambda: len(lines()) >= n, timeout=5, what=what)
    return lines()


# --------------------------------------------------------------------------
# Tests


def test_page_over_h2_fetches_second_sandbox_and_echoes_websocket(
        proxy, web, apps, redis_server, access_log, workdir, chromium):
    a, b = apps
    sid_a, sid_b = new_sid("ba"), new_sid("bb")
    redis_server.set_record(sid_a, public_record())
    redis_server.set_record(sid_b, public_record())
    host_a, host_b = sandbox_host(a.port, sid_a), sandbox_host(b.port, sid_b)
    origin_a = https_origin(proxy, host_a)
    b.cors_origin = origin_a
    probe = uuid.uuid4().hex[:12]
    data_url = "%s/data/%s" % (https_origin(proxy, host_b), probe)
    message = "ping " + probe
    report, visit, nonce = open_page(web, proxy, a, host_a, {
        "fetch": data_url, "probe": probe,
        "ws": "wss://%s:%d/ws/%s" % (host_a, proxy.tls_port, probe),
        "message": message}, workdir)

    def why():
        return "page report: %s\n%s" % (json.dumps(report, indent=1), visit.describe())

    assert report is not None, "the page never reported\n" + why()
    assert report["origin"] == origin_a, why()
    # HTTP/2 negotiated (ALPN h2 on the TLS listener) for the page itself
    assert report["page_protocol"] == "h2", why()
    # the cross-origin fetch reached B and its answer reached the page
    assert "fetch_error" not in report, why()
    assert report["fetch_status"] == 200, why()
    assert report["fetch_body"] == "hello from app-b %s" % probe, why()
    assert report["fetch_from"] == "app-b", why()  # exposed by Access-Control-Expose-Headers
    assert report["fetch_protocol"] == "h2", why()  # B's answer came over HTTP/2 too
    # the WebSocket through wss://<A>/ws: sent, echoed by the sandbox, received
    assert "ws_error" not in report, why()
    assert report["ws_echo"] == "echo:" + message, why()
    assert message in a.ws_messages

    # B saw the preflight, then the request, both with A's origin, via the proxy
    recs = b.requests_for("/data/" + probe)
    assert [r.method for r in recs] == ["OPTIONS", "GET"], recs
    pre, get = recs
    assert pre.header("origin") == origin_a and pre.header("access-control-request-method") == "GET", pre
    assert "x-probe" in pre.header("access-control-request-headers", "").lower(), pre
    assert get.header("origin") == origin_a and get.header("x-probe") == probe, get
    for rec in recs:
        assert rec.header_all("x-forwarded-proto") == ["https"], rec
        assert rec.header("x-forwarded-host", "").split(":")[0] == host_b, rec

    # The DOM Chromium dumped says the same as the report (second evidence).
    dom = dom_observations(visit)
    assert {k: dom.get(k) for k in report} == report, why()

    # The proxy's access log: every request of the page over HTTP/2, the
    # WebSocket too: the proxy offers RFC 8441 extended CONNECT
    # (SETTINGS_ENABLE_CONNECT_PROTOCOL), so Chromium opens it as a stream of
    # the page's connection (CONNECT, 200) rather than an HTTP/1.1 Upgrade on
    # a connection of its own.
    lines = access_lines(access_log, lambda l: nonce in l["path"] or probe in l["path"], 6,
                         "access-log lines of the page, its fetch, the report and the WebSocket")
    by = {(l["method"], l["path"].split("/")[1]): l for l in lines}
    for key, host in ((("GET", "page"), host_a), (("GET", "held"), host_a), (("POST", "report"), host_a),
                      (("OPTIONS", "data"), host_b), (("GET", "data"), host_b)):
        assert key in by, (key, lines)
        assert by[key]["protocol"] == "HTTP/2", (key, by[key])
        assert by[key]["host"].split(":")[0] == host, by[key]
        assert by[key]["sandbox_id"] == (sid_a if host == host_a else sid_b), by[key]
    ws_lines = [l for l in lines if l["path"] == "/ws/" + probe]
    assert len(ws_lines) == 1 and ws_lines[0]["host"].split(":")[0] == host_a, lines
    ws_protocol = ws_lines[0]["protocol"]
    assert (ws_protocol, ws_lines[0]["method"], ws_lines[0]["status"]) == ("HTTP/2", "CONNECT", 200), ws_lines
    print("\nbrowser: %s; page %s, cross-origin fetch %s, WebSocket over %s (status %s); "
          "Chromium ran %.1f s; screenshot %s" % (
              chromium, report["page_protocol"], report.get("fetch_protocol"), ws_protocol,
              ws_lines[0]["status"], visit.seconds, visit.screenshot))


def test_private_sandbox_without_token_is_403_in_the_browser(
        proxy, web, apps, redis_server, access_log, workdir):
    a, b = apps
    sid_a, sid_c = new_sid("ba"), new_sid("bc")
    redis_server.set_record(sid_a, public_record())
    redis_server.set_record(sid_c, private_record("s3cret-" + sid_c))
    host_a, host_c = sandbox_host(a.port, sid_a), sandbox_host(b.port, sid_c)
    probe = uuid.uuid4().hex[:12]
    report, visit, nonce = open_page(web, proxy, a, host_a, {
        "fetch": "%s/data/%s" % (https_origin(proxy, host_c), probe)}, workdir)

    def why():
        return "page report: %s\n%s" % (json.dumps(report, indent=1), visit.describe())

    assert report is not None, "the page never reported\n" + why()
    assert report["page_protocol"] == "h2", why()
    # the proxy's own 403, readable cross-origin (Access-Control-Allow-Origin: *)
    assert "fetch_error" not in report and report["fetch_status"] == 403, why()
    body = json.loads(report["fetch_body"])
    assert body["code"] == 403 and body["sandboxId"] == sid_c, why()
    assert report["fetch_from"] is None, why()  # not the sandbox's answer
    assert not b.requests_for("/data/" + probe), "the private sandbox was reached without its token"

    # Opened directly, the same URL shows the proxy's HTML page.
    direct = web.load("%s/data/%s" % (https_origin(proxy, host_c), probe), timeout=CHROMIUM_TIMEOUT_S,
                      screenshot=workdir / ("browser-403-%s.png" % probe))
    assert "<title>403 Forbidden</title>" in direct.dom, direct.describe()
    assert "<code>%s</code>" % sid_c in direct.dom, direct.describe()
    assert not b.requests_for("/data/" + probe)

    lines = access_lines(access_log, lambda l: probe in l["path"], 2, "the two 403 lines")
    assert [(l["status"], l["protocol"], l["upstream"]) for l in lines] == [(403, "HTTP/2", None)] * 2, lines
    print("\nbrowser: private sandbox without token: fetch saw %d, page showed the proxy's 403 page; "
          "Chromium ran %.1f + %.1f s" % (report["fetch_status"], visit.seconds, direct.seconds))
