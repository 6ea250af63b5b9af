"""The hosts: one network namespace each, a veth pair into one bridge, and their own addresses.

Everything this module makes is named `selfos-...`, so that cleaning up (at the start, for
what an aborted run left, and at the end) removes exactly what the cluster made and nothing
else. The namespaces get only their /24: no default route, and the root namespace does not
forward, so no process in the cluster can send a packet anywhere but to the bridge's hosts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

PREFIX = "selfos-"
BRIDGE = f"{PREFIX}br0"
PROBE = f"{PREFIX}probe"
SUBNET = "10.77.0"
# The bridge's address, in the root namespace: the load generator and the loopback FCM sit here.
GATEWAY = f"{SUBNET}.1"


class NamespacesUnavailable(RuntimeError):
    """Network namespaces cannot be made here; the message says why."""


@dataclass(frozen=True)
class Host:
    name: str
    addresses: tuple[str, ...]

    @property
    def ns(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def veth(self) -> str:
        """The root namespace's end of the host's cable, on the bridge (inside it is `eth0`)."""
        return f"{PREFIX}{self.name}"

    @property
    def address(self) -> str:
        return self.addresses[0]


def _hosts() -> dict[str, Host]:
    table = {
        # The database host has a second address, the broker's: with no iptables here, a
        # blackhole route to that address is how the broker alone is cut off from a host.
        "db": (f"{SUBNET}.2", f"{SUBNET}.3"),
        "web1": (f"{SUBNET}.11",),
        "web2": (f"{SUBNET}.12",),
        "relay1": (f"{SUBNET}.21",),
        "relay2": (f"{SUBNET}.22",),
        "work1": (f"{SUBNET}.31",),
        "work2": (f"{SUBNET}.32",),
        "work3": (f"{SUBNET}.33",),
    }
    return {name: Host(name, addresses) for name, addresses in table.items()}


HOSTS = _hosts()
DB = HOSTS["db"]
DATABASE_ADDRESS, BROKER_ADDRESS = DB.addresses


def ip(*args: str, check: bool = True) -> str:
    """Run `ip ARGS`; its stderr becomes the error's message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def require_namespaces() -> None:
    """Fail early, with the reason, where namespaces cannot be made (not root, no CAP_NET_ADMIN,
    no iproute2, a sandbox that forbids them): better than a half-built cluster."""
    if shutil.which("ip") is None:
        raise NamespacesUnavailable("`ip` (iproute2) is not installed")
    if os.geteuid() != 0:
        raise NamespacesUnavailable(
            f"making network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); uid {os.geteuid()}"
        )
    with contextlib.suppress(RuntimeError):
        ip("netns", "del", PROBE)
    try:
        ip("netns", "add", PROBE)
        ip("-n", PROBE, "link", "set", "lo", "up")
    except RuntimeError as exc:
        raise NamespacesUnavailable(f"cannot make a network namespace here: {exc}") from exc
    finally:
        with contextlib.suppress(RuntimeError):
            ip("netns", "del", PROBE)
    overlap = [line for line in ip("-4", "route", "show").splitlines() if line.startswith(f"{SUBNET}.")]
    if overlap and not all(BRIDGE in line for line in overlap):
        raise NamespacesUnavailable(f"{SUBNET}.0/24 is already routed here: {overlap}")


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.startswith(PREFIX)]


def pids(ns: str) -> list[int]:
    """Every process in namespace `ns` (what `ip netns pids` reports)."""
    return [int(p) for p in ip("netns", "pids", ns, check=False).split()]


def kill_all(ns: str) -> int:
    """SIGKILL every process in `ns`, as pulling a machine's power would; returns how many."""
    killed = 0
    for pid in pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def teardown() -> None:
    """Kill what runs in the cluster's namespaces, delete them, their veths and the bridge.

    Safe to call at any point and more than once (start of a run, finally, atexit).
    """
    for ns in namespaces():
        kill_all(ns)
        ip("netns", "del", ns, check=False)
    for line in ip("-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            ip("link", "del", name, check=False)


def build() -> None:
    """The bridge (with the gateway address) and every host, each with `lo` and `eth0` up."""
    teardown()
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    for host in HOSTS.values():
        ip("netns", "add", host.ns)
        ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
        ip("link", "set", host.veth, "master", BRIDGE, "up")
        ip("-n", host.ns, "link", "set", "lo", "up")
        for address in host.addresses:
            ip("-n", host.ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", host.ns, "link", "set", "eth0", "up")


def set_link(host: Host, up: bool) -> None:
    """Plug or unplug the host's cable: its processes live on, their packets go nowhere."""
    ip("link", "set", host.veth, "up" if up else "down")


def set_blackhole(host: Host, address: str, on: bool) -> None:
    """Drop, in `host`, every packet to `address` (and only to it), or stop dropping them."""
    ip("-n", host.ns, "route", "add" if on else "del", "blackhole", f"{address}/32")


def netexec(host: Host, env: dict[str, str] | None = None) -> list[str]:
    """The prefix that runs a command on `host`, with `env` set as `env K=V` (shown in logs)."""
    return ["ip", "netns", "exec", host.ns, "env", *(f"{k}={v}" for k, v in (env or {}).items())]


def netns_inode(host: Host) -> int:
    """The namespace's identity, to tell which host a process of /proc belongs to."""
    return Path(f"/run/netns/{host.ns}").stat().st_ino
