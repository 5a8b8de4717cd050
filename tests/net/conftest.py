"""Fixtures of the networked tests: a network namespace joined to the host by a veth pair."""

import os
import shutil
import subprocess

import pytest


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


def _make_namespace(n: int) -> tuple[str, str, str]:
    """Namespace ``deai-part-N`` joined to the host by a veth pair (host 10.77.N.1, inside 10.77.N.2),
    with a default route to the host, so it reaches every host address but nothing can reach in except
    what listens on its 10.77.N.2."""
    ns, host_end, ns_end = f"deai-part-{n}", f"dpa{n}", f"dpb{n}"
    ip("netns", "add", ns)
    ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
    ip("link", "set", ns_end, "netns", ns)
    ip("addr", "add", f"10.77.{n}.1/24", "dev", host_end)
    ip("link", "set", host_end, "up")
    ip("netns", "exec", ns, "ip", "addr", "add", f"10.77.{n}.2/24", "dev", ns_end)
    ip("netns", "exec", ns, "ip", "link", "set", ns_end, "up")
    ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
    ip("netns", "exec", ns, "ip", "route", "add", "default", "via", f"10.77.{n}.1")
    return ns, ns_end, f"10.77.{n}.1"


def _drop_namespace(n: int) -> None:
    ip("link", "del", f"dpa{n}", check=False)
    ip("netns", "del", f"deai-part-{n}", check=False)


def _need_root() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")


@pytest.fixture
def namespace():
    _need_root()
    n = os.getpid() % 200 + 20
    try:
        yield _make_namespace(n)
    finally:
        _drop_namespace(n)


@pytest.fixture
def two_namespaces():
    """Two namespaces, as two sites behind two NATs: neither can open a connection to the other."""
    _need_root()
    first = os.getpid() % 100 * 2 + 20
    made = []
    try:
        for n in (first, first + 1):
            made.append(n)
            _make_namespace(n)
        yield [(f"deai-part-{n}", f"dpb{n}", f"10.77.{n}.1") for n in made]
    finally:
        for n in made:
            _drop_namespace(n)
