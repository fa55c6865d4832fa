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


class Pki(BaseModel):
    """Paths of everything a control plane needs; all files live in one folder."""

    ca: CertPair
    serving: CertPair
    admin: CertPair
    controller_manager: CertPair
    service_account_key: Path
    service_account_pub: Path


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
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        return builder.sign(self.key, hashes.SHA256()), key


def generate_pki(folder: Path) -> Pki:
    """Write a fresh CA, serving cert, admin and controller-manager client certs, SA keys."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _Ca()

    def pair(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertPair:
        out = CertPair(cert=folder / f"{stem}.crt", key=folder / f"{stem}.key")
        _write_cert(cert, out.cert)
        _write_key(key, out.key)
        return out

    ca_pair = pair("ca", ca.cert, ca.key)
    serving = pair("apiserver", *ca.issue("kube-apiserver", server=True))
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
    return Pki(
        ca=ca_pair,
        serving=serving,
        admin=admin,
        controller_manager=kcm,
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
    )
