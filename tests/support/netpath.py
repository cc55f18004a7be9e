"""A phone's network for the tests: a namespace joined to the root namespace by one link whose
address can change (Wi-Fi → 4G), whose loss, rate, delay and jitter are set by the test. Created
by the test itself and removed in ``close()`` whatever happened (same pattern as netns.py).

    with PhoneNetns(delay_ms=100, jitter_ms=25) as ns:  # RTT 200 ms, ±25 ms each way
        ns.host_ip                 # the root side: the server listens and offers ICE here
        ns.exec([...])             # argv run inside the namespace
        ns.set_loss(10)            # random loss, both directions (nftables numgen, in the namespace)
        ns.set_rate(300)           # a tbf cap in kbit/s, both directions; None removes it
        ns.switch_address()        # a new address on a new subnet, the old one gone
        ns.dropped()               # datagrams the loss rules dropped so far

This kernel has no netem. Without delay the link is a veth pair. With delay it is two TUN devices,
one in each namespace, and a small process (``python -m tests.support.netpath relay``) that
reads each IP packet from one and writes it to the other after delay ± jitter (uniform; a
packet never overtakes the one before it, as on a radio link). Loss is nftables ``numgen random mod 100 < N drop`` on
the ingress of each end (netdev family) and the cap is ``tc qdisc tbf`` on both ends.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import shutil
import struct
import subprocess
import sys

from tests.support.netns import NetnsUnavailable, _run

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class PhoneNetns:
    def __init__(self, *, delay_ms: float = 0, jitter_ms: float = 0) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100, 999)}"
        self.name = f"parley-phone-{tag}"
        self.host_if, self.inside_if = f"pp{tag}h", f"pp{tag}n"
        self.table = f"parley_lossy_{tag}"
        self.octet = random.randrange(16, 250)
        self.host_ip, self.inside_ip = f"10.214.{self.octet}.1", f"10.214.{self.octet}.2"
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms
        self.relay: subprocess.Popen | None = None
        self._created: list[str] = []
        self._subnet = 214
        self._loss: int | None = None

    # -- set up / tear down ------------------------------------------------------------------

    def __enter__(self) -> PhoneNetns:
        if os.geteuid() != 0:
            raise NetnsUnavailable("needs root to create a network namespace")
        for tool in ("ip", "nft", "tc"):
            if not shutil.which(tool):
                raise NetnsUnavailable(f"{tool} missing: scripts/setup.sh --test installs it")
        try:
            _run("ip", "netns", "add", self.name)
            self._created.append("netns")
            if self.delay_ms or self.jitter_ms:
                self._tun_link()
            else:
                _run(
                    "ip",
                    "link",
                    "add",
                    self.host_if,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    self.inside_if,
                )
                self._created.append("link")
                _run("ip", "link", "set", self.inside_if, "netns", self.name)
                _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            _run(*self._in, "link", "set", "lo", "up")
            _run(*self._in, "link", "set", self.inside_if, "up")
            if self.relay:
                _run(*self._in, "addr", "add", f"{self.inside_ip}/32", "dev", self.inside_if)
                _run(*self._in, "route", "add", "default", "dev", self.inside_if)
                _run("ip", "route", "add", f"{self.inside_ip}/32", "dev", self.host_if)
            else:
                _run(*self._in, "addr", "add", f"{self.inside_ip}/24", "dev", self.inside_if)
                _run(*self._in, "route", "add", "default", "via", self.host_ip)
            # Loss is dropped where each direction *arrives* (netdev ingress): a drop on the
            # sender's output path would fail its sendto() with EPERM, which a radio never does.
            self._nft(
                f"add table netdev {self.table}\n"
                f"add chain netdev {self.table} down "
                f"{{ type filter hook ingress device {self.inside_if} priority 0; }}\n",
                inside=True,
            )
            self._nft(
                f"add table netdev {self.table}\n"
                f"add chain netdev {self.table} up "
                f"{{ type filter hook ingress device {self.host_if} priority 0; }}\n",
                inside=False,
            )
            self._created.append("nft")
        except subprocess.CalledProcessError as exc:
            self.close()
            raise NetnsUnavailable(f"{' '.join(exc.cmd)}: {exc.stderr.strip()}") from None
        return self

    def _tun_link(self) -> None:
        self.relay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.netpath",
                "relay",
                self.host_if,
                self.inside_if,
                str(self.delay_ms),
                str(self.jitter_ms),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )
        self._created.append("relay")
        line = self.relay.stdout.readline()
        if line.strip() != "ready":
            raise NetnsUnavailable(f"the delay relay did not start: {line!r}")
        self._created.append("link")
        for dev in (self.host_if, self.inside_if):  # room for a keyframe's burst while it waits
            _run("ip", "link", "set", "dev", dev, "txqueuelen", "5000")
        _run("ip", "link", "set", self.inside_if, "netns", self.name)
        _run("ip", "addr", "add", f"{self.host_ip}/32", "dev", self.host_if)

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if "nft" in self._created:  # the root namespace's table (the other goes with the netns)
            _run("nft", "delete", "table", "netdev", self.table, check=False)
        if "link" in self._created:  # deleting one end removes a veth pair; a TUN goes with its fd
            _run("ip", "link", "del", self.host_if, check=False)
            _run("ip", "route", "del", f"{self.inside_ip}/32", check=False)
        if "relay" in self._created and self.relay:
            self.relay.kill()
            self.relay.wait(10)
        if "netns" in self._created:
            _run("ip", "netns", "del", self.name, check=False)
        self._created.clear()

    # -- what the tests change ---------------------------------------------------------------

    @property
    def _in(self) -> tuple[str, ...]:
        return ("ip", "-n", self.name)

    def exec(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def _nft(self, script: str, *, inside: bool) -> None:
        argv = ["nft", "-f", "-"]
        subprocess.run(
            self.exec(argv) if inside else argv,
            input=script,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )

    def set_loss(self, percent: int | None, *, uplink: bool = True, downlink: bool = True) -> None:
        """Drop ``percent`` % of the UDP datagrams at random (TCP signalling would only get
        slower), in the chosen directions; None or 0 stops dropping."""
        self._nft(f"flush chain netdev {self.table} down\n", inside=True)
        self._nft(f"flush chain netdev {self.table} up\n", inside=False)
        if not percent:
            return
        rule = (
            "ip protocol udp counter drop"  # a burst of total loss
            if percent >= 100
            else f"ip protocol udp numgen random mod 100 < {int(percent)} counter drop"
        )
        if uplink:
            self._nft(f"add rule netdev {self.table} up {rule}\n", inside=False)
        if downlink:
            self._nft(f"add rule netdev {self.table} down {rule}\n", inside=True)

    def set_delay(self, delay_ms: float, jitter_ms: float) -> None:
        """Change the TUN link's one-way delay ± jitter (a link made with a delay only)."""
        assert self.relay is not None, "set_delay needs a link made with delay_ms or jitter_ms"
        self.relay.stdin.write(f"{delay_ms} {jitter_ms}\n")
        self.relay.stdin.flush()
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms

    def dropped(self) -> int:
        """Datagrams the loss rules dropped so far (both directions, since the last set_loss)."""
        total = 0
        for inside in (True, False):
            argv = ["nft", "-j", "list", "table", "netdev", self.table]
            out = subprocess.run(
                self.exec(argv) if inside else argv,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            for item in json.loads(out.stdout)["nftables"]:
                for expr in (item.get("rule") or {}).get("expr", []):
                    if "counter" in expr:
                        total += expr["counter"]["packets"]
        return total

    def set_rate(self, kbit: int | None) -> None:
        """Cap both directions at ``kbit`` kbit/s (tbf, 10 kB burst, 50 ms queue); None: no cap."""
        _run(*self.exec(["tc", "qdisc", "del", "dev", self.inside_if, "root"]), check=False)
        _run("tc", "qdisc", "del", "dev", self.host_if, "root", check=False)
        if kbit is None:
            return
        tbf = ("root", "tbf", "rate", f"{kbit}kbit", "burst", "10kb", "latency", "50ms")
        _run("ip", "netns", "exec", self.name, "tc", "qdisc", "add", "dev", self.inside_if, *tbf)
        _run("tc", "qdisc", "add", "dev", self.host_if, *tbf)

    def switch_address(self) -> str:
        """Wi-Fi → 4G: the phone gets an address on another subnet (and a new gateway) and
        loses the old one at once, as when a phone leaves the Wi-Fi. Returns the new address.
        Only for the veth link (no delay)."""
        assert self.relay is None, "switch_address needs the veth link"
        self._subnet += 1
        new_host = f"10.{self._subnet}.{self.octet}.1"
        new_inside = f"10.{self._subnet}.{self.octet}.2"
        _run("ip", "addr", "add", f"{new_host}/24", "dev", self.host_if)
        _run(*self._in, "addr", "add", f"{new_inside}/24", "dev", self.inside_if)
        _run(*self._in, "addr", "del", f"{self.inside_ip}/24", "dev", self.inside_if)
        _run(*self._in, "route", "replace", "default", "via", new_host)
        self.inside_ip = new_inside
        return new_inside


# -- the delay relay (its own process: the test's own load must not delay packets) -------------


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


async def _relay(host_if: str, inside_if: str, delay_ms: float, jitter_ms: float) -> None:
    loop = asyncio.get_running_loop()
    try:  # the link's delay must not grow with the machine's load (root: allowed)
        os.nice(-15)
    except OSError:
        pass
    a, b = _open_tun(host_if), _open_tun(inside_if)
    done = asyncio.Event()

    def write(fd: int, packet: bytes) -> None:
        try:
            os.write(fd, packet)
        except OSError:
            pass  # the device went away (the test is closing)

    due = {a: 0.0, b: 0.0}  # per direction: when the last packet leaves (order is kept)

    def pump(src: int, dst: int) -> None:
        for _ in range(64):  # bounded: at most 64 packets per wakeup
            try:
                packet = os.read(src, 65535)
            except BlockingIOError:
                return
            except OSError:
                done.set()
                return
            delay = max(0.0, link[0] + random.uniform(-link[1], link[1])) / 1000
            # a radio link delivers in order: a packet never overtakes the one before it
            at = due[src] = max(loop.time() + delay, due[src])
            loop.call_at(at, write, dst, packet)

    loop.add_reader(a, pump, a, b)
    loop.add_reader(b, pump, b, a)
    link = [delay_ms, jitter_ms]

    def command() -> None:  # "DELAY JITTER\n" changes the link; EOF ends the relay
        line = sys.stdin.readline()
        if not line:
            done.set()
        elif len(parts := line.split()) == 2:
            link[:] = [float(parts[0]), float(parts[1])]

    loop.add_reader(sys.stdin.fileno(), command)
    print("ready", flush=True)
    await done.wait()


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "relay":
        _, _, host_if, inside_if, delay, jitter = sys.argv
        asyncio.run(_relay(host_if, inside_if, float(delay), float(jitter)))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
