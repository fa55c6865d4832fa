"""Certificates and keys for a throw-away control plane.

One CA signs the API server's serving certificate and every client certificate; the API
server trusts that CA for client-cert authentication, so a client's identity is its
certificate's CN (user) and O (groups) — exactly how kubeadm clusters authenticate
their own components.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import BaseModel

# Test clusters live for minutes; a day leaves room for a long `dexctl dev cluster` session
# without being a credential worth stealing.
_VALIDITY = dt.timedelta(days=1)


class CertPair(BaseModel):
    cert: Path
    key: Path


class NodePki(BaseModel):
    """Certificates of a real node's components (``generate_pki(..., node=...)``)."""

    kubelet_client: CertPair  # system:node:<name> in system:nodes: the Node authorizer's form
    kubelet_serving: CertPair  # the kubelet's HTTPS server (logs, exec), SAN = the node IP
    apiserver_kubelet_client: CertPair  # how the API server authenticates to the kubelet
    scheduler: CertPair
    kube_proxy: CertPair


class Pki(BaseModel):
    """Paths of everything a control plane needs; all files live in one folder."""

    ca: CertPair
    serving: CertPair
    admin: CertPair
    controller_manager: CertPair
    service_account_key: Path
    service_account_pub: Path
    node: NodePki | None = None


def _name(common_name: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
    return x509.Name(attrs)


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class _Ca:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.name = _name("dex-devcluster-ca")
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        *,
        orgs: tuple[str, ...] = (),
        server: bool = False,
        sans: tuple[str, ...] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, orgs))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(name) for name in sans]), critical=False
            )
        return builder.sign(self.key, hashes.SHA256()), key


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


APISERVER_SANS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "127.0.0.1",
)


class NodeIdentity(BaseModel):
    """What the node's certificates name: its Node object and the addresses it serves on."""

    name: str
    ip: str
    apiserver_ips: tuple[str, ...] = ()  # extra API server SANs: node IP, service ClusterIP


def generate_pki(folder: Path, node: NodeIdentity | None = None) -> Pki:
    """Write a fresh CA, serving cert, admin and controller-manager client certs, SA keys;
    with ``node``, also the kubelet's, scheduler's and kube-proxy's certificates."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _Ca()

    def pair(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertPair:
        out = CertPair(cert=folder / f"{stem}.crt", key=folder / f"{stem}.key")
        _write_cert(cert, out.cert)
        _write_key(key, out.key)
        return out

    ca_pair = pair("ca", ca.cert, ca.key)
    sans = APISERVER_SANS + (node.apiserver_ips if node else ())
    serving = pair("apiserver", *ca.issue("kube-apiserver", server=True, sans=sans))
    # system:masters is bound to cluster-admin by the API server's bootstrap policy.
    admin = pair("admin", *ca.issue("dex-admin", orgs=("system:masters",)))
    # The bootstrap ClusterRole system:kube-controller-manager lets it mint per-controller
    # ServiceAccount tokens, so each controller runs under its own RBAC as in real clusters.
    kcm = pair("controller-manager", *ca.issue("system:kube-controller-manager"))

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path = folder / "sa.key"
    sa_pub_path = folder / "sa.pub"
    _write_key(sa_key, sa_key_path)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    node_pki = None
    if node is not None:
        node_pki = NodePki(
            kubelet_client=pair(
                "kubelet-client", *ca.issue(f"system:node:{node.name}", orgs=("system:nodes",))
            ),
            kubelet_serving=pair(
                "kubelet-serving", *ca.issue(node.name, server=True, sans=(node.name, node.ip))
            ),
            # system:masters may use every kubelet API (logs, exec, port-forward, metrics).
            apiserver_kubelet_client=pair(
                "apiserver-kubelet-client",
                *ca.issue("kube-apiserver-kubelet-client", orgs=("system:masters",)),
            ),
            # Users the bootstrap RBAC policy already binds (system:kube-scheduler,
            # system:node-proxier), as in kubeadm clusters.
            scheduler=pair("scheduler", *ca.issue("system:kube-scheduler")),
            kube_proxy=pair("kube-proxy", *ca.issue("system:kube-proxy")),
        )
    return Pki(
        ca=ca_pair,
        serving=serving,
        admin=admin,
        controller_manager=kcm,
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
        node=node_pki,
    )
