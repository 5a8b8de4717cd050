"""Cost of CKKS homomorphic-encryption aggregation against plaintext aggregation, measured in one run.

For each (parties, params) and each CKKS parameter set the script times, with the real byte strings
in between: every party's ``encrypt_update`` (packing, encryption, serialization), the aggregator's
``aggregate_ciphertexts`` (deserializing, checking and adding all parties' ciphertexts), and the
owner's ``decrypt_sum``; a 3-member XOR key committee's decryption (combining the shares, then
decrypting) is timed on a sum of the same size. Plaintext aggregation is ``np.sum`` of the weighted
``[parties, params]`` float32 matrix. Ratios are taken within the run; best of ``--repeats``.
It also checks the decrypted weighted mean against the float64 one.

    python benchmarks/bench_he.py [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from deai.privacy.he import (
    CKKSParams,
    KeyCommittee,
    KeyOwner,
    aggregate_ciphertexts,
    decrypt_sum,
    encrypt_update,
)

CASES = [(10, 100_000), (100, 10_000)]
PARAMS = {
    "[60,40,40,60]": CKKSParams(),
    "[60,60]": CKKSParams.additive(),
}


def bench(
    parties: int, params_count: int, label: str, params: CKKSParams, repeats: int, seed: int = 0
) -> dict:
    rng = np.random.default_rng(seed)
    updates = rng.uniform(-1, 1, (parties, params_count)).astype(np.float32)
    weights = rng.integers(10, 1000, parties).astype(np.float64)

    plain_times = []
    for _ in range(max(repeats, 20)):
        t0 = time.perf_counter()
        np.sum(updates * weights[:, None].astype(np.float32), axis=0)
        plain_times.append(time.perf_counter() - t0)
    plain_s = float(np.median(plain_times))

    best: dict | None = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        owner = KeyOwner(params)
        keygen_s = time.perf_counter() - t0
        public = owner.public_context

        payloads, encrypt_times = {}, []
        for p in range(parties):
            t0 = time.perf_counter()
            payloads[p] = encrypt_update(updates[p], public, weight=weights[p])
            encrypt_times.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        result = aggregate_ciphertexts(payloads, public, dim=params_count)
        aggregate_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        total = decrypt_sum(result.sum_payload, owner, summed=parties)
        decrypt_s = time.perf_counter() - t0

        committee = KeyCommittee.deal(3, params=params)
        committee_sum = encrypt_update(updates[0], committee.public_context)
        t0 = time.perf_counter()
        decrypt_sum(committee_sum, committee, summed=1)
        committee_decrypt_s = time.perf_counter() - t0

        run = {
            "keygen_s": keygen_s,
            "encrypt_s_per_party": float(np.mean(encrypt_times)),
            "aggregate_s": aggregate_s,
            "decrypt_s": decrypt_s,
            "committee_decrypt_s": committee_decrypt_s,
            "bytes_per_party": float(np.mean([len(b) for b in payloads.values()])),
            "public_context_bytes": len(public.data),
            "mean": total / weights.sum(),
        }
        run["pipeline_s"] = parties * run["encrypt_s_per_party"] + aggregate_s + decrypt_s
        if best is None or run["pipeline_s"] < best["pipeline_s"]:
            best = run
    assert best is not None

    truth = np.average(updates.astype(np.float64), axis=0, weights=weights)
    plain_bytes = params_count * np.dtype(np.float32).itemsize
    mean = best.pop("mean")
    return {
        "parties": parties,
        "params": params_count,
        "coeff_mod_bit_sizes": label,
        "security_bits": params.security_bits,
        "ciphertexts_per_party": params.ciphertexts_for(params_count),
        **best,
        "plaintext_bytes_per_party": plain_bytes,
        "expansion": best["bytes_per_party"] / plain_bytes,
        "plain_sum_s": plain_s,
        "aggregate_ratio": best["aggregate_s"] / plain_s,
        "pipeline_ratio": best["pipeline_s"] / plain_s,
        "max_abs_error_of_mean": float(np.abs(mean - truth).max()),
    }


def table(rows: list[dict]) -> str:
    head = (
        "| parties × params | modulus (security) | ct/party | keygen (s) | encrypt/party (s) | aggregate (s) "
        "| decrypt owner (s) | decrypt committee (s) | bytes/party | expansion vs float32 | np.sum (s) "
        "| aggregate ÷ np.sum | (P·encrypt + aggregate + decrypt) ÷ np.sum | max error of mean |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['parties']:,} × {r['params']:,} | {r['coeff_mod_bit_sizes']} ({r['security_bits']}-bit) "
            f"| {r['ciphertexts_per_party']} | {r['keygen_s']:.3f} | {r['encrypt_s_per_party']:.3f} "
            f"| {r['aggregate_s']:.3f} | {r['decrypt_s']:.3f} | {r['committee_decrypt_s']:.3f} "
            f"| {r['bytes_per_party'] / 1e6:.2f} MB | {r['expansion']:.1f}× "
            f"| {r['plain_sum_s'] * 1e3:.2f} ms | {r['aggregate_ratio']:,.0f}× | {r['pipeline_ratio']:,.0f}× "
            f"| {r['max_abs_error_of_mean']:.1e} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    args = parser.parse_args(argv)
    rows = []
    for parties, params_count in CASES:
        for label, params in PARAMS.items():
            rows.append(bench(parties, params_count, label, params, args.repeats))
            print(f"done {parties} x {params_count} {label}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows))


if __name__ == "__main__":
    main()
