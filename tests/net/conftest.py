"""Fixtures of the networked tests: a network namespace joined to the host by a veth pair."""

import os
import shutil
import subprocess

import pytest


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


@pytest.fixture
def namespace():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    n = os.getpid() % 200 + 20
    ns, host_end, ns_end = f"deai-part-{n}", f"dpa{n}", f"dpb{n}"
    try:
        ip("netns", "add", ns)
        ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        ip("link", "set", ns_end, "netns", ns)
        ip("addr", "add", f"10.77.{n}.1/24", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"10.77.{n}.2/24", "dev", ns_end)
        ip("netns", "exec", ns, "ip", "link", "set", ns_end, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, ns_end, f"10.77.{n}.1"
    finally:
        ip("link", "del", host_end, check=False)
        ip("netns", "del", ns, check=False)
