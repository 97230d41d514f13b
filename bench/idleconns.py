#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, sends one GET on each, reads
the response, and keeps every connection open and idle.

    idleconns.py HOST PORT HOSTHEADER N READYFILE [tls]

With "tls" each connection is TLS (no certificate check, SNI = HOSTHEADER).

When all are done it writes one line to READYFILE:
    open=<conns open> ok=<200s> bad=<other statuses> errors=<failures> [first=<first error>]
then idles. On SIGUSR1 it counts the connections the peer has not closed,
appends "still_open=<n>" to READYFILE, closes everything and exits.
"""
import asyncio
import os
import resource
import signal
import ssl
import sys


async def main():
    host, port, hosthdr, n, readyfile = (sys.argv[1], int(sys.argv[2]),
                                         sys.argv[3], int(sys.argv[4]),
                                         sys.argv[5])
    ctx = None
    if len(sys.argv) > 6 and sys.argv[6] == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    req = (f"GET / HTTP/1.1\r\nHost: {hosthdr}\r\n"
           f"User-Agent: idleconns\r\n\r\n").encode()
    sem = asyncio.Semaphore(200)
    conns = []
    stats = {"ok": 0, "bad": 0, "errors": 0, "first": ""}

    async def one():
        async with sem:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection(host, port, ssl=ctx,
                                            server_hostname=hosthdr if ctx else None), 30)
                w.write(req)
                await w.drain()
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
                status = int(head.split(b" ", 2)[1])
                length = 0
                for ln in head.split(b"\r\n")[1:]:
                    k, _, v = ln.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                if length:
                    await asyncio.wait_for(r.readexactly(length), 30)
                conns.append((r, w))
                stats["ok" if status == 200 else "bad"] += 1
            except Exception as e:  # noqa: BLE001 - reported, not raised
                stats["errors"] += 1
                if not stats["first"]:
                    stats["first"] = f"{type(e).__name__}: {e}"

    await asyncio.gather(*(one() for _ in range(n)))
    line = (f"open={len(conns)} ok={stats['ok']} bad={stats['bad']} "
            f"errors={stats['errors']}")
    if stats["first"]:
        line += f" first={stats['first']!r}"
    done = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, done.set)
    with open(readyfile + ".tmp", "w") as f:
        f.write(line + "\n")
    os.replace(readyfile + ".tmp", readyfile)

    await done.wait()
    await asyncio.sleep(0)
    still = sum(1 for r, _ in conns if not r.at_eof())
    with open(readyfile, "a") as f:
        f.write(f"still_open={still}\n")
    for _, w in conns:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
