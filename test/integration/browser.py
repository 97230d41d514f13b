"""Headless Chromium for the browser tests, from Debian's `chromium` package
(scripts/deps.sh installs it with `libnss3-tools` for certutil; nothing is
downloaded from anywhere else).

    b = Browser(workdir, trust=[cert_pem], host_rules="MAP *.sandbox.test 127.0.0.1")
    visit = b.load("https://3000-abc.sandbox.test:8443/page", screenshot=path)
    visit.dom, visit.stderr_tail(), visit.seconds
    b.close()

Trust: the real path. Chromium on Linux reads the NSS database in
$HOME/.pki/nssdb, so the Browser makes a HOME of its own (a temp dir), creates
the database with certutil and imports each given certificate as a trusted CA
(`-t CT,,`). No --ignore-certificate-errors of any kind: a certificate the
browser would not accept fails the load (net::ERR_CERT_AUTHORITY_INVALID in
the stderr tail).

Each load() is one `chromium --headless --dump-dom [--screenshot=...]` run
with a fresh --user-data-dir (removed after). Chromium prints the DOM once the
page's load event fired, so a page that wants its asynchronous work in the
dump holds its load event with a sub-resource its server answers late (see
test_browser.py). The run is bounded: past `timeout` the process group that
this module started is killed by its id.

Flags (the machine's notes for headless Chromium as root): --no-sandbox as
root, --disable-gpu, --disable-quic (the proxy speaks TCP only), and the
background-networking/component/sync switches so it dials nothing but the
page's hosts; --host-resolver-rules maps the sandbox names to loopback.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = os.environ.get("EDGEPROXY_CHROMIUM", "/usr/bin/chromium")
CERTUTIL = "/usr/bin/certutil"

# Set to 1 where a machine may lack Chromium: the browser tests then skip
# instead of failing. CI installs the deps, so there they always run.
OPTIONAL_ENV = "EDGEPROXY_BROWSER_OPTIONAL"

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
    "--window-size=900,700",
]

# Chromium's stderr lines that say nothing about the page (no D-Bus on a
# server, the Debian launcher's /dev/shm probe).
NOISE = ("dbus/", "unexpected operator")


def missing():
    """What is not installed, or None."""
    gone = [p for p in (CHROMIUM, CERTUTIL) if not os.access(p, os.X_OK)]
    return ", ".join(gone) or None


def version():
    out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


class Visit:
    def __init__(self, url, returncode, dom, stderr, seconds, timed_out, screenshot):
        self.url = url
        self.returncode = returncode
        self.dom = dom
        self.stderr = stderr
        self.seconds = seconds
        self.timed_out = timed_out
        self.screenshot = screenshot

    def stderr_tail(self, n=25):
        lines = [l for l in self.stderr.splitlines() if not any(x in l for x in NOISE)]
        return "\n".join(lines[-n:])

    def describe(self):
        """For failure messages: how the run ended, the DOM, Chromium's stderr."""
        return "chromium %s: %s after %.1fs\n--- DOM ---\n%s\n--- chromium stderr (tail) ---\n%s" % (
            self.url, "killed at the timeout" if self.timed_out else "exit %s" % self.returncode,
            self.seconds, self.dom[-3000:], self.stderr_tail())


class Browser:
    """A HOME with an NSS database trusting `trust` (PEM files), and the
    resolver rules. close() removes the HOME."""

    def __init__(self, workdir, trust=(), host_rules=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host_rules = host_rules
        self.home = Path(tempfile.mkdtemp(prefix="chromium-home-", dir=self.workdir))
        nssdb = self.home / ".pki" / "nssdb"
        nssdb.mkdir(parents=True)
        db = "sql:%s" % nssdb
        subprocess.run([CERTUTIL, "-N", "-d", db, "--empty-password"], check=True, capture_output=True)
        for i, pem in enumerate(trust):
            subprocess.run([CERTUTIL, "-A", "-d", db, "-n", "edgeproxy-test-%d" % i, "-t", "CT,,",
                            "-i", str(pem)], check=True, capture_output=True)

    def close(self):
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def load(self, url, timeout=20.0, screenshot=None):
        """One headless run: the DOM after the load event (and a PNG when
        `screenshot` names a path). Never raises on a browser failure: the
        Visit says what happened."""
        profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=self.workdir))
        argv = [CHROMIUM] + FLAGS + ["--user-data-dir=%s" % profile, "--dump-dom"]
        if self.host_rules:
            argv.append("--host-resolver-rules=%s" % self.host_rules)
        if screenshot:
            argv.append("--screenshot=%s" % screenshot)
        argv.append(url)
        env = dict(os.environ, HOME=str(self.home))
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=env, cwd=str(self.workdir),
                                start_new_session=True)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the group this call started
            out, err = proc.communicate()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # a helper left behind, if any
        except ProcessLookupError:
            pass
        seconds = time.monotonic() - t0
        shutil.rmtree(profile, ignore_errors=True)
        return Visit(url, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
                     seconds, timed_out, screenshot)
