"""A local S3-compatible server for the object-storage tests: moto's S3 in a thread, over
HTTPS with a throwaway CA (litdata fetches chunks with obstore, which refuses plain
http endpoints), and a bucket holding a copy of a shards folder.

`s3_server_env(shards, tmp)` yields the environment a client needs (credentials,
AWS_ENDPOINT_URL, the CA bundle for boto3 and for obstore's rustls) plus TEST_S3_ROOT,
the s3:// URL of the uploaded shards. Nothing leaves the machine.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"


def _certificate(subject: str, issuer: str, key, signing_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=6))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:  # rustls wants a leaf certificate naming the address, signed by a CA
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def write_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """(server certificate, its key, the CA bundle that trusts it)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("alexnet-lab test CA", "alexnet-lab test CA", ca_key, ca_key, True)
    leaf = _certificate(HOST, "alexnet-lab test CA", key, ca_key, False)
    cert, key_file, bundle = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_file, bundle


@contextmanager
def s3_server_env(shards: Path, tmp: Path, bucket: str = "lab-data") -> Iterator[dict[str, str]]:
    import boto3
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    tls = tmp / "tls"
    tls.mkdir(exist_ok=True)
    cert, key, bundle = write_tls_files(tls)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        HOST,
        0,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=(str(cert), str(key)),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        "AWS_ACCESS_KEY_ID": "AKIALABTESTKEYID0001",
        "AWS_SECRET_ACCESS_KEY": "lab-test-secret-2c8e1f0b9a7d",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"https://{HOST}:{server.server_address[1]}",
        "AWS_CA_BUNDLE": str(bundle),  # boto3
        "SSL_CERT_FILE": str(bundle),  # obstore (rustls reads the native roots from it)
        "TEST_S3_ROOT": f"s3://{bucket}/imagenet",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3")
        client.create_bucket(Bucket=bucket)
        for path in sorted(
            shards.rglob("*")
        ):  # what `aws s3 sync OUT ... --exclude 'jpeg/*'` sends
            rel = path.relative_to(shards)
            if path.is_file() and rel.parts[0] in ("train", "val", "classes.json"):
                client.upload_file(str(path), bucket, f"imagenet/{rel.as_posix()}")
        yield env
    finally:
        for k, value in saved.items():
            if value is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = value
        server.shutdown()
        thread.join(timeout=10)
