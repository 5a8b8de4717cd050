# @version ^0.4.0
# A task's money on chain: its reward pool, each party's stake, commit-reveal, rewards and slashing.
#
# The owner creates a task with a pool (the value sent) and the stake each party must put down to join.
# Each round a party commits sha256(tag | digest | salt) of its update and later reveals digest and salt;
# the contract itself checks the reveal, and a reveal that breaks its commitment forfeits the party's
# stake into the pool, with no one's word needed. The owner pays rewards out of the pool and may slash
# on evidence kept off chain (its hash is logged, so anyone can hold the owner to it against the ledger);
# a party withdraws what it was paid, and its stake once the owner closes the task.

TAG: constant(Bytes[15]) = b"deai-commit-v1\x00"

event Created:
    task: indexed(bytes32)
    owner: address
    pool: uint256
    stake: uint256

event Joined:
    task: indexed(bytes32)
    party: address

event Committed:
    task: indexed(bytes32)
    round: uint256
    party: address
    commitment: bytes32

event Revealed:
    task: indexed(bytes32)
    round: uint256
    party: address
    kept: bool

event Rewarded:
    task: indexed(bytes32)
    party: address
    amount: uint256

event Slashed:
    task: indexed(bytes32)
    party: address
    amount: uint256
    evidence: bytes32

struct Task:
    owner: address
    pool: uint256
    stake: uint256
    open: bool

tasks: public(HashMap[bytes32, Task])
stakes: public(HashMap[bytes32, HashMap[address, uint256]])
commitments: public(HashMap[bytes32, HashMap[uint256, HashMap[address, bytes32]]])
owed: public(HashMap[address, uint256])


@external
@payable
def create(task: bytes32, stake: uint256):
    assert self.tasks[task].owner == empty(address), "the task exists"
    self.tasks[task] = Task(owner=msg.sender, pool=msg.value, stake=stake, open=True)
    log Created(task=task, owner=msg.sender, pool=msg.value, stake=stake)


@external
@payable
def join(task: bytes32):
    t: Task = self.tasks[task]
    assert t.open, "no open task"
    assert self.stakes[task][msg.sender] == 0, "already joined"
    assert msg.value == t.stake and msg.value > 0, "send exactly the task's stake"
    self.stakes[task][msg.sender] = msg.value
    log Joined(task=task, party=msg.sender)


@external
def commit(task: bytes32, round: uint256, commitment: bytes32):
    assert self.stakes[task][msg.sender] > 0, "join the task first"
    assert self.commitments[task][round][msg.sender] == empty(bytes32), "already committed this round"
    self.commitments[task][round][msg.sender] = commitment
    log Committed(task=task, round=round, party=msg.sender, commitment=commitment)


@internal
def _forfeit(task: bytes32, party: address, evidence: bytes32):
    amount: uint256 = self.stakes[task][party]
    self.stakes[task][party] = 0
    self.tasks[task].pool += amount
    log Slashed(task=task, party=party, amount=amount, evidence=evidence)


@external
def reveal(task: bytes32, round: uint256, digest: bytes32, salt: bytes16) -> bool:
    committed: bytes32 = self.commitments[task][round][msg.sender]
    assert committed != empty(bytes32), "nothing committed this round"
    kept: bool = sha256(concat(TAG, digest, salt)) == committed
    if not kept:
        self._forfeit(task, msg.sender, committed)
    log Revealed(task=task, round=round, party=msg.sender, kept=kept)
    return kept


@external
def reward(task: bytes32, party: address, amount: uint256):
    assert self.tasks[task].owner == msg.sender, "only the task's owner pays"
    assert amount <= self.tasks[task].pool, "the pool is smaller than that"
    self.tasks[task].pool -= amount
    self.owed[party] += amount
    log Rewarded(task=task, party=party, amount=amount)


@external
def slash(task: bytes32, party: address, evidence: bytes32):
    assert self.tasks[task].owner == msg.sender, "only the task's owner slashes"
    assert self.stakes[task][party] > 0, "nothing staked to slash"
    self._forfeit(task, party, evidence)


@external
def close(task: bytes32):
    assert self.tasks[task].owner == msg.sender, "only the task's owner closes it"
    self.tasks[task].open = False


@external
def withdraw(task: bytes32):
    amount: uint256 = self.owed[msg.sender]
    self.owed[msg.sender] = 0
    if not self.tasks[task].open:
        amount += self.stakes[task][msg.sender]
        self.stakes[task][msg.sender] = 0
    assert amount > 0, "nothing to withdraw"
    send(msg.sender, amount)
