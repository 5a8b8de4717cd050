"""Real nodes: deai's party and server programs as processes that talk over sockets.

The round loop, the server program and the party program are the simulator's own; this package adds what
a network needs around them: a wire format (:mod:`~deai.net.codec`), signed envelopes and the checks every
node runs on what it receives (:mod:`~deai.net.envelope`), the task's roster of keys
(:mod:`~deai.net.roster`), mutual TLS (:mod:`~deai.net.tls`), the star over gRPC (:mod:`~deai.net.star`,
:mod:`~deai.net.star_transport`), the node programs (:mod:`~deai.net.party_node`,
:mod:`~deai.net.aggregator_node`, :mod:`~deai.net.edge_node` for trees, :mod:`~deai.net.peer_node` and
:mod:`~deai.net.gossip` for peer-to-peer over hivemind), their command line (:mod:`~deai.net.node`), a
status endpoint (:mod:`~deai.net.status`) and ``deai launch`` (:mod:`~deai.net.launch`).
"""
