"""The roster of a tree of any depth: layout, round trip, and the damage it refuses by name."""

import json

import pytest

from deai.config import ConfigError, parse_config
from deai.net.launch import tree_layout
from deai.net.roster import Edge, Roster
from deai.verify.identity import Identity


def _key():
    return Identity.generate("party").public_key


def test_the_tree_layout_splits_each_level_in_runs_and_the_parties_in_blocks():
    assert tree_layout([3], 10) == [(None, [0, 1, 2, 3]), (None, [4, 5, 6]), (None, [7, 8, 9])]
    layout = tree_layout([2, 3], 6)
    assert [p for p, _ in layout] == [None, None, 0, 0, 1]
    assert [b for _, b in layout] == [[], [], [0, 1], [2, 3], [4, 5]]


def test_a_three_level_roster_round_trips_with_its_parents_and_validators(tmp_path):
    edges = [Edge(_key(), b, p) for p, b in tree_layout([2, 3], 6)]
    roster = Roster(_key(), [_key() for _ in range(6)], list("abcdef"), edges, [_key(), _key()])
    roster.save(tmp_path / "roster.json")
    back = Roster.load(tmp_path / "roster.json", 6)
    assert back == roster
    assert sorted(back.children_of_top().values()) == [0, 1]
    assert back.child_edges(0) == [2, 3] and back.local_index(3) == 1
    assert back.parties_under(0) == [0, 1, 2, 3] and back.parties_under(1) == [4, 5]
    assert back.edge_parent(4) == (edges[1].id, edges[1].public_key)
    assert back.edge_parent(0) == (back.aggregator_id, back.aggregator)
    assert back.parent_of(5) == (edges[4].id, edges[4].public_key)
    assert sorted(back.validator_index().values()) == [-2, -1]


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d["edges"][2].update(parent=2), "parent must be an earlier edge"),
        (lambda d: d["edges"][2].update(parent=3), "parent must be an earlier edge"),
        (lambda d: d["edges"][0].update(children=[0]) or d["edges"][2].update(children=[1]), "holds parties"),
        (lambda d: d["edges"].append({**d["edges"][0], "index": 5, "id": "x", "public_key": "ab" * 32}),
         "neither parties nor edges"),
    ],
    ids=["self_parent", "later_parent", "mixed_edge", "empty_edge"],
)  # fmt: skip
def test_a_damaged_tree_is_refused_by_name(tmp_path, change, reason):
    edges = [Edge(_key(), b, p) for p, b in tree_layout([2, 3], 6)]
    Roster(_key(), [_key() for _ in range(6)], list("abcdef"), edges).save(tmp_path / "roster.json")
    doc = json.loads((tmp_path / "roster.json").read_text())
    change(doc)
    (tmp_path / "roster.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=reason):
        Roster.load(tmp_path / "roster.json", 6)


def test_tree_levels_must_widen_downward():
    assert parse_config({"network": {"edges": [2, 4]}}).network.edge_levels == [2, 4]
    with pytest.raises(ConfigError, match="network.edges"):
        parse_config({"network": {"edges": [4, 2]}})
    with pytest.raises(ConfigError, match="network.edges"):
        parse_config({"network": {"edges": []}})
