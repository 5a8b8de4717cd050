"""``deai launch``: a whole local federation, one OS process per node, torn down by PID.

For demos and tests. It splits the task's data into one directory per party, makes every node's key
(OS entropy) and the roster, starts the aggregator on a free loopback port and one party process per
party, waits for the run to end, and ends every process it started. :class:`LocalFederation` gives
tests the same steps one by one (kill a party, restart it from its state directory, start one late).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from deai.config import ConfigError, ExperimentConfig
from deai.net.node import ADDRESS_FILE
from deai.net.roster import Edge, Roster
from deai.report.artifacts import atomic_write
from deai.verify.identity import Identity


def tree_layout(levels: list[int], parties: int) -> list[tuple[int | None, list[int]]]:
    """``(parent, parties)`` of every edge, level by level from the top: each level's edges split the one
    above's in contiguous runs, and the leaf edges split the parties in contiguous blocks."""
    out: list[tuple[int | None, list[int]]] = []
    above: list[int | None] = [None]
    for depth, count in enumerate(levels):
        first = len(out)
        for j, run in enumerate(np.array_split(np.arange(count), len(above))):
            out += [(above[j], []) for _ in run]
        if depth == len(levels) - 1:
            for k, block in enumerate(np.array_split(np.arange(parties), count)):
                out[first + k] = (out[first + k][0], [int(p) for p in block])
        above = list(range(first, first + count))
    return out


class LocalFederation:
    """The files and processes of a local federation under ``out``."""

    def __init__(self, cfg: ExperimentConfig, out: Path, *, status: bool = False, tls: bool = False) -> None:
        self.cfg, self.out, self.status, self.tls = cfg, Path(out), status, tls
        self.procs: dict[str, subprocess.Popen] = {}
        self.started: list[subprocess.Popen] = []  # every process ever started, each its own group
        self.address: str | None = None
        self.n = cfg.data.num_parties
        self.edges: list | None = None
        self.edge_address: dict[int, str] = {}
        self.validators = cfg.ledger.validators if cfg.ledger.enabled else 0

    # -- files ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Task config, the data split, every node's key and the roster."""
        from deai.data.party_dirs import party_dir_name, write_party_dirs
        from deai.engine.api import build_data
        from deai.engine.assembly import task_strategy
        from deai.net.aggregator_node import check_network

        check_network(self.cfg)  # every node would refuse it: say so once, before anything starts
        task_strategy(self.cfg, self.n)
        out = self.out
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"--out {out} is not empty; choose a new directory for the federation")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(self.task_path, self.cfg.to_toml())
        fed = build_data(self.cfg)
        write_party_dirs(
            fed,
            self.split,
            dataset=self.cfg.data.dataset,
            seed=self.cfg.run.seed,
            config_toml=self.cfg.to_toml(),
        )
        keys = out / "keys"
        keys.mkdir()
        agg = Identity.generate("aggregator")
        agg.save(keys / "aggregator.key")
        parties = []
        for p in range(self.n):
            ident = Identity.generate("party")
            ident.save(keys / f"{party_dir_name(p, self.n)}.key")
            parties.append(ident.public_key)
        edges = None
        if self.cfg.network.topology == "hierarchical":
            edges = []
            for e, (parent, block) in enumerate(tree_layout(self.cfg.network.edge_levels, self.n)):
                ident = Identity.generate("aggregator")
                ident.save(keys / f"edge-{e}.key")
                edges.append(Edge(ident.public_key, block, parent))
        validators = []
        for j in range(self.validators):
            ident = Identity.generate("validator")
            ident.save(keys / f"validator-{j}.key")
            validators.append(ident.public_key)
        names = [str(x) for x in fed.party_names]
        Roster(agg.public_key, parties, names, edges, validators or None).save(self.roster)
        self.edges = edges
        if self.tls:  # a task CA and one certificate per node
            from deai.net.tls import issue, make_ca

            make_ca(out / "tls" / "ca")
            edge_names = [f"edge-{e}" for e in range(len(self.edges or []))]
            validator_names = [f"validator-{j}" for j in range(self.validators)]
            parties = [self.party_name(p) for p in range(self.n)]
            for name in ["aggregator", *edge_names, *validator_names, *parties]:
                issue(out / "tls" / "ca", name, out / "tls" / name)

    @property
    def task_path(self) -> Path:
        return self.out / "task.toml"

    @property
    def split(self) -> Path:
        return self.out / "split"

    @property
    def roster(self) -> Path:
        return self.out / "roster.json"

    def party_name(self, p: int) -> str:
        from deai.data.party_dirs import party_dir_name

        return party_dir_name(p, self.n)

    def state_dir(self, name: str) -> Path:
        return self.out / "nodes" / name

    # -- processes --------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], wrap: tuple[str, ...] = ()) -> subprocess.Popen:
        state = self.state_dir(name)
        state.mkdir(parents=True, exist_ok=True)
        cmd = [*wrap, sys.executable, "-m", "deai.cli", "node", *argv, "--task", str(self.task_path),
               "--roster", str(self.roster), "--state", str(state)]  # fmt: skip
        if self.status:
            cmd += ["--status", "127.0.0.1:0"]
        if self.tls:
            cmd += ["--tls", str(self.out / "tls" / name)]
        env = os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        with open(state / "stderr.log", "ab") as err:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True
            )
        self.procs[name] = proc
        self.started.append(proc)  # a restarted node replaces its entry in procs, not here
        return proc

    def start_aggregator(self, timeout: float = 60.0, listen: str = "127.0.0.1:0") -> str:
        """Start the aggregator (on a free loopback port by default); its address once it listens."""
        state = self.state_dir("aggregator")
        (state / ADDRESS_FILE).unlink(missing_ok=True)
        proc = self._spawn("aggregator", [
            "--role", "aggregator", "--data", str(self.split), "--listen", listen,
            "--key", str(self.out / "keys" / "aggregator.key"),
        ])  # fmt: skip
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if (state / ADDRESS_FILE).is_file():
                self.address = (state / ADDRESS_FILE).read_text().strip()
                return self.address
            if proc.poll() is not None:
                raise RuntimeError(f"the aggregator exited ({proc.returncode}): {self.stderr('aggregator')}")
            time.sleep(0.05)
        raise TimeoutError(f"the aggregator did not listen within {timeout:g} s")

    def start_peers(
        self,
        *peers: int,
        timeout: float = 120.0,
        extra: dict[int, list[str]] | None = None,
        wrap: dict[int, tuple[str, ...]] | None = None,
    ) -> None:
        """Start peers (p2p): the first listed (or the first already running) bootstraps the others;
        ``wrap[p]`` prefixes peer ``p``'s command (e.g. ``ip netns exec NS``)."""
        extra, wrap = extra or {}, wrap or {}
        for p in peers or range(self.n):
            name = self.party_name(p)
            state = self.state_dir(name)
            (state / ADDRESS_FILE).unlink(missing_ok=True)
            argv = ["--role", "peer", "--data", str(self.split / name), "--listen", "127.0.0.1:0",
                    "--key", str(self.out / "keys" / f"{name}.key")]  # fmt: skip
            if self.address:
                argv += ["--connect", self.address]
            argv += extra.get(p, [])  # last: a peer's own --listen or --connect wins
            proc = self._spawn(name, argv, wrap.get(p, ()))
            if not self.address:  # the bootstrap peer: everyone else dials its multiaddress
                end = time.monotonic() + timeout
                while not (state / ADDRESS_FILE).is_file():
                    if proc.poll() is not None or time.monotonic() > end:
                        raise RuntimeError(f"peer {p} did not start: {self.stderr(name)}")
                    time.sleep(0.05)
                self.address = (state / ADDRESS_FILE).read_text().strip().split(",")[0]

    def peer_summaries(self) -> list[dict[str, Any]]:
        out = []
        for p in range(self.n):
            path = self.state_dir(self.party_name(p)) / "run" / "summary.json"
            if path.is_file():
                out.append(json.loads(path.read_text()))
        return out

    def start_edges(self, timeout: float = 60.0) -> None:
        """Start every edge aggregator (hierarchical), top level first, each dialing its parent (the top
        or an edge above); wait until each listens."""
        for e, edge in enumerate(self.edges or []):
            name = f"edge-{e}"
            state = self.state_dir(name)
            (state / ADDRESS_FILE).unlink(missing_ok=True)
            parent = self.address.split(",")[0] if edge.parent is None else self.edge_address[edge.parent]
            proc = self._spawn(name, [
                "--role", "edge", "--data", str(self.split), "--listen", "127.0.0.1:0",
                "--connect", parent, "--key", str(self.out / "keys" / f"{name}.key"),
            ])  # fmt: skip
            end = time.monotonic() + timeout
            while not (state / ADDRESS_FILE).is_file():
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"edge {e} did not start: {self.stderr(name)}")
                time.sleep(0.05)
            self.edge_address[e] = (state / ADDRESS_FILE).read_text().strip()

    def start_validators(self, *which: int, extra: dict[int, list[str]] | None = None) -> None:
        """Start validator nodes (all by default), each dialing the top aggregator."""
        extra = extra or {}
        for j in which or range(self.validators):
            name = f"validator-{j}"
            self._spawn(name, [
                "--role", "validator", "--data", str(self.split), "--connect", self.address.split(",")[0],
                "--key", str(self.out / "keys" / f"{name}.key"), *extra.get(j, []),
            ])  # fmt: skip

    def start_party(
        self, p: int, *extra: str, connect: str | None = None, wrap: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        """Party ``p``'s process, dialing the aggregator's first address (or ``connect``); ``wrap``
        prefixes the command (e.g. ``ip netns exec NS`` to run it in a network namespace)."""
        name = self.party_name(p)
        address = connect or self._parent_address(p)
        return self._spawn(name, [
            "--role", "party", "--data", str(self.split / name), "--connect", address,
            "--key", str(self.out / "keys" / f"{name}.key"), *extra,
        ], wrap)  # fmt: skip

    def _parent_address(self, p: int) -> str:
        for e, edge in enumerate(self.edges or []):
            if p in edge.children:
                return self.edge_address[e]
        return self.address.split(",")[0]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal node ``name``'s whole process group (a peer's DHT child and its p2pd daemon too)."""
        proc = self.procs.get(name)
        if proc is not None:
            _signal_group(proc.pid, sig)
            if proc.poll() is None:
                proc.wait(30)

    def wait_aggregator(self, timeout: float) -> int:
        return self.procs["aggregator"].wait(timeout)

    def stderr(self, name: str) -> str:
        path = self.state_dir(name) / "stderr.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        path = self.state_dir(name) / "node.log"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def summary(self) -> dict[str, Any]:
        return json.loads((self.state_dir("aggregator") / "run" / "summary.json").read_text())

    def close(self, grace: float = 10.0) -> None:
        """End every process this federation started, by PID: SIGTERM, then SIGKILL after ``grace``."""
        for proc in self.started:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for proc in self.started:
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.started:  # whatever is left in each node's group (children of a killed node)
            _signal_group(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(10)

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (each node starts its own session); gone is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def launch(
    cfg: ExperimentConfig, out: Path, *, timeout: float = 1800.0, status: bool = False, tls: bool = False
) -> dict[str, Any]:
    """Run ``cfg`` as a local federation under ``out``; the aggregator's run summary."""
    with LocalFederation(cfg, out, status=status, tls=tls) as fed:
        fed.prepare()
        if cfg.network.topology == "p2p":
            fed.start_peers()
            end = time.monotonic() + timeout
            for p in range(fed.n):
                proc = fed.procs[fed.party_name(p)]
                code = proc.wait(max(1.0, end - time.monotonic()))
                if code != 0:
                    raise RuntimeError(f"peer {p} exited with {code}: {fed.stderr(fed.party_name(p))}")
            peers = fed.peer_summaries()
            accs = [s["accuracy"] for s in peers]
            return {
                "topology": "p2p", "rounds": min(s["rounds"] for s in peers), "peers": peers,
                "final_accuracy": float(np.mean(accs)), "worst_peer_accuracy": float(min(accs)),
                "model_hash": peers[0]["model_hash"],
            }  # fmt: skip
        fed.start_aggregator()
        fed.start_validators()
        fed.start_edges()
        for p in range(fed.n):
            fed.start_party(p)
        try:
            code = fed.wait_aggregator(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"the federation did not finish within {timeout:g} s; see {out}/nodes/"
            ) from None
        if code != 0:
            raise RuntimeError(f"the aggregator exited with {code}: {fed.stderr('aggregator')}")
        for p in range(fed.n):  # parties leave once told to stop
            try:
                fed.procs[fed.party_name(p)].wait(30)
            except subprocess.TimeoutExpired:
                pass
        return fed.summary()
