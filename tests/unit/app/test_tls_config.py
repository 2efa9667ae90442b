"""[tls]: a wrong combination or a wrong file stops the start with one line naming the key."""

import json

import pytest

from app.config import ConfigError, load_config
from app.devcerts import make_dev_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


def _load(**tls: str):
    return load_config(None, env={f"CONTRAIL__TLS__{k.upper()}": v for k, v in tls.items()})


def _error(**tls: str) -> str:
    with pytest.raises(ConfigError) as err:
        _load(**tls)
    return str(err.value)


def test_tls_is_off_by_default_and_on_with_a_certificate_and_its_key(certs):
    assert not _load().tls.enabled
    on = _load(cert_file=str(certs.server), key_file=str(certs.server_key), client_ca_file=str(certs.ca),
               require_client_cert="true", client_principals=json.dumps({"partner-ranker": "partner",
                                                                         "ops": "key_0123456789abcdef"}))
    assert on.tls.enabled and on.tls.require_client_cert
    assert on.tls.client_principals == {"partner-ranker": "partner", "ops": "key_0123456789abcdef"}


def test_each_mistake_is_one_line_naming_its_key(certs, tmp_path):
    server = {"cert_file": str(certs.server), "key_file": str(certs.server_key)}
    assert _error(cert_file=str(certs.server)) == "config: tls.key_file: must be set with cert_file"
    assert _error(key_file=str(certs.server_key)) == "config: tls.cert_file: must be set with key_file"
    assert _error(outbound_cert_file=str(certs.client)) == \
        "config: tls.outbound_key_file: must be set with outbound_cert_file"
    missing = tmp_path / "nope.pem"
    assert _error(cert_file=str(missing), key_file=str(certs.server_key)) == \
        f"config: tls.cert_file: file {missing} not found"
    assert _error(outbound_ca_file=str(missing)) == f"config: tls.outbound_ca_file: file {missing} not found"
    assert _error(client_ca_file=str(certs.ca)).startswith("config: tls.client_ca_file: client certificates need TLS")
    assert _error(**server, require_client_cert="true").startswith("config: tls.require_client_cert: needs "
                                                                   "client_ca_file")
    assert _error(**server, client_principals='{"a": "partner"}').startswith(
        "config: tls.client_principals: needs client_ca_file")
    assert _error(**server, client_ca_file=str(certs.ca), client_principals='{"a": "root"}') == \
        "config: tls.client_principals: 'a' = 'root': must be exchange, partner, admin or an API key's id " \
        "(key_ and 16 hex digits)"


def test_files_that_are_not_what_their_key_says_are_refused(certs, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    assert _error(cert_file=str(text), key_file=str(certs.server_key)) == \
        "config: tls.cert_file: is not a PEM certificate"
    # The client's key beside the server's certificate: a mismatch found before the first handshake.
    assert _error(cert_file=str(certs.server), key_file=str(certs.client_key)) == \
        "config: tls.key_file: is not the unencrypted PEM private key of cert_file"
    assert _error(cert_file=str(certs.server), key_file=str(certs.server_key), client_ca_file=str(text)) == \
        "config: tls.client_ca_file: is not a PEM file of CA certificates"


def test_a_passphrase_protected_key_is_refused_not_prompted_for(certs, tmp_path):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(certs.server_key.read_bytes(), password=None)
    locked = tmp_path / "locked-key.pem"
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    assert _error(cert_file=str(certs.server), key_file=str(locked)) == \
        "config: tls.key_file: is not the unencrypted PEM private key of cert_file"
