"""Sandbox-side probes of test_egress.py, run inside its sandbox network
namespace. One JSON result on stdout.

  egress_client.py [--src ADDR] [--cafile F] KIND ARGS...

  http IP PORT HOST [HOST...]   one keep-alive connection, a GET per Host:
                                [{"status", "server", "json"|"body"}, ...]
  raw IP PORT HEX               sends bytes, reads to EOF/reset: {"data", "end"}
  tls IP PORT SNI [MODE]        TLS with that SNI, then a GET: {"server"} or
                                {"error"}; MODE "segments" sends the
                                ClientHello in two TCP segments, "records"
                                in two TLS records, "ech" adds an ECH
                                extension to the hello
  tcp IP PORT [SEND] [shut]     connect, read the greeting (if any), send,
                                half-close with "shut", read to the end:
                                {"data", "end": "eof"|"reset"|"timeout"}
  greet IP PORT                 reads the first line the server sends:
                                {"data", "end", "after": seconds}
  hold IP PORT                  reads a banner, prints {"opened"} at once,
                                then waits for the end: {"end", "after"}
"""

import errno
import json
import socket
import ssl
import struct
import sys
import time

args = sys.argv[1:]
src = None
cafile = None
while args and args[0].startswith("--"):
    if args[0] == "--src":
        src = args[1]
    elif args[0] == "--cafile":
        cafile = args[1]
    args = args[2:]


def connect(ip, port, timeout=5):
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect((ip, int(port)))
    return s


def read_to_end(s, limit=1 << 20):
    data = b""
    try:
        while len(data) < limit:
            d = s.recv(65536)
            if not d:
                return data, "eof"
            data += d
    except ConnectionResetError:
        return data, "reset"
    except socket.timeout:
        return data, "timeout"
    return data, "limit"


def read_response(f):
    line = f.readline()
    if not line:
        return None
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline().strip()
        if not h:
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", 0)))
    out = {"status": status, "headers": headers}
    try:
        out["json"] = json.loads(body)
    except ValueError:
        out["body"] = body.decode("latin-1")
    return out


def http(ip, port, *hosts):
    s = connect(ip, port)
    f = s.makefile("rb")
    out = []
    for h in hosts:
        try:
            s.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: 1.2.3.4\r\n"
                       "e2b-traffic-access-token: tok\r\n\r\n" % (h, h)).encode())
            r = read_response(f)
        except OSError as e:
            r = {"error": errno.errorcode.get(e.errno, str(e))}
        if r is None:
            r = {"error": "eof"}
        out.append(r)
    return out


def raw(ip, port, hexdata):
    s = connect(ip, port)
    s.sendall(bytes.fromhex(hexdata))
    data, end = read_to_end(s)
    return {"data": data.decode("latin-1"), "end": end}


def records(data, split_at):
    """The TLS records in `data`, with the first handshake record's payload
    cut in two records at split_at."""
    ctype, ver, n = data[0], data[1:3], struct.unpack("!H", data[3:5])[0]
    payload, rest = data[5:5 + n], data[5 + n:]
    a, b = payload[:split_at], payload[split_at:]
    return (bytes([ctype]) + ver + struct.pack("!H", len(a)) + a +
            bytes([ctype]) + ver + struct.pack("!H", len(b)) + b + rest)


def add_ech(hello):
    """Adds an encrypted_client_hello extension (0xfe0d, outer, a dummy
    body) to a ClientHello record: lengths fixed up at every level."""
    rec = bytearray(hello)
    body = rec[5:]
    # handshake header (4) + version (2) + random (32)
    i = 4 + 2 + 32
    i += 1 + body[i]                                  # session id
    i += 2 + struct.unpack("!H", body[i:i + 2])[0]    # cipher suites
    i += 1 + body[i]                                  # compression
    ext_len_at = i
    # outer(0), HPKE KDF 1, AEAD 1, config 0, enc <0 bytes>, payload <1 byte>
    body_ech = bytes([0]) + struct.pack("!HHB", 1, 1, 0) + struct.pack("!H", 0) + \
        struct.pack("!H", 1) + b"\xaa"
    ext = struct.pack("!HH", 0xfe0d, len(body_ech)) + body_ech
    body = body + ext
    old = struct.unpack("!H", body[ext_len_at:ext_len_at + 2])[0]
    body[ext_len_at:ext_len_at + 2] = struct.pack("!H", old + len(ext))
    hlen = struct.unpack("!I", b"\x00" + bytes(body[1:4]))[0] + len(ext)
    body[1:4] = struct.pack("!I", hlen)[1:]
    return bytes(rec[:3]) + struct.pack("!H", len(body)) + bytes(body)


def tls(ip, port, sni, mode=""):
    ctx = ssl.create_default_context(cafile=cafile)
    s = connect(ip, port)
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outg, server_hostname=sni)
    first = True
    try:
        while True:
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = outg.read()
            if data:
                if first and mode == "segments":
                    s.sendall(data[:60])
                    time.sleep(0.2)
                    s.sendall(data[60:])
                elif first and mode == "records":
                    s.sendall(records(data, 50))
                elif first and mode == "ech":
                    s.sendall(add_ech(data))
                else:
                    s.sendall(data)
                first = False
            if done:
                break
            d = s.recv(65536)
            if not d:
                return {"error": "eof"}
            inc.write(d)
        obj.write(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % sni).encode())
        s.sendall(outg.read())
        resp = b""
        while True:
            try:
                resp += obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            d = s.recv(65536)
            if not d:
                break
            inc.write(d)
        body = resp.split(b"\r\n\r\n", 1)[1]
        return {"server": json.loads(body)["server"]}
    except ssl.SSLError as e:
        return {"error": e.reason or str(e)}
    except ConnectionResetError:
        return {"error": "reset"}
    except socket.timeout:
        return {"error": "timeout"}


def tcp(ip, port, send="", shut=""):
    try:
        s = connect(ip, port)
    except ConnectionResetError:
        # the reset came before connect() returned (refused at accept)
        return {"data": "", "end": "reset"}
    except OSError as e:
        return {"error": errno.errorcode.get(e.errno, str(e))}
    try:
        if send:
            s.sendall(send.encode())
        if shut:
            s.shutdown(socket.SHUT_WR)
    except OSError as e:
        return {"data": "", "end": "reset" if e.errno == errno.ECONNRESET else str(e)}
    data, end = read_to_end(s)
    return {"data": data.decode("latin-1"), "end": end}


def greet(ip, port):
    try:
        s = connect(ip, port)
    except ConnectionResetError:
        return {"data": "", "end": "reset"}
    t0 = time.monotonic()
    try:
        line = s.makefile("rb").readline().decode()
    except ConnectionResetError:
        return {"data": "", "end": "reset"}
    return {"data": line, "end": "line" if line else "eof", "after": time.monotonic() - t0}


def hold(ip, port):
    s = connect(ip, port, timeout=30)
    f = s.makefile("rb")
    print(json.dumps({"opened": f.readline().decode().strip()}), flush=True)
    t0 = time.monotonic()
    data, end = read_to_end(s)
    return {"end": end, "after": time.monotonic() - t0}


KINDS = {"http": http, "raw": raw, "tls": tls, "tcp": tcp, "greet": greet, "hold": hold}
print(json.dumps(KINDS[args[0]](*args[1:])), flush=True)
