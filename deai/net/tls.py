"""Mutual TLS for the star: a task CA, one certificate per node, gRPC credentials from them.

The task owner makes the CA (``deai tls ca DIR``) and issues each node a certificate
(``deai tls issue NAME --ca DIR --out NODE_DIR``); a node's TLS directory holds ``ca.crt``,
``node.crt`` and ``node.key``. The aggregator demands a client certificate signed by the task CA, and each
party checks the aggregator's certificate against it, so a process without a certificate from this task
cannot even open a stream. TLS protects the channel; the signed envelopes (:mod:`deai.net.envelope`)
still bind every message to its sender's Ed25519 key, task and round.

Rotation: issue a node a new certificate from the same CA and restart the node with the same state
directory (nodes resume, tested); rotating the CA itself means issuing every node a new certificate and
restarting the federation from its checkpoints. Keys are ECDSA P-256 from OS entropy; certificates last
``days`` (default 90).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deai.report.artifacts import atomic_write_bytes

CA_CERT, CA_KEY, NODE_CERT, NODE_KEY = "ca.crt", "ca.key", "node.crt", "node.key"
#: The name every node's certificate carries besides its own: parties check the aggregator by it, so an
#: aggregator's address may be any host or port.
TASK_HOST = "deai-aggregator"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(out: Path, name: str = "deai task CA", days: int = 3650) -> None:
    """A self-signed CA in ``out`` (``ca.crt``, ``ca.key`` mode 0600)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / CA_KEY).exists():
        raise FileExistsError(f"{out / CA_KEY} exists; a CA is made once (issue node certificates from it)")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    atomic_write_bytes(out / CA_KEY, _key_pem(key), mode=0o600)
    atomic_write_bytes(out / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))


def issue(
    ca_dir: Path, name: str, out: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), days: int = 90
) -> None:
    """A certificate for node ``name`` signed by the CA in ``ca_dir``, written with ``ca.crt`` to ``out``."""
    ca_dir, out = Path(ca_dir), Path(out)
    try:
        ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
    except (OSError, ValueError) as err:
        raise ValueError(f"{ca_dir} is not a deai task CA ({err}); make one with `deai tls ca DIR`") from None
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(TASK_HOST), x509.DNSName(name)]
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / NODE_KEY, _key_pem(key), mode=0o600)
    atomic_write_bytes(out / NODE_CERT, cert.public_bytes(serialization.Encoding.PEM))
    atomic_write_bytes(out / CA_CERT, (ca_dir / CA_CERT).read_bytes())


def _read(tls_dir: Path) -> tuple[bytes, bytes, bytes]:
    tls_dir = Path(tls_dir)
    try:
        return tuple((tls_dir / f).read_bytes() for f in (CA_CERT, NODE_KEY, NODE_CERT))  # type: ignore[return-value]
    except OSError as err:
        raise ValueError(
            f"--tls {tls_dir}: needs {CA_CERT}, {NODE_CERT} and {NODE_KEY} ({err.strerror})"
        ) from None


def server_credentials(tls_dir: Path) -> grpc.ServerCredentials:
    """The aggregator's side: its certificate, and client certificates required from the task CA."""
    ca, key, cert = _read(tls_dir)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(tls_dir: Path) -> grpc.ChannelCredentials:
    """A party's side: the aggregator must present a certificate of the task CA; so must the party."""
    ca, key, cert = _read(tls_dir)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
