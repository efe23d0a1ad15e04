"""diag compare --cluster on a Dask cluster the test starts itself (a LocalCluster: 2 worker processes on this
machine, 1 thread each): runs land in the compare folder, a worker killed mid-run is retried (the run resumes)
or, when the scheduler may not retry, reported; a cluster that cannot hold a run is refused before it starts."""

import json
import os

import pytest

from diag.errors import DiagError
from diag.study.compare import compare
from diag.study.report import write_report
from helpers import kill_when_checkpointed, make_toy_dataset

distributed = pytest.importorskip("distributed", reason="needs the cluster extra: pip install 'diag[cluster]'")
dask = pytest.importorskip("dask")

OVER = ["train.epochs=10", "train.batch_size=16"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("ds") / "ds", n_train=64, n_val=8, n_test=8, classes=2, size=32)


def _cluster(allowed_failures=3):
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                        silence_logs=50)


def _kill_worker_running(client, run, epochs_done=1):
    """Kill (SIGKILL) the worker process that trains ``run`` once it has ``epochs_done`` epochs checkpointed;
    the returned ``stop()`` ends the watch and gives the killed process ids."""
    def worker_pid():
        busy = [w for w, keys in client.processing().items() if any(run.name in str(k) for k in keys)]
        return client.run(os.getpid, workers=busy)[busy[0]] if busy else None

    return kill_when_checkpointed(run, worker_pid, epochs_done, poll=0.05)


def test_a_grid_on_a_local_cluster_survives_a_killed_worker(ds, tmp_path):
    out = tmp_path / "cmp"
    with _cluster() as cluster, distributed.Client(cluster) as client:
        addr = cluster.scheduler_address
        with pytest.raises(DiagError, match=r"--cluster: no worker offers the resources a run needs \(GPU=1\)"):
            compare(ds, out, inits=["scratch"], seeds=[0], overrides=OVER + ["compare.resources=\"GPU=1\""],
                    cluster=addr, quiet=True)
        stop = _kill_worker_running(client, out / "scratch-all-none-w0-s0")
        try:
            res = compare(ds, out, inits=["scratch"], seeds=[0, 1], budgets=[0], warmups=[0], overrides=OVER,
                          cluster=addr, quiet=True)
        finally:
            killed = stop()
    assert killed, "the run finished before a worker could be killed"
    assert sorted(p.name for p in res["runs"]) == ["scratch-all-none-w0-s0", "scratch-all-none-w0-s1"]
    runs = json.loads((out / "compare.json").read_text())["runs"]
    hit = runs["scratch-all-none-w0-s0"]
    assert hit["status"] == "finished" and hit["resumed"] is True and hit["pid"] != killed[0]  # another worker went on
    assert {r["pid"] for r in runs.values()} & {os.getpid()} == set()  # trained on the workers, not here
    rep = write_report(out, quiet=True)  # diag report works the same afterwards
    assert [(s["init"], s["seeds"]) for s in rep["summary"]] == [("scratch", 2)]


def test_a_run_whose_worker_dies_with_no_retry_left_is_reported_and_resumed_next_time(ds, tmp_path):
    out = tmp_path / "cmp"
    kw = dict(inits=["scratch"], seeds=[0, 1], budgets=[0], warmups=[0], overrides=OVER, quiet=True)
    with _cluster(allowed_failures=0) as cluster, distributed.Client(cluster) as client:
        stop = _kill_worker_running(client, out / "scratch-all-none-w0-s1")
        try:
            with pytest.raises(DiagError, match=r"1 of 2 runs failed \(scratch-all-none-w0-s1: its workers died"):
                compare(ds, out, cluster=cluster.scheduler_address, **kw)
        finally:
            assert stop(), "the run finished before a worker could be killed"
        rec = json.loads((out / "compare.json").read_text())
        assert list(rec["failed"]) == ["scratch-all-none-w0-s1"] and rec["runs"]["scratch-all-none-w0-s0"]["status"] == "finished"
        compare(ds, out, cluster=cluster.scheduler_address, **kw)  # the same command again: resumed, finished
    rec = json.loads((out / "compare.json").read_text())
    assert rec["failed"] == {} and rec["runs"]["scratch-all-none-w0-s1"]["resumed"] is True


def test_no_scheduler_at_the_address_is_one_line(ds, tmp_path):
    with pytest.raises(DiagError, match=r"--cluster tcp://127.0.0.1:9: no Dask scheduler answers there"):
        compare(ds, tmp_path / "c", inits=["scratch"], seeds=[0], cluster="tcp://127.0.0.1:9", quiet=True,
                overrides=["compare.retries=0"])
