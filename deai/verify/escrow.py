"""A task's stake, commit–reveal, rewards and slashing on chain: ``contracts/TaskEscrow.vy`` through web3.

The contract checks a reveal against its commitment itself (the same ``SHA-256(tag ‖ digest ‖ salt)`` as
:func:`deai.verify.commit_reveal.commitment`), so a broken commitment forfeits the party's stake with no
one's word needed; rewards and evidence-based slashes are the owner's calls, logged with the evidence's
hash so they can be held against the ledger. Needs the ``chain`` extra, like :mod:`deai.verify.anchor`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deai.verify.anchor import compiled, task_key, transact

CONTRACT = Path(__file__).with_name("contracts") / "TaskEscrow.vy"


class TaskEscrow:
    """A deployed escrow contract seen through one web3 connection; each call returns the gas it used."""

    def __init__(self, w3: Any, address: str) -> None:
        abi, _ = compiled(CONTRACT)
        self.w3, self.address = w3, address
        self.contract = w3.eth.contract(address=address, abi=abi)
        self.fn = self.contract.functions

    @classmethod
    def deploy(cls, w3: Any, sender: str | None = None) -> tuple[TaskEscrow, int]:
        abi, bytecode = compiled(CONTRACT)
        factory = w3.eth.contract(abi=abi, bytecode=bytecode)
        receipt = transact(w3, factory.constructor(), sender or w3.eth.accounts[0])
        return cls(w3, receipt.contractAddress), int(receipt.gasUsed)

    def _send(self, call: Any, sender: str, value: int = 0) -> int:
        return int(transact(self.w3, call, sender, value).gasUsed)

    def create(self, task: str, pool: int, stake: int, owner: str) -> int:
        return self._send(self.fn.create(task_key(task), stake), owner, pool)

    def join(self, task: str, party: str, stake: int) -> int:
        return self._send(self.fn.join(task_key(task)), party, stake)

    def commit(self, task: str, round_: int, commitment: bytes, party: str) -> int:
        return self._send(self.fn.commit(task_key(task), round_, commitment), party)

    def reveal(self, task: str, round_: int, digest: bytes, salt: bytes, party: str) -> tuple[bool, int]:
        """Reveal; ``(kept, gas)``: ``kept`` is False when the contract found the commitment broken."""
        call = self.fn.reveal(task_key(task), round_, digest, salt)
        kept = bool(call.call({"from": party}))
        return kept, self._send(call, party)

    def reward(self, task: str, party: str, amount: int, owner: str) -> int:
        return self._send(self.fn.reward(task_key(task), party, amount), owner)

    def slash(self, task: str, party: str, evidence: bytes, owner: str) -> int:
        return self._send(self.fn.slash(task_key(task), party, evidence), owner)

    def close(self, task: str, owner: str) -> int:
        return self._send(self.fn.close(task_key(task)), owner)

    def withdraw(self, task: str, party: str) -> int:
        return self._send(self.fn.withdraw(task_key(task)), party)

    def pool(self, task: str) -> int:
        return int(self.fn.tasks(task_key(task)).call()[1])

    def stake_of(self, task: str, party: str) -> int:
        return int(self.fn.stakes(task_key(task), party).call())

    def owed(self, party: str) -> int:
        return int(self.fn.owed(party).call())
