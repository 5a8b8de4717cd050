"""The relay's addresses as the libp2p daemon reads them, and what a bad --relay gets told."""

import pytest

from deai.config import ConfigError
from deai.net.relay import check_relay_address, circuit_bytes

hivemind = pytest.importorskip("hivemind")

RELAY_ID = "12D3KooWQRYEWmthzF9UQbyUVabWFqQ6wA4NWHhExiUrnTe63wvr"


def test_a_circuit_address_is_written_as_go_multiaddr_reads_it():
    from hivemind.p2p import PeerID

    raw = circuit_bytes(f"/ip4/10.0.0.1/tcp/47111/p2p/{RELAY_ID}")
    multihash = PeerID.from_base58(RELAY_ID).to_bytes()
    # by hand from the multiaddr spec: ip4 (4) 10.0.0.1, tcp (6) port 47111, p2p (421) a length-prefixed
    # multihash (not a CID), p2p-circuit (290) with no value; codes as unsigned varints
    want = bytes([4, 10, 0, 0, 1, 6]) + (47111).to_bytes(2, "big") + bytes([0xA5, 0x03, len(multihash)])
    assert raw == want + multihash + bytes([0xA2, 0x02])
    assert multihash[:2] == bytes([0x00, 0x24])  # identity multihash of a 36-byte Ed25519 key


@pytest.mark.parametrize(
    "bad",
    ["/ip4/10.0.0.1/tcp/1", f"/p2p/{RELAY_ID}", "10.0.0.1:47111", f"/ip4/1.2.3.4/tcp/1/p2p/{RELAY_ID}/x"],
)
def test_a_relay_address_without_its_peer_id_is_refused_naming_the_form(bad):
    with pytest.raises(ConfigError, match="/ip4/HOST/tcp/PORT/p2p/PEER_ID"):
        check_relay_address(bad)


def test_only_a_peer_takes_relay(tmp_path):
    from deai.config import parse_config
    from deai.net.node import NodeArgs, run_node

    cfg = parse_config({"data": {"dataset": "digits", "num_parties": 2}})
    args = NodeArgs("party", tmp_path, tmp_path, tmp_path / "k", tmp_path / "r", tmp_path, relays=["x"])
    with pytest.raises(ConfigError, match="--relay is for p2p peers"):
        run_node(args, cfg)
