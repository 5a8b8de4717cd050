# @version ^0.4.0
# Anchors the signed head of a deai ledger on chain: per task, the entry count and last entry hash.
# The first account to anchor a task owns it; only that account may anchor it again, and a head may only
# grow (more entries than the one before), so an anchored chain cannot be quietly shortened.

event Anchored:
    task: indexed(bytes32)
    entries: uint256
    head: bytes32
    owner: address

struct Head:
    entries: uint256
    head: bytes32
    owner: address

heads: public(HashMap[bytes32, Head])


@external
def anchor(task: bytes32, entries: uint256, head: bytes32):
    current: Head = self.heads[task]
    if current.owner != empty(address):
        assert current.owner == msg.sender, "only the task's owner may anchor it"
        assert entries > current.entries, "a head may only grow"
    assert entries > 0, "a ledger has at least one entry"
    self.heads[task] = Head(entries=entries, head=head, owner=msg.sender)
    log Anchored(task=task, entries=entries, head=head, owner=msg.sender)
