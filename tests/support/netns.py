"""A network namespace whose firewall drops every UDP datagram: the network of a prison or an
office that allows only outbound TCP. Created by the test itself (``ip netns``, a veth pair,
nftables in the namespace) and removed in ``close()`` whatever happened.

    with UdpBlockedNetns() as ns:   # ns.host_ip: the root side; ns.inside_ip: the namespace's
        subprocess.run(ns.exec(["python", ...]))
        ns.udp_dropped()            # datagrams the firewall dropped so far
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess


class NetnsUnavailable(RuntimeError):
    """Not root, or the kernel refuses network namespaces / nftables here."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


NFT_RULES = """table inet parley_no_udp {
  chain input {
    type filter hook input priority 0; policy accept;
    meta l4proto udp counter drop
  }
  chain output {
    type filter hook output priority 0; policy accept;
    meta l4proto udp counter drop
  }
}
"""


class UdpBlockedNetns:
    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100, 999)}"
        self.name = f"parley-noudp-{tag}"
        self.host_if, self.inside_if = f"pq{tag}h", f"pq{tag}n"
        octet = random.randrange(16, 250)
        self.host_ip, self.inside_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"
        self._created: list[str] = []

    def __enter__(self) -> UdpBlockedNetns:
        if os.geteuid() != 0:
            raise NetnsUnavailable("needs root to create a network namespace")
        for tool in ("ip", "nft"):
            if not shutil.which(tool):
                raise NetnsUnavailable(f"{tool} missing: scripts/setup.sh --test installs it")
        try:
            _run("ip", "netns", "add", self.name)
            self._created.append("netns")
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.inside_if)
            self._created.append("veth")
            _run("ip", "link", "set", self.inside_if, "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            inside = ("ip", "-n", self.name)
            _run(*inside, "addr", "add", f"{self.inside_ip}/24", "dev", self.inside_if)
            _run(*inside, "link", "set", self.inside_if, "up")
            _run(*inside, "link", "set", "lo", "up")
            _run(*inside, "route", "add", "default", "via", self.host_ip)
            subprocess.run(
                ["ip", "netns", "exec", self.name, "nft", "-f", "-"],
                input=NFT_RULES,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
        except subprocess.CalledProcessError as exc:
            self.close()
            raise NetnsUnavailable(f"{' '.join(exc.cmd)}: {exc.stderr.strip()}") from None
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def exec(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def udp_dropped(self) -> int:
        """Datagrams (in and out) the namespace's firewall dropped so far."""
        out = _run(
            "ip", "netns", "exec", self.name, "nft", "-j", "list", "table", "inet", "parley_no_udp"
        )
        total = 0
        for item in json.loads(out.stdout)["nftables"]:
            rule = item.get("rule")
            if rule:
                for expr in rule["expr"]:
                    if "counter" in expr:
                        total += expr["counter"]["packets"]
        return total

    def close(self) -> None:
        if "veth" in self._created:  # deleting one end removes the pair
            _run("ip", "link", "del", self.host_if, check=False)
        if "netns" in self._created:
            _run("ip", "netns", "del", self.name, check=False)
        self._created.clear()


def entered_or_skip(make):
    """Enter a namespace made by ``make()``; skip the test where this machine cannot make one.
    A generator for pytest fixtures: ``yield from entered_or_skip(PhoneNetns)``."""
    import pytest

    try:
        ns = make().__enter__()
    except NetnsUnavailable as exc:
        pytest.skip(f"no network namespace here: {exc}")
    try:
        yield ns
    finally:
        ns.close()
