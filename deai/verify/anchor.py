"""Optional on-chain anchoring of a ledger's head: a Vyper contract (``contracts/HeadAnchor.vy``) that keeps,
per task, the entry count and last hash, written only by the task's first anchorer and only ever growing.

The embedded SQLite ledger stays the record; an anchor makes its head public and timestamped, so a ledger
handed over later can be checked against a head nobody could rewrite. The same code takes any web3
provider: ``EthereumTesterProvider`` (an in-process EVM, for tests) or an Ethereum JSON-RPC URL. Needs the
``chain`` extra: ``pip install 'deai[chain]'`` (vyper, web3, eth-tester).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from deai.verify.ledger import Head

CONTRACT = Path(__file__).with_name("contracts") / "HeadAnchor.vy"


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"on-chain anchoring needs {module.split('.')[0]}: pip install 'deai[chain]'"
        ) from None


@cache
def compiled(source: Path = CONTRACT) -> tuple[list[dict[str, Any]], str]:
    """A contract's ABI and deployment bytecode, compiled from its Vyper source (the anchor by default)."""
    vyper = _need("vyper")
    out = vyper.compile_code(Path(source).read_text(), output_formats=["abi", "bytecode"])
    return out["abi"], out["bytecode"]


def transact(w3: Any, call: Any, sender: str, value: int = 0) -> Any:
    """Send ``call`` from ``sender`` and wait for it; a revert is :class:`AnchorRefused` with its reason."""
    try:
        tx = call.transact({"from": sender, "value": value})
    except Exception as err:  # web3's ContractLogicError or a provider's own (eth-tester's) revert
        if "revert" not in str(err):
            raise
        raise AnchorRefused(str(err).split("execution reverted:")[-1].strip(" '\"")) from None
    return w3.eth.wait_for_transaction_receipt(tx)


def task_key(task: str) -> bytes:
    """The contract's 32-byte key of a task id: SHA-256 of its UTF-8 text."""
    return hashlib.sha256(task.encode()).digest()


class AnchorRefused(ValueError):
    """A contract reverted the call (the anchor: another account's task or a head that does not grow;
    the escrow: its own stated reasons)."""


@dataclass(frozen=True)
class Anchored:
    entries: int
    head: str  # hex
    owner: str  # checksummed address


class HeadAnchor:
    """A deployed anchor contract seen through one web3 connection."""

    def __init__(self, w3: Any, address: str) -> None:
        abi, _ = compiled()
        self.w3, self.address = w3, address
        self.contract = w3.eth.contract(address=address, abi=abi)

    @classmethod
    def deploy(cls, w3: Any, sender: str | None = None) -> tuple[HeadAnchor, int]:
        """Deploy a fresh contract; return it and the gas the deployment used."""
        abi, bytecode = compiled()
        factory = w3.eth.contract(abi=abi, bytecode=bytecode)
        tx = factory.constructor().transact({"from": sender or w3.eth.accounts[0]})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        return cls(w3, receipt.contractAddress), int(receipt.gasUsed)

    def anchor(self, head: Head, sender: str | None = None) -> int:
        """Anchor ``head`` (the task owner's signed head of a ledger); return the gas used.

        The contract refuses another account's anchor for the same task and a head that does not grow:
        :class:`AnchorRefused` carries its reason.
        """
        call = self.contract.functions.anchor(task_key(head.task), head.entries, bytes.fromhex(head.hash))
        return int(transact(self.w3, call, sender or self.w3.eth.accounts[0]).gasUsed)

    def read(self, task: str) -> Anchored | None:
        """What is anchored for ``task``, or None."""
        entries, head, owner = self.contract.functions.heads(task_key(task)).call()
        if int(entries) == 0:
            return None
        return Anchored(int(entries), bytes(head).hex(), owner)


def in_process_chain() -> Any:
    """A web3 connection to eth-tester's in-process EVM (py-evm backend), for tests and the demo."""
    web3 = _need("web3")
    return web3.Web3(web3.EthereumTesterProvider())


def rpc_chain(url: str) -> Any:
    """A web3 connection to any Ethereum JSON-RPC endpoint."""
    web3 = _need("web3")
    return web3.Web3(web3.HTTPProvider(url))
