"""The server program: select parties, accept their update batches, and release the next global model.

It never reads a party's data, never knows who is malicious, and trusts nothing a party claims for
privacy accounting: distributed DP is accounted as if the task's ``f_max`` share of the parties sent no
noise. Each round it releases a :class:`~deai.messages.RoundRecord` for the subscribers (observer,
ledger, dashboard). The one round loop that drives it is :func:`deai.engine.driver.drive`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deai.aggregate.base import traits
from deai.config import ExperimentConfig
from deai.context import RoundContext
from deai.engine.participation import sample_parties
from deai.messages import Failure, RoundRecord, TrainTask, UpdateBatch
from deai.models.base import Model
from deai.privacy.secagg.errors import SecAggError
from deai.rng import Purpose, generator
from deai.server.registry import PartyRegistry
from deai.server.streaming import StreamingSum
from deai.train import LocalSpec, train_parties
from deai.train.scaffold import ServerControl
from deai.verify.update_signing import BAD_SIGNATURE, UpdateVerifier
from deai.verify.validation import NON_FINITE, NORM_OVERFLOW, validate_updates

log = logging.getLogger("deai.server")

# Rejection reasons that mean an update could not be used at all (rather than failing a policy).
UNUSABLE = {NON_FINITE, NORM_OVERFLOW}

Evaluator = Callable[[np.ndarray], dict[str, float]]


@dataclass
class ServerState:
    round: int  # rounds completed
    version: int  # model versions released (a round that releases nothing keeps the version)
    params: np.ndarray
    opt_state: dict[str, np.ndarray]
    wall_time_s: float = 0.0
    sim_clock: float = 0.0  # simulated time at the end of the last round


class ServerProgram:
    """One task's aggregator: what a star-topology server (or each peer, later) runs.

    Parameters
    ----------
    cfg : the task (its strategy, participation, privacy and validation sections).
    model : the model being trained (for its layout; the server trains only on ``root``).
    aggregator, server_opt : the rule and the server optimizer.
    registry : the parties the server knows (name or key -> dense index ``0..len-1``).
    spec : the local training every party is asked to run.
    evaluator : scores a released model (the task owner's evaluation set, or federated evaluation).
    dp : the DP-FedAvg side (:class:`deai.engine.privacy.DPFedAvg`), or None.
    control : SCAFFOLD's server control, or None.
    root : the task owner's own clean rows ``(x, y)`` for FLTrust's server update, or None.
    exchange : the transport's message phases, for rules that never see an update (``private``): their
        parties keep their updates, so the server validates only what it receives (round, sender, weight,
        steps) and cannot check norms; the bounds are the parties' own encoding (SecAgg's per-coordinate
        clip, CKKS's range), which an honest party applies and a Byzantine one may not.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        model: Model,
        aggregator: Any,
        server_opt: Any,
        registry: PartyRegistry,
        spec: LocalSpec,
        evaluator: Evaluator,
        *,
        dp: Any = None,
        control: ServerControl | None = None,
        root: tuple[np.ndarray, np.ndarray] | None = None,
        exchange: Callable[[str, Any], dict[int, bytes]] | None = None,
    ) -> None:
        self.cfg, self.model = cfg, model
        self.aggregator, self.server_opt = aggregator, server_opt
        self.rule = traits(aggregator)
        self.registry, self.spec, self.evaluator = registry, spec, evaluator
        num_parties = self.num_parties = len(registry)
        self.dp, self.control, self.root = dp, control, root
        if self.rule.private and exchange is None:
            raise ValueError(f"aggregator {self.rule.name!r} runs a protocol with the parties: pass exchange")
        self.exchange = exchange  # the transport's phases of a private sum (SecAgg+ stages, HE requests)
        self._aggregate = self._over_exchange if self.rule.private else aggregator
        # DP, secure aggregation or HE: log only released quantities and public facts, no per-party
        # norms, cosines, losses or pre-clip norms
        self.private_metrics = dp is not None or self.rule.private
        self.f_max_parties = math.floor(cfg.strategy.f_max * num_parties)
        part = cfg.participation
        self.asynchronous = part.async_buffer is not None
        self.concurrency = part.concurrency or part.count or num_parties
        self._in_flight = np.zeros(num_parties, dtype=bool)  # asynchronous mode: dispatched, not yet back
        # a plain weighted mean folds a many-batch round as it arrives instead of holding every row
        self.streams = (
            self.rule.streaming
            and dp is None
            and control is None
            and root is None
            and not cfg.run.party_signals
            and not self.asynchronous
        )
        self._stream: StreamingSum | None = None
        self._arrived, self._cut_short = 0.0, 0
        seed = cfg.run.seed
        w0 = model.init_params(seed)
        self.state = ServerState(round=0, version=0, params=w0, opt_state=server_opt.init(len(w0)))
        self.stopped: str | None = None  # why the run ended before run.rounds, if it did
        self.diverged = False
        # [ledger] sign_updates / commit_reveal: accept drops rows without a valid signature of the party
        # they name, or whose reveal breaks its commitment or copies another's update
        self.update_verifier: UpdateVerifier | None = None
        self.reveal_check: Any = None  # [ledger] commit_reveal: deai.verify.commit_reveal.RevealCheck
        self._refused: dict[int, str] = {}
        self._evidence: dict[int, dict[str, Any]] = {}
        self._task: TrainTask | None = None
        self._batches: list[UpdateBatch] = []
        self._failures: list[Failure] = []
        self._t0 = 0.0

    # -- state ------------------------------------------------------------------------------
    def state_tree(self) -> dict[str, Any]:
        """The server's state, named (see :mod:`deai.state`): optimizer, rule, DP ledger, SCAFFOLD's c."""
        st = self.state
        return {
            "round": st.round,
            "version": st.version,
            "wall_time_s": st.wall_time_s,
            "sim_clock": st.sim_clock,
            "opt": st.opt_state,
            "control": None if self.control is None else {"c": self.control.c},
            "rule": self.aggregator.state() if self.rule.stateful else None,
            "dp": None if self.dp is None else self.dp.state_tree(),
        }

    def load_tree(self, params: np.ndarray, tree: dict[str, Any]) -> None:
        st = self.state
        st.params = params.astype(np.float32)
        st.round = int(tree["round"])
        st.version = int(tree.get("version", st.round))
        st.wall_time_s = float(tree["wall_time_s"])
        st.sim_clock = float(tree.get("sim_clock", 0.0))
        st.opt_state = dict(tree.get("opt", {}))
        if self.control is not None:
            self.control.c = np.asarray(tree["control"]["c"]).astype(np.float32)
        if self.dp is not None:
            self.dp.load_tree(tree["dp"])
        if self.rule.stateful:
            self.aggregator.load(dict(tree.get("rule", {})))

    # -- a round ----------------------------------------------------------------------------
    def open_round(self) -> TrainTask | None:
        """Select the round's parties and build their task; None when the privacy budget ends the run."""
        r = self.state.round + 1
        if self.dp is not None and not self._privacy_allows(r, int(round(self.dp.expected))):
            return None  # even the expected number of parties would overshoot: save the training
        self._t0 = time.perf_counter()
        part, seed = self.cfg.participation, self.cfg.run.seed
        if self.asynchronous:
            # FedBuff keeps `concurrency` parties training: refill from the idle ones
            idle = np.flatnonzero(~self._in_flight)
            need = min(self.concurrency - int(self._in_flight.sum()), len(idle))
            pick = generator(seed, r, Purpose.SELECT).choice(idle, size=need, replace=False)
            sampled = np.sort(pick).astype(np.int64)
            self._in_flight[sampled] = True
        else:
            secure = self.dp is not None and not self.cfg.privacy.simulation
            sampled = sample_parties(
                seed, r, self.num_parties, part.fraction, part.count, part.poisson, secure=secure
            )
        self._task = TrainTask(
            round=r,
            version=self.state.version,
            params=self.state.params,
            spec=self.spec,
            seed=seed,
            party_ids=sampled,
            deadline=part.deadline,
            straggler_policy=part.straggler_policy,
            control=None if self.control is None else self.control.c,
            withhold=self.rule.private,
        )
        return self._task

    def accept(self, item: UpdateBatch | Failure) -> None:
        """Take one arriving batch (or a report of parties that will not answer) into the open round."""
        if self.asynchronous:
            self._in_flight[item.party_ids] = False
        if isinstance(item, Failure):
            self._failures.append(item)
            return
        if self.update_verifier is not None and len(item):
            bad = self.update_verifier.bad_rows(item)
            if bad.any():
                self._refused |= {int(p): BAD_SIGNATURE for p in item.party_ids[bad]}
                item = item.take(~bad)
        if self.reveal_check is not None and len(item):
            bad, reasons, evidence = self.reveal_check.check(item)
            self._refused |= reasons
            self._evidence |= evidence
            if bad.any():
                item = item.take(~bad)
        if item.arrival is not None and len(item):
            self._arrived = max(self._arrived, float(item.arrival.max()))
        if "cut_short" in item.metrics:
            self._cut_short += int(np.count_nonzero(item.metrics["cut_short"]))
        if self.streams and (self._stream is not None or self._batches):
            # a second batch: the round comes in parts, so fold them as they arrive (one batch alone is
            # aggregated exactly as before, bit for bit)
            if self._stream is None:
                self._stream = StreamingSum(
                    len(self.state.params),
                    self.num_parties,
                    self._task.round,
                    self.cfg.validation.max_update_norm,
                )
                self._stream.fold(self._batches.pop())
            self._stream.fold(item)
        else:
            self._batches.append(item)

    def ready(self) -> bool:
        """FedBuff releases once ``async_buffer`` updates are in; a synchronous round waits for everything
        the transport will deliver (the task's deadline bounds it)."""
        if not self.asynchronous:
            return False
        return sum(len(b) for b in self._batches) >= self.cfg.participation.async_buffer

    def release(self) -> RoundRecord | None:
        """Validate, aggregate and step the model; None when the round does not count (budget, divergence)."""
        cfg, st, task = self.cfg, self.state, self._task
        r = task.round
        before = (st.params, st.opt_state)  # the last released model, kept if this round diverges
        batches, failures, stream = self._batches, self._failures, self._stream
        arrived, cut_short = self._arrived, self._cut_short
        self._batches, self._failures, self._stream = [], [], None
        self._arrived, self._cut_short = 0.0, 0
        failed: dict[str, int] = {}
        for f in failures:
            failed[f.reason] = failed.get(f.reason, 0) + len(f.party_ids)
        # under a private sum a party that finds its own update unencodable reports that instead of the row
        rejected = {int(p): f.reason for f in failures if f.reason in UNUSABLE for p in f.party_ids}
        rejected |= self._refused
        evidence, self._refused, self._evidence = self._evidence, {}, {}
        reported = len(rejected)
        batch = UpdateBatch.concat(batches) if batches else None
        n = stream.rows if stream is not None else 0 if batch is None else len(batch)
        metrics: dict[str, Any] = {
            "round": r,
            "sampled": len(task.party_ids),
            "participants": n + reported,
            "dropped": failed.get("dropout", 0),
            "stragglers": failed.get("deadline", 0) + cut_short,
        }
        if self.asynchronous:
            clock = max(st.sim_clock, arrived)
            metrics["sim_time"] = clock - st.sim_clock
        else:
            metrics["sim_time"] = arrived
            clock = st.sim_clock + arrived
        metrics["sim_clock"] = clock
        answers = None if batch is None else batch.round
        if n and self.asynchronous:
            batch, answers = self._staleness_weighted(batch, r, metrics)
        record = RoundRecord(r, st.version, st.params, np.zeros(0, np.int64), {}, None, metrics, False)
        record.asked, record.evidence = task.party_ids, evidence or None
        check = None
        if stream is not None:
            rejected |= stream.reasons
        elif n:
            check = validate_updates(
                batch.deltas, batch.party_ids, answers, r, max_norm=cfg.validation.max_update_norm
            )
            rejected |= {int(batch.party_ids[i]): why for i, why in check.reasons.items()}
        record.rejected = rejected
        if n + reported:
            metrics["rejected"] = len(rejected)
            if rejected:
                metrics["rejected_reasons"] = _counts(rejected.values())
            if len(rejected) == n + reported and set(rejected.values()) <= UNUSABLE:
                return self._diverge(
                    f"round {r}: every party's update was non-finite or too large to aggregate "
                    f"({metrics['rejected_reasons']}), so local training diverged"
                )
        if stream is not None:
            if self._release_stream(stream, record) is None:
                return None
        elif n:
            keep = check.accepted
            if self.control is not None and keep.any():
                self.control.update(batch.party_ids[keep], batch.control_deltas[keep])
            if keep.sum() < self.rule.min_parties:
                keep[:] = False  # e.g. secure aggregation cannot hide a single update: treat as empty
                metrics["skipped"] = "too few updates for the aggregator"
            if keep.any():
                kept = batch if keep.all() else batch.take(keep)
                ctx = RoundContext(cfg.run.seed, r, kept.party_ids, steps=kept.steps)
                if self.root is not None:
                    ctx.signals["server_update"] = self._root_update(r, kept.steps)
                shares = self._noise_shares(len(kept))
                if self.dp is not None and not self._privacy_allows(r, shares):
                    return None  # nothing released, the round does not count
                try:
                    if self.dp is None:
                        update = self._aggregate(kept.deltas, kept.weights, ctx)
                    else:
                        update = self.dp.aggregate(kept.deltas, ctx, self._aggregate)
                        metrics.update(self.dp.record(shares))
                except (ValueError, ArithmeticError, SecAggError) as err:
                    # validated updates reached the rule, so this is the rule's limit (e.g. Krum with too
                    # few updates this round), not a crash: the round releases nothing and says why
                    metrics["skipped"] = f"aggregator {self.rule.name} could not aggregate this round: {err}"
                    log.warning("round %d: %s", r, metrics["skipped"])
                    update = None
                if update is not None:
                    if not self._step(update, r):
                        return None
                    record.accepted, record.batch, record.aggregate = kept.party_ids, kept, update
                    if self.reveal_check is not None:
                        self.reveal_check.remember(kept)
                    record.weights = self._shares(kept, ctx)
                    metrics.update(self._signals(kept, update, ctx, record.weights))
                    self._dropped_for_cause(record, ctx, metrics)
            if self.dp is not None and not keep.any() and not self._release_noise_only(r, metrics):
                return None
            loss = batch.metrics.get("train_loss")
            # under a privacy mode only what the mechanism releases is logged: a loss or a pre-clip norm
            # per round would be a side channel the accountant does not cover
            if not self.private_metrics and loss is not None and np.isfinite(loss).all():  # Opacus: no loss
                metrics["train_loss"] = float(np.average(loss, weights=batch.weights))
            if not self.private_metrics and "raw_norm" in batch.metrics:
                metrics["update_norm_mean"] = float(batch.metrics["raw_norm"].mean())
            metrics["mean_local_steps"] = float(batch.steps.mean())
        elif self.dp is not None and not self._release_noise_only(r, metrics):
            return None
        return self._finish(record, before, clock)

    @staticmethod
    def _dropped_for_cause(record: RoundRecord, ctx: RoundContext, metrics: dict[str, Any]) -> None:
        """Parties a private sum dropped mid-protocol for cause (a masked input that breaks its commitment)
        are not in the aggregate: record them as rejected, with their reason, not as accepted."""
        lost = ctx.extra.get("rejected") or {}
        if not lost:
            return
        keep = ~np.isin(record.accepted, list(lost))
        record.accepted = record.accepted[keep]
        if record.weights is not None:
            w = record.weights[keep]
            record.weights = w / w.sum() if w.sum() > 0 else w
        record.rejected = {**record.rejected, **lost}
        metrics["rejected"] = len(record.rejected)
        metrics["rejected_reasons"] = _counts(record.rejected.values())

    def _over_exchange(self, _rows: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        """A private rule's aggregate: the rows stay with the parties, so run its protocol through the
        transport (its shape is the rule contract's, so DP-FedAvg wraps it like any sum)."""
        return self.aggregator.aggregate_over(self.exchange, len(self.state.params), weights, ctx)

    def _step(self, update: np.ndarray, round_: int) -> bool:
        """Apply ``update`` with the server optimizer; False (the run stops) if the model turns non-finite."""
        st = self.state
        params, opt_state = self.server_opt.step(st.params, update, st.opt_state)
        if not np.all(np.isfinite(params)):
            self._diverge(f"round {round_}: the global model became non-finite")
            return False
        st.params, st.opt_state = params, opt_state
        return True

    def _release_stream(self, stream: StreamingSum, record: RoundRecord) -> RoundRecord | None:
        """The release of a round folded batch by batch (a plain weighted mean; see deai.server.streaming)."""
        metrics = record.metrics
        ids, weights = stream.accepted_ids(), stream.accepted_weights()
        if 0 < len(ids) < self.rule.min_parties:
            ids = ids[:0]
            metrics["skipped"] = "too few updates for the aggregator"
        if len(ids):
            update = stream.mean()
            if not self._step(update, record.round):
                return None
            record.accepted, record.aggregate = ids, update
            record.weights = weights / weights.sum()
        if stream.loss_finite:
            metrics["train_loss"] = stream.loss_w / stream.w_all
        metrics["update_norm_mean"] = stream.raw_norm / stream.rows
        metrics["mean_local_steps"] = stream.steps / stream.rows
        return record

    def _finish(
        self, record: RoundRecord, before: tuple[np.ndarray, dict[str, np.ndarray]], clock: float
    ) -> RoundRecord | None:
        """Check and score the released model, then close the round."""
        cfg, st, metrics, r = self.cfg, self.state, record.metrics, record.round
        if not np.all(np.isfinite(st.params)):  # e.g. a DP noise-only release on a huge model
            st.params, st.opt_state = before
            return self._diverge(f"round {r}: the global model became non-finite")
        if r % cfg.run.eval_every == 0 or r == cfg.run.rounds:
            scores = self.evaluator(st.params)  # empty when nobody could score it (a network's parties)
            if scores and not np.isfinite(scores["loss"]):
                st.params, st.opt_state = before
                return self._diverge(f"round {r}: the global model's outputs overflow (infinite loss)")
            metrics.update(scores)
        st.round = r
        st.sim_clock = clock
        released = st.params is not before[0]  # did this round change the global model?
        if released:
            st.version += 1
        metrics["released"] = released
        st.wall_time_s += time.perf_counter() - self._t0
        metrics["wall_time_s"] = round(st.wall_time_s, 6)
        record.version, record.params, record.released = st.version, st.params, released
        return record

    def _staleness_weighted(
        self, batch: UpdateBatch, r: int, metrics: dict[str, Any]
    ) -> tuple[UpdateBatch, np.ndarray]:
        """FedBuff's buffer: rows in party order, each weighted ``(1 + s)^-a`` for staleness ``s``.

        Returns the batch and the round each row is checked against: the open round for every update
        (asynchronous updates legitimately answer older tasks) except those past ``max_staleness``.
        """
        part = self.cfg.participation
        batch = batch.take(np.argsort(batch.party_ids, kind="stable"))
        staleness = self.state.version - batch.base_version
        batch.weights = batch.weights * (1.0 + staleness) ** -part.staleness_exponent
        answers = np.full(len(batch), r, dtype=np.int64)
        if part.max_staleness is not None:
            answers[staleness > part.max_staleness] = -1  # rejected as stale_round
        metrics["staleness_mean"] = float(staleness.mean())
        metrics["staleness_max"] = int(staleness.max())
        metrics["staleness_counts"] = np.bincount(staleness).tolist()
        return batch, answers

    # -- privacy ----------------------------------------------------------------------------
    def _noise_shares(self, accepted: int) -> int:
        """Distributed noise shares the accountant may count on: the accepted updates less the task's
        ``f_max`` bound on Byzantine parties, which may have sent none (a party's claim is never trusted)."""
        return max(0, accepted - min(accepted, self.f_max_parties))

    def _release_noise_only(self, round_: int, metrics: dict[str, Any]) -> bool:
        """A DP round in which no update survived: central noise alone is released and accounted for.

        The Poisson-sampled Gaussian analysis covers the noisy sum over whoever was sampled, the empty
        set included, so an unchanged model would be an event outside it. Distributed noise has no one
        to add it, so such a round ends the run instead (False).
        """
        if self.cfg.privacy.mode == "distributed":
            self.stopped = f"round {round_}: no update to carry distributed noise; stopped before releasing"
            return False
        if not self._privacy_allows(round_, 0):
            return False
        dim = len(self.state.params)
        noise = self.dp.aggregate(
            np.zeros((0, dim), np.float32), RoundContext(self.cfg.run.seed, round_), self._aggregate
        )
        st = self.state
        st.params, st.opt_state = self.server_opt.step(st.params, noise, st.opt_state)
        metrics.update(self.dp.record(0))
        return True

    def _privacy_allows(self, round_: int, reported: int) -> bool:
        """False (and ``self.stopped`` says why) when releasing this round would exceed the privacy budget."""
        from deai.engine.privacy import BudgetExceededError

        try:
            self.dp.check_budget(round_, reported)
        except BudgetExceededError as err:
            self.stopped = str(err)
            return False
        return True

    def _diverge(self, what: str) -> None:
        """Stop the run on a diverged model or local training; the last released model stays the result."""
        self.diverged = True
        self.stopped = (
            f"diverged: {what}; the last finite model (round {self.state.round}) is kept. Lower "
            f"strategy.lr (now {self.cfg.strategy.lr:g}) or strategy.server_lr (now {self.server_opt.lr:g}), "
            "or bound updates with strategy.clip_norm"
        )
        return None

    # -- defences and their signals ---------------------------------------------------------
    def _root_update(self, round_: int, party_steps: np.ndarray) -> np.ndarray:
        """FLTrust's server update: local training on the task owner's own root set, for as many local
        steps as the round's median party declared (whole epochs over the root set, at least the task's).

        FLTrust rescales every update to the server update's norm, so a root set smaller than a party's
        data trained for fewer steps would shrink every round's step (measured: 5 points of clean
        accuracy on Fashion-MNIST with 200 root rows against parties of ~560); the median of the declared
        steps is one a Byzantine minority cannot move outside the honest range.
        """
        x, y = self.root
        per_epoch = -(-len(y) // self.spec.batch_size)
        target = float(np.median(party_steps)) if len(party_steps) else 0.0
        epochs = max(self.spec.epochs, int(round(target / per_epoch)))
        spec = dataclasses.replace(self.spec, epochs=epochs)
        res = train_parties(
            self.model, x, y, np.array([0, len(y)]), np.array([0]), self.state.params, spec,
            self.cfg.run.seed, round_,
        )  # fmt: skip
        return res.deltas[0]

    def _shares(self, kept: UpdateBatch, ctx: RoundContext) -> np.ndarray | None:
        """Each accepted party's share of the aggregate, where the rule has one (order statistics don't)."""
        weight_keys = [k for k in ctx.signals if k.endswith("_weight")]
        if self.dp is not None:
            share = np.ones(len(kept))  # DP-FedAvg averages parties uniformly
        elif weight_keys:
            share = np.asarray(ctx.signals[weight_keys[0]], dtype=np.float64)
        elif self.rule.weights_parties:
            share = kept.weights / kept.weights.sum()
        else:
            return None
        return share / share.sum() if share.sum() > 0 else share

    def _signals(
        self, kept: UpdateBatch, update: np.ndarray, ctx: RoundContext, share: np.ndarray | None
    ) -> dict[str, Any]:
        """Per-party detection signals a real aggregator can compute: norm, distance and cosine to the
        aggregate, and the rule's own. Under DP, secure aggregation or HE only public facts remain
        (weight shares, who survived the protocol): per-party norms would leak what the mechanism hides."""
        if not self.cfg.run.party_signals:
            return {}
        signals: dict[str, Any] = {"party": kept.party_ids.tolist()}
        if not self.private_metrics:
            deltas = kept.deltas
            norms = np.linalg.norm(deltas, axis=1)
            agg_norm = float(np.linalg.norm(update))
            cosine = deltas @ update / np.maximum(norms * agg_norm, 1e-12)
            signals["update_norm"] = np.round(norms, 6).tolist()
            signals["distance_to_aggregate"] = np.round(
                np.linalg.norm(deltas - update[None, :], axis=1), 6
            ).tolist()
            signals["cosine_to_aggregate"] = np.round(cosine, 6).tolist()
        if share is not None:
            signals["weight_share"] = np.round(share, 6).tolist()
        for k, v in ctx.signals.items():
            if k != "server_update" and np.ndim(v) == 1 and len(v) == len(kept):
                signals[k] = np.round(np.asarray(v, dtype=np.float64), 6).tolist()
        return {"party_signals": signals}


def _counts(reasons: Iterable[str]) -> dict[str, int]:
    """How many times each reason occurs, in first-seen order."""
    out: dict[str, int] = {}
    for why in reasons:
        out[why] = out.get(why, 0) + 1
    return out
