"""The Dask backend against a real `dask scheduler` and `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from conftest import PROJECT, free_port, run_main, write_config

pytest.importorskip("distributed")

DASK = Path(sys.executable).parent / "dask"
PARAMS = {"model__init_mode": ["zeros", "glorot_uniform", "he_normal"], "batch_size": [16, 32]}


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """The cluster's TLS files, made as the README says (`python -m pipeline.cluster certs DIR`)."""
    from pipeline.cluster import main

    folder = tmp_path_factory.mktemp("cluster") / "certs"
    assert run_main(main, ["certs", folder]) == 0
    return folder


def tls_flags(certs: Path, ca_flag: str = "--tls-ca") -> list:
    """The TLS flags of the search (`--tls-ca`) or of `dask scheduler`/`dask worker` (`--tls-ca-file`)."""
    return [ca_flag, certs / "ca.pem", "--tls-cert", certs / "cluster.pem", "--tls-key", certs / "cluster-key.pem"]


def tls_security(certs: Path):
    from distributed.security import Security

    return Security(tls_ca_file=str(certs / "ca.pem"), tls_client_cert=str(certs / "cluster.pem"),
                    tls_client_key=str(certs / "cluster-key.pem"), require_encryption=True)


def start_worker(address: str, certs: Path) -> subprocess.Popen:
    """A single-threaded `dask worker` (no nanny: the worker is the process we start, so its PID is
    the one that trains) on 127.0.0.1, with the cluster's TLS files as the README starts one."""
    return subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                             "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--death-timeout", "60",
                             *map(str, tls_flags(certs, "--tls-ca-file"))],
                            cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def dask_cluster(certs: Path, workers: int = 2):
    """`dask scheduler` and `workers` `dask worker` processes, TLS with `certs`, loopback only,
    killed by PID afterwards. Yields the scheduler's address, the worker PIDs and a function that
    starts one more worker."""
    address = f"tls://127.0.0.1:{free_port()}"
    processes = [subprocess.Popen([str(DASK), "scheduler", "--protocol", "tls", "--host", "127.0.0.1",
                                   "--port", address.rsplit(":", 1)[1], "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                                   *map(str, tls_flags(certs, "--tls-ca-file"))],
                                  cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]

    def add_worker() -> int:
        processes.append(start_worker(address, certs))
        return processes[-1].pid

    try:
        pids = [add_worker() for _ in range(workers)]
        from distributed import Client

        with Client(address, security=tls_security(certs), timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)
        assert _listening([psutil.Process(p.pid) for p in processes]) == {"127.0.0.1"}  # as the README starts them
        yield address, pids, add_worker
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def _journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]


def _search(tmp_path: Path, name: str, *extra, **sections) -> tuple[int, Path]:
    from pipeline.search import main

    config = write_config(tmp_path, f"{name}.yaml", experiment=name, **sections)
    code = run_main(main, ["--config", config, "--output-dir", tmp_path / name, "--quiet", *extra])
    runs = list((tmp_path / name).iterdir()) if (tmp_path / name).exists() else []
    return code, runs[0] if runs else None


THREADS = "__import__('tensorflow').config.threading.get_intra_op_parallelism_threads()"


def test_a_search_on_a_tls_cluster_equals_a_local_one(tmp_path, certs, monkeypatch):
    """The README's cluster: a TLS scheduler and two workers started with the files of
    `pipeline.cluster certs`; the search connects once, both workers train, the results equal a
    local run's."""
    from distributed import Client

    import pipeline.tuning.cluster

    connections = []
    connect = pipeline.tuning.cluster._connect
    monkeypatch.setattr(pipeline.tuning.cluster, "_connect", lambda *a: connections.append(a[1]) or connect(*a))
    with dask_cluster(certs, 2) as (address, worker_pids, _):
        code, remote = _search(tmp_path, "remote", "--scheduler", address, *tls_flags(certs),
                               search={"strategy": "grid", "params": PARAMS})
        with Client(address, security=tls_security(certs)) as client:  # TensorFlow: as many threads as the worker has
            threads = client.run(eval, THREADS)
    assert code == 0 and connections == [address]
    assert list(threads.values()) == [1, 1]
    code, local = _search(tmp_path, "local", search={"strategy": "grid", "params": PARAMS})
    assert code == 0
    records = _journal(remote)
    assert len(records) == 6 * 2 and {r["trainer"]["pid"] for r in records} == set(worker_pids)  # both workers
    assert not any(r["failure"] for r in records)
    a, b = (pd.read_csv(run / "results.csv").sort_values("candidate") for run in (remote, local))
    for column in ("fold0_test_score", "fold1_test_score", "mean_train_score"):
        np.testing.assert_allclose(a[column], b[column], atol=1e-9)
    run = json.loads((remote / "run.json").read_text())
    assert run["status"] == "finished" and run["failed_candidates"] == {} and run["incidents"] == 0
    assert run["execution"]["backend"] == "dask" and run["execution"]["scheduler"] == address
    assert run["execution"]["tls_cert"] == str(certs / "cluster.pem")
    assert (remote / "best_model" / "model.weights.h5").is_file()


def test_a_tls_cluster_refuses_strangers_and_later_workers_get_the_threads(tmp_path, certs, capsys):
    """Without the cluster's certificate nobody gets in: the search with another folder's files
    or with none is one line, exit 2, no run folder; plain TCP, another certificate and TLS
    without a client certificate are refused. While a search is connected, a worker that joins
    gets TensorFlow's thread setting; afterwards the scheduler keeps no plugin of ours."""
    from distributed import Client

    from pipeline.cluster import main as cluster_main
    from pipeline.tuning.certificates import TlsFiles
    from pipeline.tuning.cluster import dask_client
    from pipeline.tuning.dask_worker import TensorFlowThreads

    assert run_main(cluster_main, ["certs", tmp_path / "other"]) == 0
    capsys.readouterr()
    with dask_cluster(certs, 1) as (address, _, add_worker):
        for flags, expected in ((tls_flags(tmp_path / "other"), f"the Dask scheduler at {address} refused the TLS "),
                                ([], "needs the cluster's CA and a client certificate: --tls-ca")):
            code, run_dir = _search(tmp_path, "stranger", "--scheduler", address, *flags,
                                    search={"strategy": "grid", "params": PARAMS})
            err = capsys.readouterr().err.strip()
            assert code == 2 and run_dir is None
            assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
        assert_refuses_strangers(address)

        files = TlsFiles(str(certs / "ca.pem"), str(certs / "cluster.pem"), str(certs / "cluster-key.pem"))
        with dask_client(address, cores=0, tls=files) as client:
            assert list(client.run(eval, THREADS).values()) == [1]
            joined = add_worker()
            client.wait_for_workers(2, timeout=60)
            deadline = time.time() + 60  # the plugin's setup (TensorFlow's import) runs before the worker's first task
            while (threads := client.run(eval, THREADS)) != {w: 1 for w in threads} and time.time() < deadline:
                time.sleep(0.5)
            assert len(threads) == 2 and set(threads.values()) == {1}
            assert joined in client.run(os.getpid).values()
        with Client(address, security=tls_security(certs)) as client:
            plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    assert TensorFlowThreads.name not in plugins


def test_a_worker_killed_mid_group_costs_no_candidate(tmp_path, certs):
    """Kill one of two workers while they train fused groups: the lost group is trained again
    (it is an infrastructure failure, not the candidates'), the search completes with every
    candidate scored, and every fit is recorded exactly once."""
    sections = dict(training={"epochs": 6, "batch_size": 16}, search={"strategy": "grid", "params": PARAMS})
    with dask_cluster(certs, 2) as (address, worker_pids, _):
        journal = []

        def kill_when_training_started():
            deadline = time.time() + 120
            while time.time() < deadline:
                found = list(tmp_path.glob("killed/*/journal.jsonl"))
                if found and found[0].read_text().count("\n") >= 1:
                    os.kill(worker_pids[0], signal.SIGKILL)
                    journal.append(found[0])
                    return
                time.sleep(0.1)

        killer = threading.Thread(target=kill_when_training_started)
        killer.start()
        code, run_dir = _search(tmp_path, "killed", "--scheduler", address, *tls_flags(certs), **sections)
        killer.join()
    assert journal, "the worker was never killed: no fit finished"
    assert code == 0
    records = _journal(run_dir)
    keys = [(r["key"], r["fold"]) for r in records]
    assert len(keys) == len(set(keys)) == 6 * 2
    # two groups of 3 candidates, each on both folds in one program
    assert not any(r["failure"] for r in records) and {r["trainer"]["fused"]["towers"] for r in records} == {6}
    results = pd.read_csv(run_dir / "results.csv", keep_default_na=False)
    assert (results["error"] == "").all() and (results["mean_test_score"] != "").all()


def _children() -> set[int]:
    """PIDs of this process's live children, except multiprocessing's resource tracker (one per
    interpreter, started with the first worker process and kept for the interpreter's lifetime)."""
    found = set()
    for child in psutil.Process().children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.parametrize("outcome", ["finishes", "aborts"])
def test_a_local_cluster_is_shut_down(tmp_path, outcome):
    """`--backend dask` without a scheduler starts a LocalCluster and leaves no process behind,
    whether the search finishes or aborts (every fit diverging, failure limit 1)."""
    before = _children()
    if outcome == "finishes":
        code, _ = _search(tmp_path, "localcluster", "--backend", "dask", search={"strategy": "grid", "params": PARAMS})
    else:
        code, _ = _search(tmp_path, "aborting", "--backend", "dask",
                          data={"name": "quadratic", "samples": 100}, optimizer={"name": "sgd", "learning_rate": 0.05},
                          search={"strategy": "grid",
                                  "params": {"model__init_mode": ["uniform(-1000, 1000)", "uniform(-900, 900)"]}},
                          execution={"max_consecutive_failures": 1, "fuse": False})
    assert code == (0 if outcome == "finishes" else 1)
    deadline = time.time() + 10
    while _children() - before and time.time() < deadline:
        time.sleep(0.2)
    assert not _children() - before


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    code, _ = _search(tmp_path, "nowhere", "--scheduler", f"tcp://127.0.0.1:{free_port()}",
                      search={"strategy": "grid", "params": PARAMS})
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:") and "dask scheduler" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()  # checked before the run folder is made


def test_a_cluster_that_cannot_import_pipeline_is_one_line(tmp_path, capsys, monkeypatch, certs):
    """The import check runs on the scheduler before anything is sent (here made to import a
    module that is not installed anywhere, as a scheduler without this project would fail)."""
    import pipeline.tuning.cluster

    monkeypatch.setattr(pipeline.tuning.cluster, "IMPORT_CHECK", "__import__('pipeline_not_installed').__name__")
    with dask_cluster(certs, 1) as (address, _, _):
        code, _ = _search(tmp_path, "noimport", "--scheduler", address, *tls_flags(certs),
                          search={"strategy": "grid", "params": PARAMS})
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: the Dask scheduler at {address} cannot import pipeline (ModuleNotFoundError")
    assert "pip install -e ." in err and len(err.splitlines()) == 1
    assert not (tmp_path / "noimport").exists()


def _listening(processes) -> set[str]:
    """The IP addresses these processes listen on (TCP)."""
    found = set()
    for process in processes:
        try:
            found |= {c.laddr.ip for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            continue
    return found


def assert_refuses_strangers(address: str) -> None:
    """The TLS scheduler at `address` refuses a client with another cluster's certificate, a plain
    TCP client, and a TLS connection without a client certificate."""
    from distributed import Client
    from distributed.security import Security

    with pytest.raises(Exception, match="certificate does not match"):  # another cluster's certificate
        Client(address, security=Security.temporary(), timeout="3s")
    with pytest.raises(Exception):  # no TLS at all
        Client(address.replace("tls://", "tcp://"), timeout="3s")
    host, port = address[len("tls://"):].rsplit(":", 1)
    anyone = ssl.create_default_context()
    anyone.check_hostname, anyone.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=30) as raw, anyone.wrap_socket(raw) as connection:
        # TLS without a client certificate: the server's alert, or the connection closed after it
        with pytest.raises(OSError, match="CERTIFICATE_REQUIRED|EOF occurred|reset by peer"):
            connection.sendall(b"hello")
            connection.recv(1)


@pytest.mark.parametrize("dashboard", [False, True])
def test_the_local_cluster_speaks_tls_on_loopback_only(dashboard, capsys):
    """The LocalCluster of `--backend dask`: every port of the search's process and of the
    workers is on 127.0.0.1; the scheduler takes only TLS clients holding this cluster's own
    certificate (another certificate, plain TCP, and TLS without a client certificate are refused);
    the dashboard is off unless asked."""
    from pipeline.tuning.cluster import dask_client

    with dask_client(None, 2, dashboard=dashboard) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:") and client.submit(sum, [1, 2]).result() == 3
        me = psutil.Process()
        assert _listening([me, *me.children(recursive=True)]) == {"127.0.0.1"}
        assert_refuses_strangers(address)
        port = client.scheduler_info()["services"]["dashboard"]  # the scheduler's HTTP server, always there
        status = f"http://127.0.0.1:{port}/status"
        if dashboard:
            with urllib.request.urlopen(status, timeout=30) as page:
                assert b"Dask" in page.read()
        else:
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(status, timeout=30)
        link = client.dashboard_link
    err = capsys.readouterr().err
    assert (f"Dask dashboard: {link}" in err) == dashboard


def test_a_network_tcp_scheduler_is_refused_before_anything_is_sent(tmp_path):
    """In a network namespace with no route (`unshare -rn`), so that even a bug sends nothing:
    exit code 2 and one line before any connection attempt, no run folder; with --insecure the
    same command warns and then tries to connect (and fails: there is no network)."""
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -rn (user and network namespaces)")
    config = write_config(tmp_path, search={"strategy": "grid", "params": PARAMS})
    command = ["unshare", "-rn", sys.executable, "-m", "pipeline.search", "--config", str(config),
               "--output-dir", str(tmp_path / "outputs"), "--scheduler", "tcp://192.0.2.1:8786"]
    started = time.monotonic()
    refused = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert refused.returncode == 2 and time.monotonic() - started < 30
    assert refused.stderr.startswith("error: ") and len(refused.stderr.strip().splitlines()) == 1
    assert "unencrypted and unauthenticated" in refused.stderr and "--insecure" in refused.stderr
    assert not (tmp_path / "outputs").exists()

    tried = subprocess.run([*command, "--insecure"], capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert tried.returncode == 2 and "WARNING: --insecure" in tried.stderr
    assert "cannot reach the Dask scheduler at tcp://192.0.2.1:8786" in tried.stderr
