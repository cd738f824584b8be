"""`python -m pipeline.cluster certs DIR`: a cluster's CA, certificate and key, and the search's TLS side."""

from __future__ import annotations

import ssl
import stat

import pytest

from conftest import run_main

pytest.importorskip("cryptography")


def _load(folder):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((folder / "cluster.pem").read_bytes())
    key = load_pem_private_key((folder / "cluster-key.pem").read_bytes(), password=None)
    return ca, cert, key


def test_certs_makes_a_ca_and_a_certificate_it_signed(tmp_path, capsys):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from pipeline.cluster import main

    folder = tmp_path / "new" / "certs"
    assert run_main(main, ["certs", folder, "--days", "30"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "cluster-key.pem", "cluster.pem"]
    assert stat.S_IMODE((folder / "cluster-key.pem").stat().st_mode) == 0o600  # the secret
    ca, cert, key = _load(folder)
    cert.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) == \
        cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    # Python's own TLS accepts them as Dask uses them: the CA verifies the chain, the key matches
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=folder / "ca.pem")
    context.load_cert_chain(folder / "cluster.pem", folder / "cluster-key.pem")
    out = capsys.readouterr().out
    assert f"--tls-ca-file {folder / 'ca.pem'} --tls-cert {folder / 'cluster.pem'}" in out
    assert "dask scheduler --protocol tls" in out and "dask worker tls://" in out and "--scheduler tls://" in out


def test_certs_of_two_folders_are_strangers(tmp_path):
    from pipeline.cluster import main

    for name in ("a", "b"):
        assert run_main(main, ["certs", tmp_path / name]) == 0
    ca_a, _, _ = _load(tmp_path / "a")
    _, cert_b, _ = _load(tmp_path / "b")
    with pytest.raises(Exception):
        cert_b.verify_directly_issued_by(ca_a)


@pytest.mark.parametrize("case", ["existing", "file", "days"])
def test_certs_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, case):
    from pipeline.cluster import main

    folder = tmp_path / "certs"
    argv = ["certs", folder]
    if case == "existing":
        folder.mkdir()
        (folder / "cluster.pem").write_text("kept")
        expected = "already holds cluster.pem: choose another folder"
    elif case == "file":
        folder.write_text("a file")
        expected = "is a file: give a folder"
    else:
        argv += ["--days", "0"]
        expected = "--days 0: certificates must be valid for at least 1 day"
    assert run_main(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
    if case == "existing":
        assert sorted(p.name for p in folder.iterdir()) == ["cluster.pem"] and (folder / "cluster.pem").read_text() == "kept"
    elif case == "days":
        assert not folder.exists()


def test_the_search_checks_its_tls_files_before_connecting(tmp_path):
    pytest.importorskip("distributed")
    from pipeline.cluster import main
    from pipeline.core.errors import PipelineError
    from pipeline.tuning.certificates import TlsFiles, cluster_security

    for name in ("a", "b"):
        run_main(main, ["certs", tmp_path / name])
    a, b = tmp_path / "a", tmp_path / "b"
    address = "tls://192.0.2.1:8786"  # never contacted: every check here is local
    security = cluster_security(address, TlsFiles(str(a / "ca.pem"), str(a / "cluster.pem"), str(a / "cluster-key.pem")))
    assert security.require_encryption and security.tls_ca_file == str(a / "ca.pem")
    assert cluster_security("tcp://127.0.0.1:8786", None) is None
    with pytest.raises(PipelineError, match="--tls-key .*missing.pem: no such file"):
        cluster_security(address, TlsFiles(str(a / "ca.pem"), str(a / "cluster.pem"), str(a / "missing.pem")))
    with pytest.raises(PipelineError, match="cannot use the TLS files .*matching private key"):
        cluster_security(address, TlsFiles(str(a / "ca.pem"), str(a / "cluster.pem"), str(b / "cluster-key.pem")))
    with pytest.raises(PipelineError, match="cannot use the TLS files"):  # not PEM at all
        cluster_security(address, TlsFiles(str(a / "cluster-key.pem"), str(a / "cluster.pem"), str(a / "cluster-key.pem")))
    with pytest.raises(PipelineError, match="needs the cluster's CA and a client certificate: --tls-ca"):
        cluster_security(address, None)  # and Dask's own configuration has none
