"""The fake internet of test_egress.py, run inside its "internet" network
namespace: python3 egress_internet.py CERT KEY HOST[,HOST...]

On every host address:
  80    HTTP/1.1 (keep-alive): answers JSON {"server": the address it was
        reached on, "tls": false, "method", "path", "headers": [[k, v]...],
        "body": the request body's length}
  443   the same over TLS (CERT/KEY), except on BANNER hosts (below)
  2222  a banner service (server speaks first): "BANNER <address>\\n", then
        echoes lines until EOF
  7777  half-close: reads to EOF, then answers "got <n>\\n" and closes
  9999  reset: reads one chunk, then closes with a RST
BANNER hosts (203.0.113.30) speak the banner on 443 too. Prints "ready"
once everything listens; runs until killed."""

import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CERT, KEY, HOSTS = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
BANNER_HOSTS = {"203.0.113.30"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(5)
            self.request.do_handshake()
        super().setup()

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        out = json.dumps({
            "server": self.server.server_address[0],
            "tls": isinstance(self.request, ssl.SSLSocket),
            "method": self.command, "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = answer

    def log_message(self, *a):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, tls):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, Handler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(CERT, KEY)
            self.socket = ctx.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    def server_bind(self):
        # HTTPServer's own asks getfqdn(): a reverse DNS lookup that
        # times out in a namespace without a resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        pass


def serve_raw(host, port, fn):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(64)

    def loop():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=guard, args=(fn, c, host), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def guard(fn, c, host):
    try:
        c.settimeout(30)
        fn(c, host)
    except OSError:
        pass
    finally:
        c.close()


def banner(c, host):
    c.sendall(b"BANNER %s\n" % host.encode())
    f = c.makefile("rb")
    for line in f:
        c.sendall(line)


def half_close(c, host):
    n = 0
    while True:
        data = c.recv(65536)
        if not data:
            break
        n += len(data)
    c.sendall(b"got %d\n" % n)


def reset(c, host):
    c.recv(65536)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


for h in HOSTS:
    for port, tls in ((80, False), (443, True)):
        if port == 443 and h in BANNER_HOSTS:
            serve_raw(h, 443, banner)
            continue
        s = Server((h, port), tls)
        threading.Thread(target=s.serve_forever, daemon=True).start()
    serve_raw(h, 2222, banner)
    serve_raw(h, 7777, half_close)
    serve_raw(h, 9999, reset)
print("ready", flush=True)
threading.Event().wait()
