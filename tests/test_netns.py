"""Media through a NAT, a firewall and TURN, in network namespaces the tests build themselves.

Topology (three namespaces per test, unique names, removed on every path)::

    client ns                      nat ns                                 gw ns
    198.51.100.2/24 ──veth── 198.51.100.1 (public, announced)             lo: echo upstream
                             10.213.0.1 ───────────────veth──────── 10.213.0.2/24 gateway
                             DNAT public:HTTP     -> gw:HTTP              default via .1
                             DNAT public:UDP range -> gw:UDP range (only if forwarded)
                             SNAT gw -> public; FORWARD: replies + the DNATed flows only
                             INPUT: TURN (3478) and relay ports only; coturn (TURN test)

The client has no route to 10.213.0.0/24: it can reach only the public address. The firewall
forwards no flow the gateway starts, so peer-reflexive discovery cannot rescue a call either:
only the announced candidate (or TURN) can connect it. The gateway runs as
``python -m gateway serve`` in its namespace with ``bench.echo_upstream`` on its loopback
(each caller append comes back as agent audio, so audio heard by the caller has gone both
ways); the caller is ``tests/netns_client.py`` in the client namespace.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

GW_PRIVATE = "10.213.0.2"
NAT_INSIDE = "10.213.0.1"
PUBLIC = "198.51.100.1"
CLIENT = "198.51.100.2"
HTTP_PORT = 8080
UPSTREAM_PORT = 9000
PORT_MIN, PORT_MAX = 40000, 40009
TURN_PORT = 3478
RELAY_MIN, RELAY_MAX = 49152, 49200
API_KEY = "sk-netns-test"
TURN_SECRET = "netns-turn-shared-secret"
PREFIX = "gwt"

_seq = itertools.count()


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns, veth, iptables)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: apt-get install -y iproute2"
    probe = f"{PREFIX}{os.getpid()}probe"
    r = _run("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"the kernel refuses network namespaces here: {r.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


WHY_NOT = _why_not()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


def _remove_stale() -> None:
    """Namespaces left by a test process that was killed (its pid is in the name)."""
    for name in _run("ip", "netns", "list", check=False).stdout.split():
        m = re.fullmatch(rf"{PREFIX}(\d+)x\d+-\w+", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _run("ip", "netns", "del", name, check=False)


class Net:
    """Three namespaces and the processes started in them; ``close()`` removes everything."""

    def __init__(self, tmp: Path) -> None:
        n = next(_seq)
        self.tmp = tmp
        self.gw, self.nat, self.cl = (f"{PREFIX}{os.getpid()}x{n}-{r}"
                                      for r in ("gw", "nat", "cl"))
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def ns(self, ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", ns, *argv)

    def build(self, *, forward_media: bool) -> None:
        for ns in (self.gw, self.nat, self.cl):
            _run("ip", "netns", "add", ns)
            self.ns(ns, "ip", "link", "set", "lo", "up")
            self.ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        _run("ip", "link", "add", "name", "eth0", "netns", self.gw, "type", "veth",
             "peer", "name", "in0", "netns", self.nat)
        _run("ip", "link", "add", "name", "eth0", "netns", self.cl, "type", "veth",
             "peer", "name", "out0", "netns", self.nat)
        for ns, dev, addr in ((self.gw, "eth0", f"{GW_PRIVATE}/24"),
                              (self.nat, "in0", f"{NAT_INSIDE}/24"),
                              (self.nat, "out0", f"{PUBLIC}/24"),
                              (self.cl, "eth0", f"{CLIENT}/24")):
            self.ns(ns, "ip", "addr", "add", addr, "dev", dev)
            self.ns(ns, "ip", "link", "set", dev, "up")
        self.ns(self.gw, "ip", "route", "add", "default", "via", NAT_INSIDE)
        self.ns(self.nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        media = f"{PORT_MIN}:{PORT_MAX}"
        rules = [
            # 1:1 NAT of the gateway: the public address's HTTP port and (if open) media range.
            "-t nat -A PREROUTING -i out0 -d {pub} -p tcp --dport {http} "
            "-j DNAT --to-destination {gw}",
            "-t nat -A POSTROUTING -o out0 -s {gw} -j SNAT --to-source {pub}",
            "-P FORWARD DROP",
            "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            "-A FORWARD -i out0 -o in0 -d {gw} -p tcp --dport {http} -j ACCEPT",
            # The NAT box itself: TURN and its relay ports, nothing else.
            "-P INPUT DROP",
            "-A INPUT -i lo -j ACCEPT",
            "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            "-A INPUT -p udp --dport {turn} -j ACCEPT",
            "-A INPUT -i out0 -p udp --dport {relay} -j ACCEPT",
        ]
        if forward_media:
            rules += [
                "-t nat -A PREROUTING -i out0 -d {pub} -p udp --dport {media} "
                "-j DNAT --to-destination {gw}",
                "-A FORWARD -i out0 -o in0 -d {gw} -p udp --dport {media} -j ACCEPT",
            ]
        for rule in rules:
            self.ns(self.nat, "iptables", *rule.format(
                pub=PUBLIC, gw=GW_PRIVATE, http=HTTP_PORT, media=media, turn=TURN_PORT,
                relay=f"{RELAY_MIN}:{RELAY_MAX}").split())

    def start(self, ns: str, name: str, argv: list[str],
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        log.close()
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def wait_listening(self, ns: str, proto: str, port: int, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = self.ns(ns, "ss", "-Hln" + proto, f"sport = :{port}").stdout
            if out.strip():
                return
            time.sleep(0.1)
        raise AssertionError(f"nothing listens on {proto} {port} in {ns}")

    def udp_ports(self, ns: str) -> set[tuple[int, str]]:
        """(local port, peer) of every UDP socket in the namespace."""
        out = self.ns(ns, "ss", "-Huan").stdout
        socks = set()
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 5:
                socks.add((int(cols[3].rsplit(":", 1)[1]), cols[4]))
        return socks

    def close(self) -> None:
        try:
            for _, proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for _, proc in self.procs:
                try:
                    proc.wait(2)  # the gateway drains in 1 s; a call stuck in ICE is cut
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        finally:
            for ns in (self.gw, self.nat, self.cl):
                _run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    _remove_stale()
    n = Net(tmp_path)
    try:
        yield n
    finally:
        n.close()
    left = [ns for ns in (n.gw, n.nat, n.cl)
            if ns in _run("ip", "netns", "list", check=False).stdout.split()]
    assert not left, f"namespaces left behind: {left}"


def start_gateway(net: Net, media_toml: str, env: dict[str, str] | None = None) -> Path:
    rec = net.tmp / "recordings"
    cfg = net.tmp / "gateway.toml"
    cfg.write_text(f'[server]\nhost = "0.0.0.0"\nport = {HTTP_PORT}\ndrain_timeout_s = 1\n\n'
                   f"[media]\n{media_toml}\n")
    net.start(net.gw, "upstream", [PY, "-m", "bench.echo_upstream", "--host", "127.0.0.1",
                                   "--port", str(UPSTREAM_PORT)])
    net.wait_listening(net.gw, "t", UPSTREAM_PORT)
    net.start(net.gw, "gateway", [PY, "-m", "gateway", "serve", "--config", str(cfg)], env={
        "GATEWAY_API_KEYS": API_KEY, "GATEWAY_TOKEN_SECRET": "netns-token-secret",
        "OPENAI_API_KEY": "sk-not-used",
        "GATEWAY_UPSTREAM_URL": f"ws://127.0.0.1:{UPSTREAM_PORT}/v1/realtime",
        "GATEWAY_RECORDINGS_DIR": str(rec), **(env or {})})
    return rec


def run_client(net: Net, *args: str, timeout_s: float = 60) -> tuple[dict[str, Any],
                                                                      set[tuple[int, str]]]:
    """Run the caller; meanwhile sample the gateway namespace's UDP sockets."""
    proc = net.start(net.cl, "client", [PY, "-m", "tests.netns_client", "--base",
                                        f"http://{PUBLIC}:{HTTP_PORT}", "--api-key", API_KEY,
                                        *args])
    seen: set[tuple[int, str]] = set()
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            break
        seen |= net.udp_ports(net.gw)
        time.sleep(0.2)
    out = net.log("client")
    last = [line for line in out.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and last, (
        f"client failed ({proc.returncode}):\n{out}\n--- gateway:\n{net.log('gateway')}")
    return json.loads(last[-1]), seen


def metric(lines: list[str], name: str, **labels: str) -> float:
    total = 0.0
    for line in lines:
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ice_notes(rec: Path) -> list[dict[str, Any]]:
    notes = []
    for path in glob.glob(str(rec / "**" / "transcript.jsonl"), recursive=True):
        for line in Path(path).read_text().splitlines():
            entry = json.loads(line)
            if entry.get("event") == "ice":
                notes.append(entry)
    return notes


MEDIA = f"port_min = {PORT_MIN}\nport_max = {PORT_MAX}\n"
ANNOUNCED = f'announced_addresses = ["{PUBLIC}"]\n'


def test_call_connects_through_the_announced_address_and_audio_flows_both_ways(
        net: Net) -> None:
    net.build(forward_media=True)
    rec = start_gateway(net, MEDIA + ANNOUNCED)
    out, sockets = run_client(net, "--seconds", "2.5")
    assert out["status"] == 201
    answer = out["answer"]
    assert f" {PUBLIC} " in answer and f" {GW_PRIVATE} " in answer  # announced + private
    assert out["connected"], out
    # The caller's 440 Hz tone went up to the echo upstream and came back as agent audio.
    assert out["loud_frames"] >= 50, out
    assert abs(out["heard_hz"] - 440.0) < 10, out
    # Every UDP socket of the gateway's namespace was bound inside the media range.
    assert sockets, "no UDP socket seen while the call was up"
    assert all(PORT_MIN <= port <= PORT_MAX for port, _ in sockets), sockets
    # The pair the gateway's peer selected: its private host <-> the client's host.
    assert metric(out["metrics"], "gateway_webrtc_candidate_pairs_total",
                  local_type="host", remote_type="host") == 1, out["metrics"]
    time.sleep(0.5)
    notes = ice_notes(rec)
    assert [(n["local_type"], n["remote_type"]) for n in notes] == [("host", "host")], notes


@pytest.mark.parametrize("missing", ["announced_address", "port_range"])
def test_call_does_not_connect_without_the_setting(net: Net, missing: str) -> None:
    """The control: the same network, one setting off, and ICE never succeeds."""
    net.build(forward_media=True)
    media = MEDIA if missing == "announced_address" else ANNOUNCED
    start_gateway(net, media)
    out, sockets = run_client(net, "--connect-timeout", "6")
    assert out["status"] == 201  # signaling works through the NAT; media cannot
    assert not out["connected"], out
    assert out["loud_frames"] == 0
    assert metric(out["metrics"], "gateway_webrtc_candidate_pairs_total") == 0
    if missing == "port_range":  # the ports the NAT does not forward
        assert any(not PORT_MIN <= port <= PORT_MAX for port, _ in sockets), sockets


def test_exhausted_port_range_refuses_the_next_call_with_503(net: Net) -> None:
    net.build(forward_media=True)
    start_gateway(net, f"port_min = {PORT_MIN}\nport_max = {PORT_MIN}\n" + ANNOUNCED)
    out, sockets = run_client(net, "--exhaust")
    assert out["first"] == {"status": 201, "connected": True}, out
    second = out["second"]
    assert second["status"] == 503, out
    assert second["retry_after"] == "2"
    assert second["body"]["error"]["code"] == "media_ports_exhausted"
    assert second["body"]["error"]["type"] == "server_error"
    assert out["third"] == {"status": 201, "connected": True}, out  # the port came back
    # the second call, and each try of the third made before the first's port came back
    assert metric(out["metrics"], "gateway_call_setup_failures_total",
                  code="media_ports_exhausted") == 1 + out["third_refused"], out
    assert {port for port, _ in sockets} == {PORT_MIN}, sockets


def test_call_connects_through_turn_when_the_range_is_closed(net: Net) -> None:
    if shutil.which("turnserver") is None:
        pytest.fail("coturn is not installed: apt-get install -y coturn (the TURN test "
                    "needs a real TURN server)")
    net.build(forward_media=False)
    net.start(net.nat, "coturn", [
        "turnserver", "-n", "--listening-ip", PUBLIC, "--relay-ip", PUBLIC,
        "--listening-port", str(TURN_PORT), "--min-port", str(RELAY_MIN),
        "--max-port", str(RELAY_MAX), "--use-auth-secret", "--static-auth-secret",
        TURN_SECRET, "--realm", "gateway.test", "--no-tls", "--no-dtls", "--no-cli",
        # As a TURN server should: no relaying into the private network behind it (so the
        # caller's relay cannot reach the gateway's private socket either).
        "--denied-peer-ip", "10.213.0.0-10.213.0.255",
        "--no-tcp-relay", "--db", str(net.tmp / "turndb"), "--pidfile",
        str(net.tmp / "turn.pid"), "--log-file", "stdout", "--simple-log"])
    net.wait_listening(net.nat, "u", TURN_PORT)
    turn = (f'[[media.ice_servers]]\nurls = ["turn:{PUBLIC}:{TURN_PORT}?transport=udp"]\n'
            'turn_secret_env = "GW_TEST_TURN_SECRET"\nturn_ttl_s = 600\n')
    start_gateway(net, MEDIA + turn, env={"GW_TEST_TURN_SECRET": TURN_SECRET})
    out, sockets = run_client(net, "--seconds", "2.5", "--connect-timeout", "10")
    # The client got short-lived coturn REST credentials with its token.
    (server,) = out["ice_servers"]
    assert server["urls"] == [f"turn:{PUBLIC}:{TURN_PORT}?transport=udp"]
    expiry, _, user = server["username"].partition(":")
    assert 0 < int(expiry) - time.time() <= 600 and user.startswith("sess_")
    assert TURN_SECRET not in json.dumps(out) and TURN_SECRET not in net.log("gateway")
    assert " typ relay" in out["answer"]  # the gateway's own allocation (REST credentials)
    assert out["connected"], (out, net.log("coturn"))
    assert out["loud_frames"] >= 50, out
    # The gateway can reach nothing but the TURN port, and coturn does not relay into the
    # private network: the gateway's own relay carries the call.
    assert metric(out["metrics"], "gateway_webrtc_candidate_pairs_total",
                  local_type="relay") == 1, out["metrics"]
    # Host sockets stayed in the range; the one other socket is the flow to the TURN server.
    outside = {(p, peer) for p, peer in sockets if not PORT_MIN <= p <= PORT_MAX}
    assert outside and all(peer == f"{PUBLIC}:{TURN_PORT}" for _, peer in outside), sockets

