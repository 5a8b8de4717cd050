"""The ``deai`` command: ``deai run``, ``deai demo``.

Human output (progress, tables) goes to stderr; ``--json`` prints one machine-readable
object on stdout. Configuration problems exit with code 2 and write nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from deai.config import ConfigError
from deai.progress import err_console, round_progress

EXIT_CONFIG = 2


def cmd_run(args: argparse.Namespace) -> int:
    from deai.config import load_config
    from deai.engine.api import resume, run

    if args.resume:
        from pathlib import Path

        if not (Path(args.resume) / "config.toml").is_file():
            raise ConfigError(f"{args.resume} is not a deai run directory (no config.toml)")
        cfg = load_config(Path(args.resume) / "config.toml")
        progress, on_round = round_progress(cfg.run.rounds, f"resume {cfg.run.name}")
        with progress:
            result = resume(args.resume, on_round=on_round)
    else:
        if not args.config:
            raise ConfigError("give a CONFIG file, or --resume RUN_DIR")
        cfg = load_config(args.config)
        progress, on_round = round_progress(cfg.run.rounds, f"{cfg.run.name} ({cfg.strategy.algorithm})")
        with progress:
            result = run(cfg, out=args.out, on_round=on_round)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    err_console.print(
        f"final accuracy [bold]{100 * result.final_accuracy:.2f}%[/] after {result.rounds} rounds "
        f"({result.train_time_s:.2f} s training); report: {result.run_dir}/report.html"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from deai.demo import run_demo

    summary = run_demo(out=args.out, rounds=args.rounds)
    if args.json:
        print(json.dumps(summary))
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deai.robustness import DEFENCES, evaluate_matrix, write_outputs

    attacks = [a for a in args.attacks.split(",") if a]
    attack_options: dict[str, dict] = {}
    for item in args.attack_option or []:
        name, _, assignment = item.partition(".")
        option, eq, raw = assignment.partition("=")
        if not (name and option and eq):
            raise ConfigError(f"--attack-option {item!r}: use ATTACK.OPTION=VALUE, e.g. ipm.epsilon=100")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        attack_options.setdefault(name, {})[option] = value
    defences = [d for d in (args.defences or ",".join(DEFENCES)).split(",") if d]
    cells = len(attacks) * len(defences)
    progress, _ = round_progress(cells, "robustness matrix")
    task = progress.task_ids[0]
    with progress:
        report = evaluate_matrix(
            args.config,
            attacks,
            defences,
            args.byzantine_fraction,
            on_cell=lambda a, d: progress.update(task, advance=1, status=f"{a} vs {d}"),
            attack_options=attack_options,
        )
    out = Path(args.out or "runs/robustness")
    write_outputs(report, out, attacks, defences)
    if args.json:
        print(
            json.dumps(
                {
                    "clean_accuracy": report["clean_accuracy"],
                    "results": [
                        {
                            k: r[k]
                            for k in (
                                "attack",
                                "defence",
                                "accuracy",
                                "backdoor_success",
                                "clean_accuracy",
                                "malicious_weight_share",
                            )
                        }
                        for r in report["results"]
                    ],
                }
            )
        )
    err_console.print(f"table: {out / 'robustness.md'}  heatmap: {out / 'heatmap.png'}")
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
        print(json.dumps({"epsilon": eps, "accountant": args.accountant, "delta": args.delta}))
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
        print(json.dumps({"noise_multiplier": z, "epsilon": eps, "accountant": args.accountant}))
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
        print(json.dumps(report))
    else:
        eps = report.get("epsilon")
        err_console.print(f"epsilon spent: {'not private' if eps is None else f'{eps:.4g}'}")
        err_console.print(
            f"membership inference AUC: loss-threshold {report['mia_loss_auc']:.3f}, "
            f"shadow-model {report['mia_shadow_auc']:.3f} (0.5 = the attacker learns nothing)"
        )
        inv = report.get("inversion")
        if inv:
            err_console.print(
                f"gradient inversion of one party's update: MSE {inv['mse']:.4g} "
                f"(mean-image baseline {inv['baseline_mse']:.4g})"
            )
        err_console.print(f"written: {Path(args.run_dir) / 'audit.json'}")
    return 0


def cmd_privacy_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deai.privacy_report import sweep

    zs = [float(z) for z in args.noise_multipliers.split(",") if z]
    out = Path(args.out or "runs/privacy-sweep")
    progress, _ = round_progress(len(zs) + 1, "privacy sweep")
    task = progress.task_ids[0]
    with progress:
        table = sweep(
            args.config, zs, out, on_run=lambda label: progress.update(task, advance=1, status=label)
        )
    if args.json:
        print(json.dumps(table))
    err_console.print(f"table: {out / 'privacy_utility.md'}  plot: {out / 'privacy_utility.png'}")
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
    p_run.set_defaults(func=cmd_run)

    p_rob = sub.add_parser("robustness", help="accuracy of every defence against every attack")
    p_rob.add_argument(
        "--config", required=True, help="base experiment TOML (e.g. examples/robustness_digits.toml)"
    )
    p_rob.add_argument(
        "--attacks", required=True, help="comma-separated: sign_flip,gaussian,alie,ipm,min_max,..."
    )
    p_rob.add_argument("--defences", help="comma-separated (default: all twelve)")
    p_rob.add_argument("--byzantine-fraction", type=float, default=0.2)
    p_rob.add_argument(
        "--attack-option",
        action="append",
        metavar="ATTACK.OPTION=VALUE",
        help="e.g. ipm.epsilon=100 (repeatable)",
    )
    p_rob.add_argument(
        "--out", help="directory for robustness.md/.json and heatmap.png (default runs/robustness)"
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

    p_demo = sub.add_parser("demo", help="the end-to-end story on the embedded defaults (88 clinics)")
    p_demo.add_argument("--out", default="runs/demo", help="directory for the demo's runs and report")
    p_demo.add_argument("--rounds", type=int, default=30)
    p_demo.add_argument("--json", action="store_true")
    p_demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        err_console.print("interrupted; resume with `deai run --resume RUN_DIR`")
        return 130


if __name__ == "__main__":
    sys.exit(main())
