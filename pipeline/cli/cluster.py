"""`python -m pipeline.cluster certs DIR`: the TLS files of an external Dask cluster (see README,
"Many machines: the Dask backend"), and the commands that start its scheduler and workers with them."""

from __future__ import annotations

import argparse
from typing import Sequence

from ..tuning.certificates import make_certificates
from .common import command_parser


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("cluster", "make the TLS certificates of a Dask cluster for pipeline.search")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    certs = commands.add_parser("certs", help="write ca.pem, cluster.pem and cluster-key.pem into a folder")
    certs.add_argument("folder", metavar="DIR", help="where to write them (created if missing; never overwritten)")
    certs.add_argument("--days", type=int, default=365, help="how long the certificates are valid (default 365)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ca, cert, key = make_certificates(args.folder, days=args.days)
    tls = f"--tls-ca-file {ca} --tls-cert {cert} --tls-key {key}"
    print(f"wrote {ca}, {cert} and {key} (the private key: readable by you only; copy the folder to every "
          f"machine of the cluster, and to no one else), valid for {args.days} days.\n"
          f"Start the cluster (HOST: the scheduler's address, WORKER: the worker's) and search with them:\n"
          f"  dask scheduler --protocol tls --host HOST --port 8786 --no-dashboard --dashboard-address 127.0.0.1:8787 "
          f"{tls}\n"
          f"  dask worker tls://HOST:8786 --nthreads 1 --host WORKER --no-dashboard --dashboard-address 127.0.0.1:0 "
          f"{tls}\n"
          f"  python -m pipeline.search --scheduler tls://HOST:8786 --tls-ca {ca} --tls-cert {cert} --tls-key {key}")
    return 0
