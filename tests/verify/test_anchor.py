"""Anchoring a ledger head in the Vyper contract on eth-tester's in-process EVM."""

import pytest

pytest.importorskip("vyper")
pytest.importorskip("eth_tester")
pytest.importorskip("web3")

from deai.verify.anchor import AnchorRefused, HeadAnchor, in_process_chain  # noqa: E402
from deai.verify.identity import Identity  # noqa: E402
from deai.verify.ledger import Ledger, verify  # noqa: E402


def _head(tmp_path, rounds):
    owner = Identity.generate("owner")
    ledger = Ledger(tmp_path / f"l{rounds}.db", "task-anchor")
    ledger.append("task_created", {"owner_key": owner.public_key.hex()}, owner)
    for r in range(1, rounds + 1):
        ledger.append("round_result", {"model_sha256": f"{r:064x}"}, owner, r)
    head = ledger.head(owner)
    ledger.close()
    return head


def test_deploy_anchor_read_back_and_the_contracts_two_rules(tmp_path):
    w3 = in_process_chain()
    contract, deploy_gas = HeadAnchor.deploy(w3)
    head = _head(tmp_path, 3)
    assert verify(tmp_path / "l3.db", head).valid
    assert contract.read(head.task) is None
    gas = contract.anchor(head)
    got = contract.read(head.task)
    assert (got.entries, got.head, got.owner) == (head.entries, head.hash, w3.eth.accounts[0])
    assert 0 < gas < deploy_gas
    print(f"gas: deploy {deploy_gas}, first anchor {gas}")
    longer = _head(tmp_path, 5)
    longer = type(longer)(head.task, longer.entries, longer.hash, longer.signature)
    with pytest.raises(AnchorRefused, match="only the task's owner"):
        contract.anchor(longer, sender=w3.eth.accounts[1])
    with pytest.raises(AnchorRefused, match="may only grow"):
        contract.anchor(head)  # the same head again: not longer
    later = contract.anchor(longer)
    assert contract.read(head.task).entries == longer.entries == 6
    assert 0 < later < gas  # updating a task's slot costs less than creating it
    print(f"gas: a later anchor {later}")
