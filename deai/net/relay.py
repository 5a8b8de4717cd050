"""A circuit relay for p2p peers behind NATs: ``deai relay --listen HOST:PORT``.

Two peers that both sit behind NATs (or firewalls that admit no inbound connection) cannot dial each
other. Each one dials out to a relay it was told of (``deai node --role peer --relay MADDR``), reserves a
slot there (libp2p circuit relay v2, served by hivemind's p2pd) and becomes reachable at
``RELAY/p2p-circuit/p2p/PEER``. The relay forwards bytes it cannot read: libp2p secures every stream end
to end between the two peers, and every deai frame on it is signed by its sender's roster key. The relay
is also a DHT server, so the peers behind NATs (DHT clients) find each other's announcements through it.

What we measured with hivemind 1.1.12: a peer's reservation appears about three minutes after it starts
(go-libp2p's autorelay waits that long when it knows fewer than four relay candidates), and the daemon
lists no circuit address among its own; so a peer behind a NAT proves its reservation by having a fresh
libp2p host dial it through the relay (:func:`reached_through_relay`) before it announces itself. A
relayed connection lasts at most 30 minutes (p2pd's ``-relayTimeLimit``) and is dialed again when a send
fails.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from deai.config import ConfigError
from deai.net.events import EventLog
from deai.report.artifacts import atomic_write

CIRCUIT = "/p2p-circuit"
_P2P_CODE, _CIRCUIT_CODE = bytes.fromhex("a503"), bytes.fromhex("a202")  # multicodec varints 421, 290


def check_relay_address(maddr: str) -> str:
    """A relay's full multiaddress ``/ip4/HOST/tcp/PORT/p2p/PEER_ID``; anything else is refused by name."""
    transport, sep, peer = maddr.strip().partition("/p2p/")
    if not sep or not transport or not peer or "/" in peer:
        raise ConfigError(
            f"--relay {maddr!r}: give the relay's full multiaddress, /ip4/HOST/tcp/PORT/p2p/PEER_ID "
            "(what `deai relay` writes to STATE/address)"
        )
    return maddr.strip()


def circuit_bytes(relay: str) -> bytes:
    """``RELAY/p2p-circuit`` in go-multiaddr's binary form, for the daemon's connect request.

    hivemind's Python multiaddr writes a ``/p2p/`` value as a CIDv1, which go-multiaddr cannot read
    inside a longer address (the daemon answers "length greater than remaining number of bytes in
    buffer"); go-multiaddr wants the peer id's bare multihash, so the bytes are built here."""
    from hivemind.p2p import PeerID
    from hivemind.utils.multiaddr import Multiaddr

    transport, _, peer = check_relay_address(relay).partition("/p2p/")
    multihash = PeerID.from_base58(peer).to_bytes()
    if len(multihash) >= 0x80:  # one-byte varint length: every Ed25519 or RSA-hash peer id fits
        raise ConfigError(f"--relay {relay!r}: a peer id of {len(multihash)} bytes is not supported")
    return Multiaddr(transport).to_bytes() + _P2P_CODE + bytes([len(multihash)]) + multihash + _CIRCUIT_CODE


async def reached_through_relay(peer_id: Any, relays: list[str]) -> bool:
    """Whether a fresh libp2p host, which knows nothing of ``peer_id`` but the circuit addresses, opens
    a relayed connection to it: the proof that its reservation holds (the daemon lists no circuit
    address among its own, so a peer cannot see that for itself)."""
    from hivemind.p2p import P2P
    from hivemind.utils.multiaddr import Multiaddr

    prober = await P2P.create(host_maddrs=["/ip4/127.0.0.1/tcp/0"], dht_mode="client")
    try:
        await prober._client.connect(peer_id, [Multiaddr(circuit_bytes(r)) for r in relays])
        for info in await prober.list_peers():
            if info.peer_id == peer_id:
                return any(CIRCUIT in _text(a) for a in info.addrs)  # relayed, not a direct path
        return False
    except Exception:  # noqa: BLE001 - no reservation yet: the dial fails, and the caller tries later
        return False
    finally:
        await prober.shutdown()


def _text(maddr: Any) -> str:
    try:
        return str(maddr)
    except Exception:  # noqa: BLE001 - an address hivemind's multiaddr cannot print is not a circuit
        return ""


def wait_for_reservation(p2p: Any, relays: list[str], run: Any, timeout: float, log: EventLog) -> list[str]:
    """Block until the peer is reachable through one of ``relays`` (``run`` runs a coroutine on the
    peer's event loop); its circuit addresses."""
    t0 = time.monotonic()
    while True:
        if run(reached_through_relay(p2p.peer_id, relays), 60.0):
            circuits = [f"{r}{CIRCUIT}/p2p/{p2p.peer_id}" for r in relays]
            log("relayed", maddrs=circuits, waited_s=round(time.monotonic() - t0, 1))
            return circuits
        if time.monotonic() - t0 > timeout:
            raise ConfigError(
                f"no relay reservation within network.join_timeout_s = {timeout:g} s: check that every "
                "--relay address is a running `deai relay` this node can reach (go-libp2p takes about three "
                "minutes to reserve with fewer than four relays), or raise network.join_timeout_s"
            )
        time.sleep(10.0)


def run_relay(listen: str, state: Path, log: EventLog, *, stop: threading.Event | None = None) -> None:
    """Serve as a relay and DHT server until SIGTERM/SIGINT (or ``stop``); its multiaddresses go to
    ``STATE/address``."""
    try:
        import hivemind
    except ImportError:
        raise ConfigError("deai relay needs hivemind: pip install 'deai[p2p]'") from None
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--listen {listen!r}: give HOST:PORT (port 0: any free)")
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    dht = hivemind.DHT(start=True, host_maddrs=[f"/ip4/{host}/tcp/{port}"], force_reachability="public")
    try:
        maddrs = [str(m) for m in dht.get_visible_maddrs()]
        state.mkdir(parents=True, exist_ok=True)
        atomic_write(state / "address", ",".join(maddrs) + "\n")
        log("relaying", maddrs=maddrs)
        stop.wait()
    finally:
        dht.shutdown()
        log("exit")
