"""TLS for an external Dask cluster: the certificate files that make it answer to its owner alone.

A Dask scheduler runs whatever pickled code its clients send. Over TLS, Dask's scheduler, workers
and clients each present a certificate and accept only peers whose certificate the cluster's CA
signed (mutual TLS; `distributed.security.Security`). `make_certificates` writes such a set for a
cluster: the CA's certificate and one certificate + private key that the scheduler, every worker
and the search present. The CA's own private key is never written: nobody, the owner included,
can sign a further certificate, so the files in the folder are the only way in (a new folder, and
restarting the cluster with it, revokes them all).

`cluster_security` builds the search's side from those files (or from Dask's own TLS settings),
checking them before any connection, so a missing or broken file is one line, not a hang.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import PipelineError

CA_FILE = "ca.pem"
CERT_FILE = "cluster.pem"
KEY_FILE = "cluster-key.pem"
INSTALL = "pip install -e \".[dask]\""


@dataclass(frozen=True)
class TlsFiles:
    """The CA certificate, certificate and private key a search presents to a tls:// scheduler
    (the key may instead be appended to the certificate file, as Dask allows)."""

    ca: str
    cert: str
    key: str | None = None

    @classmethod
    def of(cls, execution) -> "TlsFiles | None":
        """The files an `ExecutionConfig` names (`tls_ca`, `tls_cert`, `tls_key`), if any."""
        return cls(execution.tls_ca, execution.tls_cert, execution.tls_key) if execution.tls_ca else None


def make_certificates(folder: str | Path, days: int = 365, name: str = "pipeline dask cluster") -> list[Path]:
    """Write ca.pem, cluster.pem and cluster-key.pem (readable by the owner only) into `folder`,
    created if missing; refuses to overwrite, and writes nothing unless it can write all three."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise PipelineError(f"making TLS certificates needs the cryptography package: {INSTALL}") from None
    if days < 1:
        raise PipelineError(f"--days {days}: certificates must be valid for at least 1 day")
    folder = Path(folder)
    paths = [folder / CA_FILE, folder / CERT_FILE, folder / KEY_FILE]
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"{folder} is a file: give a folder for the certificates")
    existing = [path.name for path in paths if path.exists()]
    if existing:
        raise PipelineError(f"{folder} already holds {', '.join(existing)}: choose another folder, or delete them "
                            "(and restart the cluster with the new files)")

    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)  # clocks differ a little

    def certificate(subject: str, issuer: str, public_key, signing_key, is_ca: bool):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=not is_ca, key_cert_sign=is_ca, crl_sign=is_ca,
                                                content_commitment=False, key_encipherment=False, data_encipherment=False,
                                                key_agreement=False, encipher_only=False, decipher_only=False),
                                  critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
        if not is_ca:  # the same certificate serves the scheduler and workers (servers) and every client
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = f"{name} CA"
    contents = [
        certificate(ca_name, ca_name, ca_key.public_key(), ca_key, is_ca=True).public_bytes(serialization.Encoding.PEM),
        certificate(name, ca_name, key.public_key(), ca_key, is_ca=False).public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for path, data, mode in zip(paths, contents, (0o644, 0o644, 0o600)):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # the key is never readable by others
            written.append(path)
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return paths


def cluster_security(scheduler: str, files: TlsFiles | None) -> Any:
    """The `distributed.security.Security` a search connects with: none for tcp://; for tls://,
    `files`, else Dask's own TLS settings (`distributed.comm.tls.*`). The files are read and the
    TLS context built here, before any connection, so a bad file is one line with the fix."""
    from distributed.security import Security

    if not scheduler.startswith("tls://"):
        return None
    if files is None:
        security = Security()  # Dask's configuration: files, DASK_DISTRIBUTED__COMM__TLS__* variables
        if not (security.tls_ca_file and security.tls_client_cert):
            raise PipelineError(f"the tls:// scheduler {scheduler} needs the cluster's CA and a client certificate: "
                                "--tls-ca ca.pem --tls-cert cluster.pem --tls-key cluster-key.pem "
                                "(made by python -m pipeline.cluster certs DIR; see README, Dask backend)")
    else:
        for flag, path in (("--tls-ca", files.ca), ("--tls-cert", files.cert), ("--tls-key", files.key)):
            if path is not None and not Path(path).is_file():
                raise PipelineError(f"{flag} {path}: no such file; give the files of the cluster's certificate "
                                    "folder (python -m pipeline.cluster certs DIR makes one)")
        security = Security(tls_ca_file=files.ca, tls_client_cert=files.cert, tls_client_key=files.key,
                            require_encryption=True)
    try:
        security.get_connection_args("client")  # loads the CA, the certificate and its key
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        raise PipelineError(f"cannot use the TLS files for {scheduler} ({error}); give the CA certificate, the "
                            "certificate and its matching private key, in PEM format") from None
    return security
