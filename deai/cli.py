"""The ``deai`` command: ``deai run``, ``deai demo``.

Human output (progress, tables) goes to stderr; ``--json`` prints one machine-readable
object on stdout. Configuration problems exit with code 2 and write nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from deai import jsonio
from deai.config import ConfigError, DeaiWarning
from deai.progress import err_console, round_progress

EXIT_CONFIG = 2  # bad input: config, arguments, paths, damaged files; nothing was lost
EXIT_DIVERGED = 3  # the run stopped because training diverged; the message says what to change
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM


def say(text: str) -> None:
    """One line on stderr; ``text`` is rich markup, so anything from the user must pass ``escape`` first."""
    err_console.print(text, highlight=False)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so every ``with`` block (progress bars, files) unwinds."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    if issubclass(category, DeaiWarning):
        say(f"[yellow]warning:[/] {escape(str(message))}")
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deai.config import load_config
    from deai.engine.api import resume, run

    if args.rounds is not None and args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1; got {args.rounds}")
    if args.resume:
        if args.config or args.out:
            raise ConfigError("--resume RUN_DIR continues that run: give no CONFIG and no --out with it")
        if not (Path(args.resume) / "config.toml").is_file():
            raise ConfigError(f"{args.resume} is not a deai run directory (no config.toml)")
        cfg = load_config(Path(args.resume) / "config.toml")
        total = args.rounds or cfg.run.rounds
        progress, on_round = round_progress(total, f"resume {escape(cfg.run.name)}")
        with progress:
            result = resume(args.resume, rounds=args.rounds, on_round=on_round)
    else:
        if not args.config:
            raise ConfigError("give a CONFIG file, or --resume RUN_DIR")
        cfg = load_config(args.config)
        if args.rounds is not None:
            cfg = cfg.with_sections(source="--rounds", run={"rounds": args.rounds})
        progress, on_round = round_progress(
            cfg.run.rounds, f"{escape(cfg.run.name)} ({cfg.strategy.algorithm})"
        )
        with progress:
            result = run(cfg, out=args.out, on_round=on_round)
    if args.json:
        print(jsonio.dumps(result.summary()))
    where = f"; report: {result.run_dir}/report.html" if result.run_dir else ""
    if result.diverged:
        say(f"[bold red]error:[/] {escape(result.stopped or 'the run diverged')}{escape(where)}")
        return EXIT_DIVERGED
    if result.stopped:
        say(f"[bold]stopped early:[/] {escape(result.stopped)}")
    say(
        f"final accuracy [bold]{100 * result.final_accuracy:.2f}%[/] (balanced "
        f"{100 * result.final_balanced_accuracy:.2f}%) after {result.rounds} rounds "
        f"({result.train_time_s:.2f} s training){escape(where)}"
    )
    return 0


def parse_options(items: Sequence[str] | None, flag: str, example: str) -> dict[str, dict]:
    """``NAME.KEY=VALUE`` items (values parsed as JSON when they are) into ``{name: {key: value}}``."""
    options: dict[str, dict] = {}
    for item in items or []:
        name, _, assignment = item.partition(".")
        key, eq, raw = assignment.partition("=")
        if not (name and key and eq):
            raise ConfigError(f"{flag} {item!r}: use NAME.KEY=VALUE, e.g. {example}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(name, {})[key] = value
    return options


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deai.collaboration import compare, markdown
    from deai.config import load_config

    cfg = load_config(args.config)
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if not algorithms:
        raise ConfigError("--algorithms: give at least one, e.g. fedavg,scaffold")
    if args.seeds < 2:
        raise ConfigError(f"--seeds must be at least 2 for a confidence interval; got {args.seeds}")
    seeds = [cfg.run.seed + i for i in range(args.seeds)]
    options = parse_options(args.strategy_option, "--strategy-option", "fedadam.server_lr=0.03")
    out = Path(args.out or "runs/compare")
    from deai.engine.rundir import RunDirectory

    rd = RunDirectory(out)
    with rd.writing(out):
        out.mkdir(parents=True, exist_ok=True)
    steps = len(seeds) * (len(algorithms) + 2 + (0 if args.no_references else 1))
    progress, _ = round_progress(steps, "local-only / federated / pooled")
    task = progress.task_ids[0]
    with progress:
        report = compare(
            cfg,
            algorithms,
            seeds,
            strategy_options=options,
            references=not args.no_references,
            on_run=lambda label: progress.update(task, advance=1, status=escape(label)),
        )
    rd.write_text("collaboration.json", jsonio.dumps(report, indent=2))
    table = markdown(report)
    rd.write_text("collaboration.md", table)
    if args.json:
        print(jsonio.dumps(report))
    else:
        print(table)
    say(escape(f"written: {out / 'collaboration.md'} and {out / 'collaboration.json'}"))
    return 0


def cmd_data_split(args: argparse.Namespace) -> int:
    """One directory per party, each holding only that party's rows: what a party program runs from."""
    from pathlib import Path

    from deai.config import load_config
    from deai.data.party_dirs import write_party_dirs
    from deai.engine.api import build_data

    cfg = load_config(args.config)
    fed = build_data(cfg)
    try:
        dirs = write_party_dirs(
            fed, Path(args.out), dataset=cfg.data.dataset, seed=cfg.run.seed, config_toml=cfg.to_toml()
        )
    except ValueError as err:
        raise ConfigError(f"--out: {err}") from None
    summary = {"out": str(args.out), "parties": len(dirs), "dataset": cfg.data.dataset}
    if args.json:
        print(jsonio.dumps(summary))
    say(escape(f"wrote {len(dirs)} party directories under {args.out} (each holds only its own rows)"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from deai.demo import run_demo

    summary = run_demo(out=args.out, rounds=args.rounds)
    if args.json:
        print(jsonio.dumps(summary))
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from deai.robustness import DEFENCES, JOURNAL, finished_cells, plan_matrix, run_matrix

    attacks = [a for a in args.attacks.split(",") if a]
    attack_options = parse_options(args.attack_option, "--attack-option", "ipm.epsilon=100")
    defences = [d for d in (args.defences or ",".join(DEFENCES)).split(",") if d]
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1; got {args.jobs}")
    out = Path(args.out or "runs/robustness")
    fractions = []
    for item in str(args.byzantine_fraction).split(","):
        try:
            fractions.append(float(item))
        except ValueError:
            raise ConfigError(
                f"--byzantine-fraction: {item!r} is not a number; give fractions like 0.1,0.2,0.3"
            ) from None
    # Everything checkable is checked here, before the first cell: a bad --out or option costs no compute.
    plan = plan_matrix(
        args.config,
        attacks,
        defences,
        fractions,
        attack_options,
        f_max=args.f_max,
        oracle=args.oracle,
        out=out,
        resume=args.resume,
        force=args.force,
    )
    total = len(plan.cells)
    progress, _ = round_progress(total, "robustness matrix")
    task = progress.task_ids[0]

    def on_cell(cell: dict) -> None:
        note = {"ok": "", "not_applicable": " (n/a)", "failed": " (failed)"}.get(cell["status"], "")
        where = f"{cell['attack']} vs {cell['defence']}"
        if cell["attack"] != "none":
            where += f" at {100 * cell['fraction']:g}%"
        progress.update(task, advance=1, status=f"{where}{note}")

    try:
        with progress:
            if finished_cells(plan):
                progress.update(task, completed=finished_cells(plan), status="resumed")
            report = run_matrix(plan, on_cell=on_cell, jobs=args.jobs)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (main raises Terminated): finished cells are kept
        again = ["deai", "robustness", "--config", str(args.config), "--attacks", args.attacks]
        if args.defences:
            again += ["--defences", args.defences]
        again += ["--byzantine-fraction", str(args.byzantine_fraction)]
        if args.f_max is not None:
            again += ["--f-max", str(args.f_max)]
        if args.oracle:
            again += ["--oracle"]
        for item in args.attack_option or []:
            again += ["--attack-option", item]
        again += ["--out", str(out), *(["--jobs", str(args.jobs)] if args.jobs != 1 else []), "--resume"]
        terminated = isinstance(err, Terminated)
        say(
            escape(
                f"{'terminated' if terminated else 'interrupted'}: {finished_cells(plan)} of {total} cells "
                f"finished and are kept in {out / JOURNAL}; continue with: {shlex.join(again)}"
            )
        )
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    if args.json:
        keys = ("attack", "defence", "fraction", "status", "accuracy", "backdoor_success", "clean_accuracy")
        rows = [
            {
                **{k: r[k] for k in (*keys, "malicious_weight_share")},
                **{k: r[k] for k in ("reason", "error") if k in r},
            }
            for r in report["results"]
        ]
        summary = {k: report[k] for k in ("clean_accuracy", "f_max", "oracle", "assumptions", "worst")}
        print(jsonio.dumps({**summary, "results": rows}))
    counts = report["cells"]
    if counts.get("failed") or counts.get("not_applicable"):
        say(
            f"attacked cells: {counts.get('ok', 0)} ran, {counts.get('not_applicable', 0)} not applicable, "
            f"{counts.get('failed', 0)} failed (reasons under the table)"
        )
    say(escape(f"table: {out / 'robustness.md'}  heatmap: {out / 'heatmap.png'}"))
    return 0


def cmd_privacy_epsilon(args: argparse.Namespace) -> int:
    from deai.privacy.dp.accountant import compute_epsilon

    try:
        eps = compute_epsilon(
            args.noise_multiplier, args.sampling_rate, args.steps, args.delta, args.accountant
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if args.json:
        print(jsonio.dumps({"epsilon": eps, "accountant": args.accountant, "delta": args.delta}))
    else:
        print(f"epsilon = {eps:.6g} at delta = {args.delta:g} ({args.accountant})")
    return 0


def cmd_privacy_calibrate(args: argparse.Namespace) -> int:
    from deai.privacy.dp.accountant import calibrate_noise_multiplier, compute_epsilon

    try:
        z = calibrate_noise_multiplier(
            args.target_epsilon, args.sampling_rate, args.steps, args.delta, args.accountant
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    eps = compute_epsilon(z, args.sampling_rate, args.steps, args.delta, args.accountant)
    if args.json:
        print(jsonio.dumps({"noise_multiplier": z, "epsilon": eps, "accountant": args.accountant}))
    else:
        print(
            f"noise_multiplier = {z:.6g} gives epsilon = {eps:.6g} "
            f"at delta = {args.delta:g} ({args.accountant})"
        )
    return 0


def cmd_privacy_audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deai.privacy.audit.report import audit_run

    if not (Path(args.run_dir) / "final.npz").is_file():
        raise ConfigError(f"{args.run_dir} has no final.npz: audit a finished run directory")
    report = audit_run(args.run_dir, max_examples=args.max_examples)
    if args.json:
        print(jsonio.dumps(report))
    else:
        eps = report.get("epsilon")
        say(f"epsilon spent: {'not private' if eps is None else f'{eps:.4g}'}")
        say(
            f"membership inference AUC: loss-threshold {report['mia_loss_auc']:.3f}, "
            f"shadow-model {report['mia_shadow_auc']:.3f} (0.5 = the attacker learns nothing)"
        )
        inv = report.get("inversion")
        if inv:
            say(
                f"gradient inversion of one party's update: MSE {inv['mse']:.4g} "
                f"(mean-image baseline {inv['baseline_mse']:.4g})"
            )
        say(f"written: {escape(str(Path(args.run_dir) / 'audit.json'))}")
    return 0


def cmd_privacy_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deai.privacy_report import sweep

    try:
        zs = [float(z) for z in args.noise_multipliers.split(",") if z.strip()]
    except ValueError:
        raise ConfigError(
            f"--noise-multipliers {args.noise_multipliers!r}: give comma-separated numbers, e.g. 0.5,1,2,4"
        ) from None
    if not zs or any(not (z > 0 and z < float("inf")) for z in zs):
        raise ConfigError(f"--noise-multipliers {args.noise_multipliers!r}: give positive finite numbers")
    out = Path(args.out or "runs/privacy-sweep")
    progress, _ = round_progress(len(zs) + 1, "privacy sweep")
    task = progress.task_ids[0]
    with progress:
        table = sweep(
            args.config, zs, out, on_run=lambda label: progress.update(task, advance=1, status=label)
        )
    if args.json:
        print(jsonio.dumps(table))
    say(escape(f"table: {out / 'privacy_utility.md'}  plot: {out / 'privacy_utility.png'}"))
    return 0


def _ledger_target(path_arg: str) -> tuple[Path, Path | None]:
    """``PATH`` as (ledger file, summary.json beside it or None): a run directory or a ledger file."""
    path = Path(path_arg)
    if path.is_dir():
        ledger, summary = path / "ledger.db", path / "summary.json"
    else:
        ledger, summary = path, path.with_name("summary.json")
    return ledger, summary if summary.is_file() else None


def _published_head(summary: Path) -> Any:
    from deai.verify.ledger import Head

    try:
        data = json.loads(summary.read_text())
        return Head.from_dict(data["ledger"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"--summary {summary}: no ledger head in it ({type(err).__name__})") from None


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from deai.verify.ledger import LedgerError, verify

    ledger, beside = _ledger_target(args.path)
    summary = Path(args.summary) if args.summary else (None if args.head else beside)
    head = _published_head(summary) if summary is not None else None
    try:
        verdict = verify(ledger, head, args.head)
    except LedgerError as err:
        raise ConfigError(str(err)) from None
    if args.json:
        print(jsonio.dumps(verdict.as_dict()))
    if verdict.valid:
        if head is not None:
            against = f", matching the signed head in {escape(str(summary))}"
        elif args.head:
            against = ", matching --head"
        else:
            against = " (no published head given: a cut tail would not show; pass --head or --summary)"
        say(f"[green]valid[/]: {verdict.entries} entries, head {verdict.head}{against}")
        if verdict.validators:
            say(
                f"quorum: each of {verdict.rounds} round results co-signed by more than 2/3 of "
                f"{verdict.validators} validators"
            )
        else:
            say(f"quorum: none asked ({verdict.rounds} round results, no validators registered)")
        for d in verdict.disputes:
            say(
                f"[bold yellow]disputed[/]: round {d['round']} counted with {len(d['cosigned'])} "
                f"co-signatures, but {len(d['dissent'])} validator(s) recomputed something else from the "
                "same updates: one side lied; re-execute the round to settle it"
            )
        return 0
    bad = verdict.first_bad or {}
    say(f"[bold red]invalid[/]: entry {bad.get('seq')}: {escape(str(bad.get('reason')))}")
    return 1


def cmd_ledger_cross_check(args: argparse.Namespace) -> int:
    """p2p peers' own ledgers side by side: equivocation and false logs, each with its signed proof."""
    from deai.verify.gossip_audit import cross_check
    from deai.verify.ledger import LedgerError

    try:
        audit = cross_check([Path(p) for p in args.paths])
    except (LedgerError, ValueError) as err:
        raise ConfigError(str(err)) from None
    if args.json:
        fields = {"peers": audit.peers, "rounds": audit.rounds, "receipts": audit.receipts}
        print(jsonio.dumps(fields | {"findings": audit.findings, "invalid": audit.invalid}))
    for where, why in audit.invalid.items():
        say(f"[bold red]invalid[/]: {escape(where)}: {escape(why)}")
    for f in audit.findings:
        what = {
            "equivocation": "signed two different models for the round (both signed headers attached)",
            "false_log": "its own log names another model than the one it signed to a neighbour",
        }[f["offence"]]
        say(f"[bold red]{f['offence']}[/]: party {f['party']}, round {f['round']}: {what}")
    if audit.clean:
        say(
            f"[green]consistent[/]: {len(audit.peers)} peers' logs, {audit.rounds} rounds, "
            f"{audit.receipts} signed receipts: every peer signed one model per round, as its log says"
        )
    return 0 if audit.clean else 1


def cmd_ledger_show(args: argparse.Namespace) -> int:
    from deai.verify.ledger import LedgerError, read_entries

    ledger, _ = _ledger_target(args.path)
    try:
        rows = [e for e in read_entries(ledger) if args.round is None or e.get("round") == args.round]
    except LedgerError as err:
        raise ConfigError(str(err)) from None
    if args.json:
        print(jsonio.dumps(rows))
        return 0
    for e in rows:
        body = e.get("body", {})
        where = f"round {e['round']}" if e.get("round") is not None else "task"
        if e.get("kind") == "round_result":
            rejected = body.get("rejected") or {}
            detail = (
                f"model {str(body.get('model_sha256'))[:12]}…, {len(body.get('participants', []))} accepted, "
                f"{len(rejected)} rejected"
                + (f" ({', '.join(sorted(set(rejected.values())))})" if rejected else "")
                + (f", updates root {str(body['updates_root'])[:12]}…" if body.get("updates_root") else "")
            )
        elif e.get("kind") == "task_created":
            detail = f"task {e.get('task')}, config {str(body.get('config_sha256'))[:12]}…"
        elif e.get("kind") == "joined":
            role = f"party {body['party']}" if "party" in body else body.get("role")
            detail = f"{role} {str(body.get('public_key'))[:12]}…"
        elif e.get("kind") == "commitments":
            detail = f"{len(body.get('leaves', []))} signed updates, root {str(body.get('root'))[:12]}…"
        elif e.get("kind") == "cosigned":
            detail = f"recomputed and agrees: model {str(body.get('model_sha256'))[:12]}…"
        elif e.get("kind") == "dissent":
            detail = f"disagrees: {body.get('reason')}"
        elif e.get("kind") == "slash":
            detail = f"party {body.get('party')} slashed: {body.get('reason')} (evidence checked by verify)"
        elif e.get("kind") == "rewards":
            paid = body.get("paid") or {}
            detail = f"paid {sum(paid.values()):.4f} to {sum(1 for v in paid.values() if v > 0)} parties"
        elif e.get("kind") == "valuation":
            values = body.get("values") or {}
            top = sorted(values.items(), key=lambda kv: -kv[1])[:3]
            detail = f"{len(values)} parties valued; top " + ", ".join(f"{p} {v:+.4f}" for p, v in top)
        else:
            detail = jsonio.dumps(body)[:100]
        print(f"{e.get('seq'):>6}  {where:<10} {e.get('kind'):<13} by {str(e.get('signer'))[:8]}  {detail}")
    return 0


def cmd_value(args: argparse.Namespace) -> int:
    from deai.config import load_config
    from deai.incentives.valuation import value

    cfg = load_config(args.config)
    progress, on_round = round_progress(cfg.run.rounds, f"value {escape(cfg.run.name)} ({args.method})")
    with progress:
        out = value(cfg, args.method, args.utility, on_round=on_round)
    if args.json:
        print(jsonio.dumps({k: out[k] for k in ("method", "utility", "values", "seconds")}))
        return 0
    ranked = sorted(out["values"].items(), key=lambda kv: -kv[1])
    width = max(len(name) for name, _ in ranked)
    say(f"{out['method']} values, utility: {out['utility']} (summed over {len(out['rounds'])} rounds)")
    for name, v in ranked:
        print(f"  {name:<{width}}  {v:+.6f}")
    say(f"valuation took {out['seconds']:.2f} s of the run's {out['run_seconds']:.2f} s")
    return 0


def cmd_ledger_balances(args: argparse.Namespace) -> int:
    from deai.incentives.rewards import balances
    from deai.verify.ledger import LedgerError, verify

    ledger, _ = _ledger_target(args.path)
    try:
        verdict = verify(ledger)
        table = balances(ledger)
    except LedgerError as err:
        raise ConfigError(str(err)) from None
    if not verdict.valid:  # balances from a broken log would be whatever the tamperer wrote
        bad = verdict.first_bad or {}
        say(f"[bold red]invalid[/]: entry {bad.get('seq')}: {escape(str(bad.get('reason')))}; no balances")
        return 1
    if args.json:
        print(jsonio.dumps(table))
        return 0
    if not table:
        say(escape("no party accounts: the task set no incentives (ledger.sign_updates and [incentives])"))
        return 0
    print(f"{'party':>8}  {'stake':>12}  {'slashed':>12}  {'paid':>12}  {'balance':>12}")
    for party, row in table.items():
        cells = "  ".join(f"{row[k]:>12.6f}" for k in ("stake", "slashed", "paid", "balance"))
        print(f"{party:>8}  {cells}")
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    """One node of a task over the network (see deai.net.node)."""
    from deai.config import load_config
    from deai.net.node import NodeArgs, run_node

    cfg = load_config(args.task)
    passphrase = os.environ.get(args.passphrase_env) if args.passphrase_env else None
    node = NodeArgs(
        role=args.role,
        task=Path(args.task),
        data=Path(args.data),
        key=Path(args.key),
        roster=Path(args.roster) if args.roster else Path(args.task).parent / "roster.json",
        state=Path(args.state),
        listen=args.listen,
        connect=args.connect,
        status=args.status,
        passphrase=passphrase,
        fault=args.fault,
        tls=Path(args.tls) if args.tls else None,
        relays=[a for a in (args.relay or "").split(",") if a] or None,
    )
    summary = run_node(node, cfg)
    if args.json:
        print(jsonio.dumps(summary))
    return int(summary.get("exit", 0))


def cmd_launch(args: argparse.Namespace) -> int:
    """A whole local federation, one process per node (see deai.net.launch)."""
    from deai.config import load_config
    from deai.net.launch import launch

    cfg = load_config(args.task)
    if args.nodes is not None and args.nodes != cfg.data.num_parties:
        cfg = cfg.with_sections(source="--nodes", data={"num_parties": args.nodes})
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.run.name}-nodes"
    net = cfg.network
    shape = {
        "star": "an aggregator",
        "hierarchical": f"{' + '.join(map(str, net.edge_levels))} edge aggregators and a top aggregator",
        "p2p": "no coordinator (peer-to-peer)",
    }[net.topology]
    say(escape(f"launching {cfg.data.num_parties} party processes and {shape} under {out}"))
    try:
        summary = launch(cfg, out, timeout=args.timeout, tls=args.tls)
    except RuntimeError as err:
        raise ConfigError(str(err)) from None
    if args.json:
        print(jsonio.dumps(summary))
    else:
        where = out / "nodes" / ("party-*" if net.topology == "p2p" else "aggregator") / "run"
        say(
            escape(
                f"{summary['rounds']} rounds over the network: accuracy {summary['final_accuracy']:.4f}, "
                f"model {summary['model_hash'][:16]}; run directories {where}"
            )
        )
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    """A circuit relay and DHT server for p2p peers behind NATs (see deai.net.relay)."""
    from deai.net.events import EventLog
    from deai.net.relay import run_relay

    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    log = EventLog("relay", state / "node.log")
    try:
        run_relay(args.listen, state, log)
    finally:
        log.close()
    return 0


def cmd_tls_ca(args: argparse.Namespace) -> int:
    from deai.net.tls import make_ca

    try:
        make_ca(Path(args.dir))
    except FileExistsError as err:
        raise ConfigError(str(err)) from None
    say(escape(f"task CA written to {args.dir} (ca.crt; ca.key is secret, mode 0600)"))
    return 0


def cmd_tls_issue(args: argparse.Namespace) -> int:
    from deai.net.tls import issue

    if args.days < 1:
        raise ConfigError(f"--days {args.days}: a certificate must last at least a day")
    hosts = tuple(args.host or ("127.0.0.1", "localhost"))
    try:
        issue(Path(args.ca), args.name, Path(args.out), hosts, args.days)
    except ValueError as err:
        raise ConfigError(f"--ca: {err}") from None
    say(escape(f"certificate for {args.name} written to {args.out} (ca.crt, node.crt, node.key)"))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from deai.verify.identity import Identity

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"--out {out} exists; pass --force to overwrite it or choose another path")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist")
    passphrase = None
    if args.passphrase_env:
        passphrase = os.environ.get(args.passphrase_env)
        if not passphrase:
            raise ConfigError(f"--passphrase-env {args.passphrase_env}: that environment variable is empty")
    try:
        identity = Identity.generate(args.role)
    except ValueError as err:
        raise ConfigError(f"--role: {err}") from None
    identity.save(out, passphrase)
    result = {
        "path": str(out),
        "role": identity.role,
        "id": identity.id,
        "public_key": identity.public_key.hex(),
    }
    if args.json:
        print(jsonio.dumps(result))
    say(
        f"{identity.role} key {identity.id} written to {escape(str(out))}"
        + (" (encrypted)" if passphrase else "")
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deai", description="Decentralized AI: learn together without moving data."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run a federated experiment from a TOML config")
    p_run.add_argument("config", nargs="?", help="experiment TOML file (see examples/)")
    p_run.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p_run.add_argument("--out", help="run directory to create (default runs/NAME-TIMESTAMP)")
    p_run.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    p_run.add_argument(
        "--rounds", type=int, help="set run.rounds (with --resume: train an existing run for longer)"
    )
    p_run.set_defaults(func=cmd_run)

    p_rob = sub.add_parser("robustness", help="accuracy of every defence against every attack")
    p_rob.add_argument(
        "--config", required=True, help="base experiment TOML (e.g. examples/robustness_digits.toml)"
    )
    p_rob.add_argument(
        "--attacks", required=True, help="comma-separated: sign_flip,gaussian,alie,ipm,min_max,..."
    )
    p_rob.add_argument("--defences", help="comma-separated (default: every rule that reads updates)")
    p_rob.add_argument(
        "--byzantine-fraction",
        default="0.2",
        help="true attacker share(s) the cells run at, comma-separated, e.g. 0.1,0.2,0.3 (default 0.2)",
    )
    p_rob.add_argument(
        "--f-max",
        type=float,
        help="the Byzantine share every defence is told (default: the config's strategy.f_max if set, "
        "else the largest --byzantine-fraction); nothing else about the attackers is given",
    )
    p_rob.add_argument(
        "--oracle",
        action="store_true",
        help="the old, flattering evaluation, for comparison only: rules get the true attacker count and "
        "the clean run's norm (one --byzantine-fraction)",
    )
    p_rob.add_argument(
        "--attack-option",
        action="append",
        metavar="ATTACK.OPTION=VALUE",
        help="e.g. ipm.epsilon=100 (repeatable)",
    )
    p_rob.add_argument(
        "--out",
        help="directory for cells.jsonl (each cell as it finishes), robustness.md/.json and heatmap.png "
        "(default runs/robustness)",
    )
    p_rob.add_argument(
        "--jobs", type=int, default=1, help="cells run in this many worker processes (default 1)"
    )
    p_rob.add_argument(
        "--resume", action="store_true", help="continue the matrix in --out: only missing or failed cells run"
    )
    p_rob.add_argument(
        "--force", action="store_true", help="discard a matrix already in --out and start over"
    )
    p_rob.add_argument("--json", action="store_true")
    p_rob.set_defaults(func=cmd_robustness)

    p_priv = sub.add_parser("privacy", help="differential privacy: epsilon, calibration, audits, trade-offs")
    psub = p_priv.add_subparsers(dest="privacy_command", required=True)
    for name, func, helptext in (
        ("epsilon", cmd_privacy_epsilon, "epsilon of the Poisson-subsampled Gaussian mechanism"),
        ("calibrate", cmd_privacy_calibrate, "noise multiplier that reaches a target epsilon"),
    ):
        p = psub.add_parser(name, help=helptext)
        if name == "epsilon":
            p.add_argument("--noise-multiplier", type=float, required=True)
        else:
            p.add_argument("--target-epsilon", type=float, required=True)
        p.add_argument("--sampling-rate", type=float, required=True)
        p.add_argument("--steps", type=int, required=True)
        p.add_argument("--delta", type=float, default=1e-5)
        p.add_argument("--accountant", choices=["rdp", "pld"], default="rdp")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
    p = psub.add_parser("audit", help="membership-inference and gradient-inversion attacks on a finished run")
    p.add_argument("run_dir")
    p.add_argument("--max-examples", type=int, default=2000)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_privacy_audit)
    p = psub.add_parser("sweep", help="accuracy and attack AUC against epsilon for several noise levels")
    p.add_argument("config")
    p.add_argument("--noise-multipliers", default="0.5,1,2,4")
    p.add_argument("--out")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_privacy_sweep)

    p_cmp = sub.add_parser(
        "compare", help="what federation buys: local-only, federated and pooled models over seeds"
    )
    p_cmp.add_argument(
        "config", help="experiment TOML with data.holdout_fraction (the task's evaluation rows)"
    )
    p_cmp.add_argument(
        "--algorithms", default="fedavg,scaffold", help="comma-separated (default fedavg,scaffold)"
    )
    p_cmp.add_argument("--seeds", type=int, default=5, help="seeds run.seed, run.seed+1, ... (default 5)")
    p_cmp.add_argument(
        "--strategy-option",
        action="append",
        metavar="ALGORITHM.KEY=VALUE",
        help="a strategy setting for one algorithm, e.g. fedadam.server_lr=0.03 (repeatable)",
    )
    p_cmp.add_argument("--no-references", action="store_true", help="skip the scikit-learn reference models")
    p_cmp.add_argument("--out", help="directory for collaboration.md/.json (default runs/compare)")
    p_cmp.add_argument("--json", action="store_true")
    p_cmp.set_defaults(func=cmd_compare)

    p_data = sub.add_parser("data", help="prepare data: one directory per party")
    dsub = p_data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser(
        "split", help="write each party's own train/test rows and manifest to OUT/party-NNNNN"
    )
    p.add_argument("config", help="the TOML config whose [data] section defines the federation")
    p.add_argument("--out", required=True, help="directory to create (must be absent or empty)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_split)

    p_demo = sub.add_parser("demo", help="the end-to-end story on the embedded defaults (88 clinics)")
    p_demo.add_argument("--out", default="runs/demo", help="directory for the demo's runs and report")
    p_demo.add_argument("--rounds", type=int, default=60, help="rounds of each clinic run (default 60)")
    p_demo.add_argument("--json", action="store_true")
    p_demo.set_defaults(func=cmd_demo)

    p_led = sub.add_parser("ledger", help="check or read a run's tamper-evident ledger")
    lsub = p_led.add_subparsers(dest="ledger_command", required=True)
    p = lsub.add_parser("verify", help="re-check every hash, link and signature; exit 0 valid, 1 not")
    p.add_argument("path", help="a run directory or its ledger.db")
    p.add_argument("--head", help="the published head hash the ledger must end at")
    p.add_argument(
        "--summary",
        help="a summary.json whose signed ledger head to check against (default: the run directory's own)",
    )
    p.add_argument("--json", action="store_true", help='print {"valid", "entries", "head", "first_bad"}')
    p.set_defaults(func=cmd_ledger_verify)
    p = lsub.add_parser("balances", help="each party's stake, payouts and balance, re-derived from the log")
    p.add_argument("path", help="a run directory or its ledger.db")
    p.add_argument(
        "--json", action="store_true", help='print {party: {"stake", "slashed", "paid", "balance"}}'
    )
    p.set_defaults(func=cmd_ledger_balances)
    p = lsub.add_parser(
        "cross-check", help="p2p: compare peers' own ledgers; prove equivocation (exit 0 clean, 1 not)"
    )
    p.add_argument("paths", nargs="+", help="each peer's run directory (STATE/run) or its ledger.db")
    p.add_argument("--json", action="store_true", help='print {"peers", "rounds", "findings", "invalid"}')
    p.set_defaults(func=cmd_ledger_cross_check)
    p = lsub.add_parser("show", help="the ledger's history, one line per entry")
    p.add_argument("path", help="a run directory or its ledger.db")
    p.add_argument("--round", type=int, help="only this round's entries")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ledger_show)

    p_val = sub.add_parser("value", help="each party's contribution: Shapley values from every round")
    p_val.add_argument("config", help="experiment TOML")
    p_val.add_argument("--method", default="gtg", help="exact, gtg (GTG-Shapley), tmc or loo (default gtg)")
    p_val.add_argument("--utility", default="loss", help="loss (minus eval cross-entropy) or accuracy")
    p_val.add_argument("--json", action="store_true", help='print {"method", "utility", "values", "seconds"}')
    p_val.set_defaults(func=cmd_value)
    p_node = sub.add_parser("node", help="run one node of a task over the network (party, aggregator, ...)")
    p_node.add_argument("--task", required=True, help="the task's TOML config (the same file on every node)")
    p_node.add_argument(
        "--data",
        required=True,
        help="party/peer: its own party-NNNNN dir; aggregator/edge/validator: the split",
    )
    p_node.add_argument("--key", required=True, help="this node's key file (deai keygen)")
    p_node.add_argument("--roster", help="the task's roster.json (default: beside --task)")
    p_node.add_argument(
        "--role",
        default="party",
        choices=["party", "aggregator", "edge", "validator", "peer"],
        help="party (default), aggregator, edge (hierarchical), validator (co-signs rounds) or peer (p2p)",
    )
    p_node.add_argument("--listen", help="aggregator: HOST:PORT to listen on (port 0: any free)")
    p_node.add_argument(
        "--connect",
        help="party/edge/validator: the parent's HOST:PORT (they only dial out); peer: multiaddrs",
    )
    p_node.add_argument("--state", default="node-state", help="this node's own state directory")
    p_node.add_argument("--status", help="serve /status (JSON) and /metrics (Prometheus) on HOST:PORT")
    p_node.add_argument("--passphrase-env", help="environment variable holding the key's passphrase")
    p_node.add_argument(
        "--fault",
        help="fault injection for drills and tests: party crash-after:KIND:ROUND (e.g. crash-after:train:3), "
        "slow:SECONDS, forge-signature or break-commitment; peer sign_flip:SCALE or equivocate; "
        "validator lie",
    )
    p_node.add_argument(
        "--tls", help="mutual TLS: a directory with ca.crt, node.crt, node.key (deai tls issue)"
    )
    p_node.add_argument(
        "--relay",
        help="peer behind a NAT: comma-separated multiaddrs of `deai relay` nodes to be reached through",
    )
    p_node.add_argument("--json", action="store_true")
    p_node.set_defaults(func=cmd_node)

    p_launch = sub.add_parser("launch", help="a local federation: one OS process per node, torn down by PID")
    p_launch.add_argument("task", help="the task's TOML config")
    p_launch.add_argument("--nodes", type=int, help="party processes (sets data.num_parties)")
    p_launch.add_argument("--out", help="directory for the split, keys, roster and node states")
    p_launch.add_argument("--timeout", type=float, default=1800.0, help="seconds before giving up")
    p_launch.add_argument("--tls", action="store_true", help="mutual TLS from a fresh task CA")
    p_launch.add_argument("--json", action="store_true")

    p_relay = sub.add_parser("relay", help="a circuit relay (and DHT server) for p2p peers behind NATs")
    p_relay.add_argument(
        "--listen", default="0.0.0.0:0", help="HOST:PORT, reachable by the peers (port 0: free)"
    )
    p_relay.add_argument("--state", default="relay-state", help="where it writes its address and log")
    p_relay.set_defaults(func=cmd_relay)

    p_tls = sub.add_parser("tls", help="a task CA and node certificates for mutual TLS between nodes")
    tsub = p_tls.add_subparsers(dest="tls_command", required=True)
    p = tsub.add_parser("ca", help="make the task CA in DIR (ca.crt, ca.key)")
    p.add_argument("dir")
    p.set_defaults(func=cmd_tls_ca)
    p = tsub.add_parser("issue", help="a node certificate signed by the task CA, into --out")
    p.add_argument("name", help="the node's name (e.g. aggregator, party-00003)")
    p.add_argument("--ca", required=True, help="the CA directory (deai tls ca)")
    p.add_argument("--out", required=True, help="the node's TLS directory (its --tls)")
    p.add_argument("--host", action="append", default=[], help="an address the node is reached at (repeat)")
    p.add_argument("--days", type=int, default=90)
    p.set_defaults(func=cmd_tls_issue)
    p_launch.set_defaults(func=cmd_launch)

    p_key = sub.add_parser("keygen", help="make an Ed25519 key file (OS entropy)")
    p_key.add_argument("--role", required=True, help="owner, aggregator, validator or party")
    p_key.add_argument("--out", required=True, help="key file to write (mode 0600)")
    p_key.add_argument("--passphrase-env", help="encrypt with the passphrase in this environment variable")
    p_key.add_argument("--force", action="store_true", help="overwrite an existing file")
    p_key.add_argument("--json", action="store_true")
    p_key.set_defaults(func=cmd_keygen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", DeaiWarning)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except ConfigError as err:
        say(f"[bold red]error:[/] {escape(str(err))}")
        return EXIT_CONFIG
    except BrokenPipeError:  # `deai ledger show RUN | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # exit flushes into nothing
        return 0
    except KeyboardInterrupt as err:
        from deai.engine.api import RunInterrupted

        cause = err.original if isinstance(err, RunInterrupted) else err
        terminated = isinstance(cause, Terminated)
        what = "terminated" if terminated else "interrupted"
        if isinstance(err, RunInterrupted):
            where = escape(str(err.run_dir))
            say(f"{what}; the run keeps its last finished round: deai run --resume {where}")
        else:
            say(f"{what}")
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        warnings.showwarning = _default_showwarning


if __name__ == "__main__":
    sys.exit(main())
