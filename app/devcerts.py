"""`python -m app dev-certs`: a local CA, a server certificate for this machine's loopback names and a client
certificate, to try TLS and mTLS without a real PKI. Never for production: the CA's key lies beside the certs."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
_CA_DAYS, _LEAF_DAYS = 3650, 397  # 397: the longest leaf validity browsers accept


@dataclass(frozen=True)
class DevCerts:
    ca: Path
    ca_key: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path
    client_cn: str

    def config_lines(self) -> str:
        """The [tls] keys that use these files, as config.toml lines."""
        return "\n".join([
            "[tls]",
            f'cert_file = "{self.server}"',
            f'key_file = "{self.server_key}"',
            f'client_ca_file = "{self.ca}"',
            "require_client_cert = true",
            f'client_principals = {{"{self.client_cn}" = "partner"}}',
            "# on the calling side (a Contrail whose ranking.remote or ltv.remote is this one):",
            f'outbound_ca_file = "{self.ca}"',
            f'outbound_cert_file = "{self.client}"',
            f'outbound_key_file = "{self.client_key}"',
            "outbound_grpc = true",
        ])


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contrail development"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # readable by its owner only, from the start
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The directory's CA: the one there (so certificates issued again chain to what peers already trust), else a
    new one."""
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.is_file() and key_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not the EC key dev-certs writes")
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(f"Contrail development CA {os.urandom(4).hex()}")  # two dev CAs never share a name
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert, key


def _leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str, usage: x509.ObjectIdentifier,
          names: list[x509.GeneralName]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(_LEAF_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_dev_certs(directory: Path, client_cn: str = "partner-ranker",
                   server_names: tuple[str, ...] = SERVER_NAMES) -> DevCerts:
    """Write (or reuse) the CA in `directory`, and issue a server and a client certificate from it."""
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    ca, ca_key = _ca(directory)
    out = DevCerts(directory / "ca.pem", directory / "ca-key.pem", directory / "server.pem",
                   directory / "server-key.pem", directory / f"{client_cn}.pem", directory / f"{client_cn}-key.pem",
                   client_cn)
    server, server_key = _leaf(ca, ca_key, server_names[0], ExtendedKeyUsageOID.SERVER_AUTH,
                               [_general_name(h) for h in server_names])
    client, client_key = _leaf(ca, ca_key, client_cn, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    for path, key in ((out.server_key, server_key), (out.client_key, client_key)):
        _write_key(path, key)
    _write_cert(out.server, server)
    _write_cert(out.client, client)
    return out


def add_parser(sub: Any) -> None:  # argparse's subparsers action has no public type
    cmd = sub.add_parser("dev-certs", help="make a local CA, a server certificate for localhost, 127.0.0.1 and ::1, "
                                           "and a client certificate, to try TLS and mTLS (not for production)")
    cmd.add_argument("--dir", default="var/certs", help="where to write them (default var/certs); a CA already "
                                                        "there is reused")
    cmd.add_argument("--client-cn", default="partner-ranker",
                     help="the client certificate's subject CN, as tls.client_principals names it")


def run(args: argparse.Namespace) -> int:
    """The command: write the files, print the config that uses them."""
    cn = args.client_cn.strip()
    if not 1 <= len(cn) <= 64 or "/" in cn or cn.startswith("."):  # a certificate's CN is at most 64 characters
        print("error: --client-cn must be 1 to 64 characters, without '/' and not starting with '.' (it names the "
              "certificate's files)", file=sys.stderr)
        return 2
    try:
        certs = make_dev_certs(Path(args.dir), cn)
    except OSError as exc:  # --dir not a directory, not writable
        print(f"error: --dir {args.dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"CA {certs.ca} (its key {certs.ca_key}: keep it to issue more; never use these in production)")
    print(f"server certificate {certs.server} for {', '.join(SERVER_NAMES)}")
    print(f"client certificate {certs.client} (CN={cn})")
    print("\nin config.toml:\n")
    print(certs.config_lines())
    print(f"\ntry it: curl --cacert {certs.ca} https://127.0.0.1:8080/health/ready")
    return 0
