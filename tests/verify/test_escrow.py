"""The escrow contract on eth-tester: stake, commit, reveal, reward, slash, withdraw; gas per operation."""

import hashlib

import pytest

pytest.importorskip("vyper")
pytest.importorskip("eth_tester")
pytest.importorskip("web3")

from deai.verify.anchor import AnchorRefused, in_process_chain  # noqa: E402
from deai.verify.commit_reveal import commitment  # noqa: E402
from deai.verify.escrow import TaskEscrow  # noqa: E402

POOL, STAKE = 1_000, 100


def test_stake_commit_reveal_reward_slash_and_withdraw(capsys):
    w3 = in_process_chain()
    owner, a, b, c = w3.eth.accounts[:4]
    escrow, gas_deploy = TaskEscrow.deploy(w3, owner)
    gas = {"deploy": gas_deploy, "create": escrow.create("task-1", POOL, STAKE, owner)}
    gas["join"] = escrow.join("task-1", a, STAKE)
    escrow.join("task-1", b, STAKE)
    escrow.join("task-1", c, STAKE)
    with pytest.raises(AnchorRefused, match="send exactly the task's stake"):
        escrow.join("task-1", w3.eth.accounts[4], STAKE - 1)
    digests = {p: hashlib.sha256(p.encode()).digest() for p in (a, b, c)}
    salts = {p: bytes([i]) * 16 for i, p in enumerate((a, b, c), 1)}
    for p in (a, b, c):  # deai's own commitment is what the contract checks
        gas["commit"] = escrow.commit("task-1", 1, commitment(digests[p], salts[p]), p)
    with pytest.raises(AnchorRefused, match="already committed"):
        escrow.commit("task-1", 1, commitment(digests[a], salts[a]), a)
    kept, gas["reveal (kept)"] = escrow.reveal("task-1", 1, digests[a], salts[a], a)
    assert kept
    assert escrow.reveal("task-1", 1, digests[b], salts[b], b)[0]
    kept, gas["reveal (broken: stake forfeited)"] = escrow.reveal("task-1", 1, digests[a], salts[c], c)
    assert not kept and escrow.stake_of("task-1", c) == 0 and escrow.pool("task-1") == POOL + STAKE
    gas["reward"] = escrow.reward("task-1", a, 700, owner)
    escrow.reward("task-1", b, 300, owner)
    with pytest.raises(AnchorRefused, match="only the task's owner pays"):
        escrow.reward("task-1", a, 1, a)
    with pytest.raises(AnchorRefused, match="the pool is smaller"):
        escrow.reward("task-1", a, 10_000, owner)
    gas["slash (owner, on evidence)"] = escrow.slash("task-1", b, hashlib.sha256(b"evidence").digest(), owner)
    assert escrow.stake_of("task-1", b) == 0 and escrow.pool("task-1") == POOL + 2 * STAKE - 1_000
    escrow.close("task-1", owner)
    before = w3.eth.get_balance(escrow.address)
    gas["withdraw"] = escrow.withdraw("task-1", a)
    assert before - w3.eth.get_balance(escrow.address) == 700 + STAKE  # its reward and its stake back
    assert escrow.owed(a) == 0 and escrow.stake_of("task-1", a) == 0
    escrow.withdraw("task-1", b)  # b was paid 300 and slashed: it gets only the 300
    with pytest.raises(AnchorRefused, match="nothing to withdraw"):
        escrow.withdraw("task-1", c)
    assert all(0 < g < gas_deploy for k, g in gas.items() if k != "deploy")
    with capsys.disabled():
        print("\nescrow gas: " + ", ".join(f"{k} {v:,}" for k, v in gas.items()))


def test_the_loser_of_a_refereed_dispute_is_slashed_on_chain():
    import numpy as np

    from deai.incentives.disputes import referee, with_wrong_step
    from deai.incentives.proof_of_learning import honest_training
    from tests.incentives.test_proof_of_learning import job

    w3 = in_process_chain()
    owner, a, b = w3.eth.accounts[:3]
    escrow, _ = TaskEscrow.deploy(w3, owner)
    escrow.create("job-1", POOL, STAKE, owner)
    escrow.join("job-1", a, STAKE)
    escrow.join("job-1", b, STAKE)
    j = job(3, steps=64, every=1)
    honest = honest_training(j)
    ruling = referee(j, (a, honest), (b, with_wrong_step(j, honest, 20, np.random.default_rng(3))))
    assert ruling.liars == (b,)
    evidence = hashlib.sha256(f"{ruling.diverged_at}:{ruling.reason}".encode()).digest()
    for liar in ruling.liars:
        escrow.slash("job-1", liar, evidence, owner)
    escrow.reward("job-1", a, POOL, owner)
    assert escrow.stake_of("job-1", b) == 0 and escrow.pool("job-1") == STAKE and escrow.owed(a) == POOL
