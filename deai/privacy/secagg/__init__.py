"""Secure aggregation: the server learns the sum of the parties' updates and nothing else.

SecAgg+ of Bell, Bonawitz, Gascón, Lepoint and Raykova, "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead" (CCS 2020), on the four-round structure of Bonawitz, Ivanov,
Kreuter, Marcedone, McMahan, Patel, Ramage, Segal and Seth, "Practical Secure Aggregation for
Privacy-Preserving Machine Learning" (CCS 2017): pairwise masks from X25519 agreements along a
sparse k-regular graph (k = O(log n)), a self mask per party, and t-of-k Shamir shares of both
mask secrets so that dropouts can be recovered. Run in-process by :func:`secure_sum`; parties
and server are separate objects that exchange only serialized messages.

Threat model
------------
Covered: an honest-but-curious server (follows the protocol, reads everything it receives),
possibly colluding with fewer than t of any honest party's k neighbours. It learns nothing
beyond the sum of the honest survivors' inputs, provided the honest parties stay connected in
the graph, which Bell et al. show holds with high probability for k = O(log n) when the corrupt
set is chosen before the graph is drawn (it comes from a fresh nonce in each session, so nobody can
predict it from the config). Parties refuse to reveal both secrets of one neighbour, which keeps a
dropped party's input private when the server asks for its mask key; the threshold must satisfy
t > k/2, so that a server announcing a party as surviving to some neighbours and as dropped to
others cannot collect t shares of both its secrets; and a party aborts when fewer than t of its
neighbours' shares are relayed or fewer than t of them are listed as survivors. The associated
data of every share ciphertext binds the session (graph seed, nonce, round and all parameters),
sender and recipient, so a relayed share cannot be altered, redirected or replayed into another
round or run without the recipient naming the sender in an ``AuthenticationError``.

With signed keys (``sign=True``; in a deployment, each party's identity key), the session also
runs Bonawitz et al.'s ConsistencyCheck: every survivor signs the survivor set U3, and a party
unmasks only if at least t of its neighbours signed the same U3 and its request agrees with it. A
server that substitutes keys or tells parties different survivor sets is then caught by name.

Not covered:
- An actively malicious server *without signed keys*: it can substitute keys (a man in the
  middle between neighbours). Signatures need identities bound to keys (the ledger issue's PKI).
- Malicious parties' *inputs*. A party may mask any ring element; nothing bounds its
  contribution (no range proofs), so secure aggregation gives no Byzantine robustness.
- The sum itself, and differences of sums across rounds with different participants: these
  need differential privacy.
- Metadata: who took part, who dropped, weights (public example counts), update size.
- The simulation itself: ``secure_sum`` and ``SecureAggregator`` run every party in one
  process, so whoever runs them holds all secrets. The messages are the real ones; a deployment
  puts each ``SecAggParty`` on its own machine, talking to the server over authenticated channels.

Combining with other mechanisms
-------------------------------
Sound:
- clipping at the party before encoding (the fixed-point clip range also bounds each
  coordinate's sensitivity); weighted means with public weights (``SecureAggregator``);
- local DP (each party noises its own update enough on its own): post-processing;
- distributed DP with *discrete* noise added to the encoded integers (distributed discrete
  Gaussian, Kairouz et al. 2021: what ``privacy.mode = "distributed"`` does under SecAgg+,
  :class:`deai.privacy.dp.mechanisms.RingNoise`), the accountant using the number of shares that
  reached the sum, since dropouts take their noise with them;
- central DP added by the server after decoding: protects the released model, not the inputs
  against the server.
Unsound:
- robust aggregators that need individual updates (median, trimmed mean, Krum, Bulyan, norm
  filters, anomaly detection at the server): the server holds only the sum;
- distributed DP with continuous noise that the encoder then clips and rounds per party: the
  sum of clipped, rounded noised inputs is not the Gaussian sum the accountant analyses.
"""

from deai.privacy.secagg.aggregator import SecureAggregator
from deai.privacy.secagg.config import SecAggConfig
from deai.privacy.secagg.encoding import FixedPoint
from deai.privacy.secagg.errors import AuthenticationError, MalformedMessageError, SecAggError
from deai.privacy.secagg.graph import default_degree, harary_graph
from deai.privacy.secagg.party import SecAggParty
from deai.privacy.secagg.protocol import SecAggResult, Transcript, run_protocol, secure_sum
from deai.privacy.secagg.server import SecAggServer

__all__ = [
    "AuthenticationError",
    "FixedPoint",
    "MalformedMessageError",
    "SecAggConfig",
    "SecAggError",
    "SecAggParty",
    "SecAggResult",
    "SecAggServer",
    "SecureAggregator",
    "Transcript",
    "default_degree",
    "harary_graph",
    "run_protocol",
    "secure_sum",
]
