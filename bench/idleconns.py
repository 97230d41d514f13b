#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, sends one GET on each, reads
the response, and keeps every connection open and idle.

    idleconns.py [--src ADDR] [--tls] [--silent] HOST PORT HOSTHEADER N READYFILE

--src binds the connections to ADDR. --tls speaks TLS (SNI HOSTHEADER, the
certificate not checked) before the GET: a spliced egress connection.
--silent connects and sends nothing at all (a proxy peeking for a
ClientHello keeps waiting); such a connection counts as ok once open.

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
    args = sys.argv[1:]
    src, tls, silent = None, None, False
    while args and args[0].startswith("--"):
        if args[0] == "--src":
            src = (args[1], 0)
            args = args[1:]
        elif args[0] == "--tls":
            tls = ssl.create_default_context()
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        elif args[0] == "--silent":
            silent = True
        args = args[1:]
    host, port, hosthdr, n, readyfile = (args[0], int(args[1]), args[2],
                                         int(args[3]), args[4])
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
                    asyncio.open_connection(
                        host, port, local_addr=src, ssl=tls,
                        server_hostname=hosthdr if tls else None), 30)
                if silent:
                    conns.append((r, w))
                    stats["ok"] += 1
                    return
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
