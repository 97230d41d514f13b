#!/usr/bin/env python3
"""Discard origin for the streamed-upload test.

Reads HTTP/1.1 requests (Content-Length or chunked bodies), throws the body
away at no more than --rate bytes per second (a slow receiver, so a proxy
without backpressure would have to buffer), then answers 200 with the number
of body bytes it read. Keep-alive; one thread per connection.

    discard.py PORT [--rate BYTES_PER_SEC]
"""
import argparse
import socket
import threading
import time

CHUNK = 65536


class Conn:
    def __init__(self, sock, rate):
        self.sock = sock
        self.rate = rate
        self.buf = b""
        self.scratch = bytearray(CHUNK)
        self.t0 = None
        self.nread = 0

    def _throttle(self, n):
        if not self.rate:
            return
        if self.t0 is None:
            self.t0 = time.monotonic()
        self.nread += n
        ahead = self.nread / self.rate - (time.monotonic() - self.t0)
        if ahead > 0:
            time.sleep(ahead)

    def fill(self):
        d = self.sock.recv(CHUNK)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ValueError("line too long")
            self.fill()
        ln, _, self.buf = self.buf.partition(b"\r\n")
        return ln

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ValueError("head too long")
            self.fill()
        h, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return h

    def skip(self, n):
        """Discards exactly n body bytes."""
        left = n
        if self.buf:
            take = min(left, len(self.buf))
            self.buf = self.buf[take:]
            left -= take
            self._throttle(take)
        view = memoryview(self.scratch)
        while left > 0:
            got = self.sock.recv_into(view, min(left, CHUNK))
            if got == 0:
                raise EOFError
            left -= got
            self._throttle(got)
        return n


def serve(sock, rate):
    c = Conn(sock, rate)
    try:
        while True:
            head = c.head()
            lines = head.split(b"\r\n")
            length, chunked, close = 0, False, False
            for ln in lines[1:]:
                k, _, v = ln.partition(b":")
                k, v = k.strip().lower(), v.strip().lower()
                if k == b"content-length":
                    length = int(v)
                elif k == b"transfer-encoding" and b"chunked" in v:
                    chunked = True
                elif k == b"connection" and v == b"close":
                    close = True
            c.t0, c.nread = None, 0
            total = 0
            if chunked:
                while True:
                    size = int(c.line().split(b";")[0], 16)
                    if size == 0:
                        while c.line():  # trailers
                            pass
                        break
                    total += c.skip(size)
                    c.line()
            else:
                total = c.skip(length)
            body = b"%d\n" % total
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            if close:
                break
    except (EOFError, ConnectionError, ValueError):
        pass
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--rate", type=float, default=0,
                    help="bytes per second per request, 0 = unlimited")
    a = ap.parse_args()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(128)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=serve, args=(s, a.rate), daemon=True).start()


if __name__ == "__main__":
    main()
