"""Flower 1.42's SecAgg+ against its plaintext FedAvg round, the peer numbers for bench_secagg.py (run in
benchmarks/.venv-flower, made by setup_flower.sh).

Why: bench_secagg.py times deai's SecAgg+ at 100 x 100,000 and 1,000 x 10,000; this times Flower's on the
same sizes. How: run_simulation (Ray backend, 1 CPU per client as ENVIRONMENT.md advises) with a ServerApp
on Flower's legacy strategy path (LegacyContext + DefaultWorkflow, FedAvg) - the only path where its
SecAgg+ works - using SecAggPlusWorkflow as fit workflow and ``secaggplus_mod`` on the ClientApp, or the
default fit workflow for the plaintext run. Clients do no training: ``fit`` returns a fixed float32 vector
drawn uniformly in [-1, 1] from (seed, partition id) with num_examples 1, so the round times the protocol.
No federated evaluation. The fit workflow of each round is timed; round 2 is the steady state (round 1
pays actor start-up). Bytes per client are the protobuf sizes (``message_to_proto(...).ByteSize()``,
what the gRPC transport of a real deployment would carry) of every message to and from each client,
counted in round 1 only so round 2's time is clean (serializing takes ``bytes_count_s`` of round 1).
The server checks the aggregate against the true mean of the client vectors.

SecAgg+ parameters: num_shares = k + 1 with deai's degree k (Flower counts the client itself among its
shares, so its neighbours are k; k + 1 is odd, which avoids Flower's even-num_shares crash),
reconstruction_threshold = floor(k / 2) + 1 like deai's t; or pass --num-shares / --threshold.
clipping_range 1.0 (deai's clip; the vectors lie in [-1, 1]), quantization_range 2**22 and modulus_range
2**32 (Flower's defaults), max_weight 1.0 (= num_examples, so the weight factor is exactly 1).

    benchmarks/.venv-flower/bin/python benchmarks/flower_secagg.py --parties 100 --params 100000 --mode secagg
    benchmarks/.venv-flower/bin/python benchmarks/flower_secagg.py --suite   # every case, one subprocess each

Prints ONE JSON line per run on stdout; Flower's and Ray's logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

CLIP = 1.0
QUANTIZATION_RANGE = 2**22
MODULUS_RANGE = 2**32
CASES = [(100, 100_000), (1000, 10_000)]


def deai_degree(parties: int) -> int:
    """deai's default SecAgg+ degree k (deai.privacy.secagg.graph): 2 * ceil(2 log2 n), even, <= n - 1."""
    k = min(parties - 1, 2 * math.ceil(2 * math.log2(parties)))
    return parties - 1 if k >= parties - 1 else k + (k % 2)


def client_vector(seed: int, party: int, params: int) -> np.ndarray:
    return np.random.default_rng([seed, party]).uniform(-CLIP, CLIP, params).astype(np.float32)


class ByteCounter:
    """Wraps grid.send_and_receive to add up the serialized size of messages per client while enabled."""

    def __init__(self, grid: Any) -> None:
        from flwr.common.serde import message_to_proto

        self.to_proto = message_to_proto
        self.inner = grid.send_and_receive
        self.enabled = False
        self.down: dict[int, int] = {}
        self.up: dict[int, int] = {}
        self.seconds = 0.0
        grid.send_and_receive = self

    def __call__(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return self.inner(messages, *args, **kwargs)
        messages = list(messages)
        t0 = time.perf_counter()
        for m in messages:  # measured before sending: the workflow may mutate contents afterwards
            nid = m.metadata.dst_node_id
            self.down[nid] = self.down.get(nid, 0) + self.to_proto(m).ByteSize()
        self.seconds += time.perf_counter() - t0
        replies = list(self.inner(messages, *args, **kwargs))
        t0 = time.perf_counter()
        for m in replies:
            nid = m.metadata.src_node_id
            self.up[nid] = self.up.get(nid, 0) + self.to_proto(m).ByteSize()
        self.seconds += time.perf_counter() - t0
        return replies


def build_apps(a: argparse.Namespace, box: dict) -> tuple[Any, Any]:
    """ServerApp (legacy strategy path) and ClientApp; results are put in box."""
    from flwr.app import Context
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import ndarrays_to_parameters
    from flwr.server import Grid, LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
    from flwr.server.workflow.default_workflows import default_fit_workflow
    from flwr.serverapp import ServerApp

    seed, params = a.seed, a.params

    class FixedClient(NumPyClient):
        def __init__(self, party: int) -> None:
            self.vector = client_vector(seed, party, params)

        def fit(self, parameters: Any, config: Any) -> tuple[list[np.ndarray], int, dict]:
            return [self.vector], 1, {}

    def client_fn(context: Context) -> Any:
        return FixedClient(int(context.node_config["partition-id"])).to_client()

    mods = [secaggplus_mod] if a.mode == "secagg" else []
    client_app = ClientApp(client_fn=client_fn, mods=mods)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=a.parties,
            min_evaluate_clients=0,
            min_available_clients=a.parties,
            initial_parameters=ndarrays_to_parameters([np.zeros(params, np.float32)]),
        )
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=a.rounds), strategy=strategy)
        stage_s: list[dict[str, float]] = []

        class TimedSecAggPlus(SecAggPlusWorkflow):
            """Times each of the four protocol stages (server-side wall, clients' replies included)."""

            def __call__(self, grid: Grid, context: Context) -> None:
                stage_s.append({})
                super().__call__(grid, context)

            def __getattribute__(self, name: str) -> Any:
                attr = super().__getattribute__(name)
                if not name.endswith("_stage"):
                    return attr

                def timed(*args: Any) -> Any:
                    t0 = time.perf_counter()
                    ok = attr(*args)
                    stage_s[-1][name.removesuffix("_stage")] = time.perf_counter() - t0
                    return ok

                return timed

        if a.mode == "secagg":
            inner: Any = TimedSecAggPlus(
                num_shares=a.num_shares,
                reconstruction_threshold=a.threshold,
                max_weight=1.0,
                clipping_range=CLIP,
                quantization_range=QUANTIZATION_RANGE,
                modulus_range=MODULUS_RANGE,
            )
        else:
            inner = default_fit_workflow
        counter = ByteCounter(grid)
        round_s: list[float] = []

        def timed_fit(grid: Grid, ctx: Context) -> None:
            counter.enabled = not round_s  # round 1 only
            t0 = time.perf_counter()
            inner(grid, ctx)
            round_s.append(time.perf_counter() - t0)
            counter.enabled = False
            stages = json.dumps(stage_s[-1]) if stage_s else "{}"
            print(
                f"[flower_secagg] round {len(round_s)}: {round_s[-1]:.2f} s {stages}",
                file=sys.stderr,
                flush=True,
            )

        workflow = DefaultWorkflow(fit_workflow=timed_fit, evaluate_workflow=lambda grid, ctx: None)
        t0 = time.perf_counter()
        workflow(grid, legacy)
        box["rounds_wall_s"] = time.perf_counter() - t0
        box["round_s"] = round_s
        box["stage_s"] = stage_s
        box["bytes"] = counter
        box["arrays"] = legacy.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()

    return server_app, client_app


def run(a: argparse.Namespace) -> dict:
    from importlib.metadata import version

    from flwr.simulation import run_simulation

    box: dict = {}
    server_app, client_app = build_apps(a, box)
    backend_config = {"client_resources": {"num_cpus": a.cpus_per_client, "num_gpus": 0.0}}
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    run_simulation(server_app, client_app, num_supernodes=a.parties, backend_config=backend_config)
    sim_wall = time.perf_counter() - t0
    if "arrays" not in box or len(box["round_s"]) != a.rounds:
        raise RuntimeError("Flower simulation finished without completing its rounds (see the log above)")
    truth = np.mean([client_vector(a.seed, p, a.params).astype(np.float64) for p in range(a.parties)], axis=0)
    (agg,) = box["arrays"]
    counter: ByteCounter = box["bytes"]
    up, down = list(counter.up.values()), list(counter.down.values())
    out = {
        "framework": "flower",
        "flwr": version("flwr"),
        "mode": a.mode,
        "parties": a.parties,
        "params": a.params,
        "rounds": a.rounds,
        "round_s": box["round_s"],
        "round2_s": box["round_s"][1] if a.rounds > 1 else None,
        "rounds_wall_s": box["rounds_wall_s"],
        "simulation_wall_s": sim_wall,
        "bytes_up_per_client_round1": float(np.mean(up)) if up else None,
        "bytes_down_per_client_round1": float(np.mean(down)) if down else None,
        "plain_float32_bytes": a.params * 4,
        "bytes_count_s": counter.seconds,
        "max_abs_error_vs_mean": float(np.abs(agg.astype(np.float64) - truth).max()),
        "aggregate_dtype": str(agg.dtype),
        "loadavg_1min": [load0, os.getloadavg()[0]],
        "cpus_per_client": a.cpus_per_client,
    }
    if a.mode == "secagg":
        out |= {
            "num_shares": a.num_shares,
            "reconstruction_threshold": a.threshold,
            "clipping_range": CLIP,
            "quantization_range": QUANTIZATION_RANGE,
            "modulus_range": MODULUS_RANGE,
            "stage_s": box["stage_s"],
        }
    return out


def suite(a: argparse.Namespace) -> None:
    """Every case and mode in its own subprocess, under procmem.run_measured (wall + peak tree RSS)."""
    sys.path.insert(0, str(HERE))
    from procmem import run_measured

    cases = CASES if not a.parties else [(a.parties, a.params)]
    for parties, params in cases:
        for mode in a.modes.split(","):
            cmd = [sys.executable, __file__, "--parties", str(parties), "--params", str(params)]
            cmd += ["--mode", mode, "--rounds", str(a.rounds), "--seed", str(a.seed)]
            if mode == "secagg" and a.num_shares is not None:
                cmd += ["--num-shares", str(a.num_shares)]
            res = run_measured(cmd, timeout=a.timeout)
            sys.stderr.write(res["stderr"][-3000:])
            lines = res["stdout"].strip().splitlines()
            row = {"parties": parties, "params": params}
            if lines and not res["timed_out"] and res["returncode"] == 0:
                row = json.loads(lines[-1])
            else:  # keep the rounds that finished before the timeout
                row["rounds_done"] = [
                    line.split("] ", 1)[1]
                    for line in res["stderr"].splitlines()
                    if "[flower_secagg] round" in line
                ]
            row |= {
                "mode": mode,
                "process_wall_s": res["wall_s"],
                "peak_tree_rss_mb": res["peak_rss_mb"],
                "returncode": res["returncode"],
                "timed_out": res["timed_out"],
            }
            print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, default=0)
    ap.add_argument("--params", type=int, default=0)
    ap.add_argument("--mode", choices=("secagg", "plain"), default="secagg")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-shares", type=int, default=None, help="default: deai's k + 1 (odd)")
    ap.add_argument("--threshold", type=int, default=None, help="default: floor(k / 2) + 1")
    ap.add_argument("--cpus-per-client", type=float, default=1.0)
    ap.add_argument("--suite", action="store_true", help="run every case and mode as subprocesses")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per subprocess in --suite")
    ap.add_argument("--modes", default="plain,secagg", help="modes to run in --suite")
    a = ap.parse_args()
    if a.suite:
        suite(a)
        return
    if a.parties < 2 or a.params < 1:
        ap.error("--parties (>= 2) and --params are required unless --suite")
    if a.num_shares is None:
        a.num_shares = deai_degree(a.parties) + 1
    if a.threshold is None:
        a.threshold = (a.num_shares - 1) // 2 + 1
    if a.num_shares % 2 == 0 and a.num_shares < a.parties:
        ap.error("an even --num-shares below --parties crashes Flower's SecAgg+ clients; use an odd value")
    # Keep stdout for the JSON line alone: send everything else at the fd level (Ray, Flower) to stderr.
    sys.stdout.flush()
    json_fd = os.dup(1)
    os.dup2(2, 1)
    res = run(a)
    sys.stdout.flush()
    with os.fdopen(json_fd, "w") as out:
        out.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
