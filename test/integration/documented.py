"""What README.md documents, read from README.md itself: the one place the
access-log keys and the metric names are listed (the config keys are the
other way round: README's table is `edgeproxy --print-config`). Tests compare the proxy's
output with these exactly, so an undocumented key or metric (or a documented
one the proxy does not emit) fails a test instead of drifting.

- access_log_keys(): the keys of the example line under "**Access log.**",
  in order.
- egress_log_keys(): the keys of the example lines under "**Egress lines.**"
  (a TLS connection's, a port-80 request's), in order.
- metric_families(): {name: type} from the metrics table under "## Admin
  endpoints and metrics" (first column `name{labels}`, second the type).
- config_table(): the lines of the key table under "## Configuration".
- egress_demo_excerpt(): the lines of the run of `make egress-demo` shown
  under "**The demo.**".
"""

import json
import re

from harness import REPO_ROOT

README = REPO_ROOT / "README.md"


def _text():
    return README.read_text(encoding="utf-8")


def access_log_keys():
    text = _text()
    start = text.index("**Access log.**")
    m = re.compile(r"```json\n(.*?)\n```", re.S).search(text, start)
    assert m, "README: no ```json example after **Access log.**"
    obj = json.loads(m.group(1), object_pairs_hook=list)
    return [k for k, _ in obj]


def egress_log_keys():
    text = _text()
    start = text.index("**Egress lines.**")
    m = re.compile(r"```json\n(.*?)\n```", re.S).search(text, start)
    assert m, "README: no ```json example after **Egress lines.**"
    return [[k for k, _ in json.loads(line, object_pairs_hook=list)]
            for line in m.group(1).splitlines()]


def metric_families():
    text = _text()
    start = text.index("## Admin endpoints and metrics")
    end = text.index("\n## ", start + 1)
    out = {}
    for line in text[start:end].splitlines():
        m = re.match(r"^\| `(edgeproxy_[a-z0-9_]+)(\{[^`]*\})?` \| (counter|gauge|histogram) \|", line)
        if m:
            assert m.group(1) not in out, "README lists %s twice" % m.group(1)
            out[m.group(1)] = m.group(3)
    assert out, "README: no metrics table rows found"
    return out


def config_table():
    """The lines of the key table under "## Configuration", header and
    separator included: the output of `edgeproxy --print-config`."""
    text = _text()
    start = text.index("\n## Configuration\n")
    end = text.index("\n## ", start + 1)
    lines = text[start:end].splitlines()
    first = next((i for i, l in enumerate(lines) if l.startswith("| key |")), None)
    assert first is not None, "README: no key table under ## Configuration"
    out = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        out.append(line)
    return out


def egress_demo_excerpt():
    """The lines of the ```console block under "**The demo.**" (Egress,
    Deploying it): a run of scripts/egress-demo.sh, "..." where shortened."""
    text = _text()
    start = text.index("**The demo.**")
    m = re.compile(r"```console\n(.*?)\n```", re.S).search(text, start)
    assert m, "README: no ```console block after **The demo.**"
    return m.group(1).splitlines()
