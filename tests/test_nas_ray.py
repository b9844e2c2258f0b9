"""``deepnn nas search --backend ray`` (deepnn/nas/runner.py): the same trials as Ray tasks, the same records.

One local Ray instance (2 CPUs) serves the module; it is started and stopped through
:class:`~deepnn.nas.runner.RayPool` itself, so the code that starts a local instance is tested too.
The missing-Ray error needs no Ray.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_nas_search import content, tiny_child, tiny_settings

from deepnn.cli import main as cli_main
from deepnn.errors import UserError
from deepnn.nas import read_trials, run_search
from deepnn.nas.runner import RayPool, check_reachable

NO_RAY = "Ray is the optional extra deepnn[ray] (also in deepnn[dev]); without it the local backend is tested alone"


@pytest.fixture(scope="module")
def ray_pool() -> RayPool:
    """A local Ray instance with 2 CPUs, for the whole module; run_search uses it as it is."""
    ray = pytest.importorskip("ray", reason=NO_RAY)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)  # never a cluster the environment points at
        assert not ray.is_initialized()
        pool = RayPool(workers=2)
    assert pool.owned and ray.cluster_resources().get("CPU") == 2
    yield pool
    pool.close()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def local_records(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The reference: the tiny search on the local pool of 2 processes."""
    return run_search(tmp_path_factory.mktemp("local"), tiny_settings(workers=2), tiny_child())


def test_ray_backend_writes_the_local_pool_records(ray_pool: RayPool, local_records: list[dict],
                                                   tmp_path: Path) -> None:
    records = run_search(tmp_path / "ray", tiny_settings(workers=2), tiny_child(), backend="ray")
    assert content(records) == content(local_records)
    assert records == sorted(read_trials(tmp_path / "ray"), key=lambda r: r["trial"])
    trained = {r["worker"] for r in records} - {"cache"}
    assert trained and all("/pid" in w for w in trained)  # host/pid: from Ray workers, not this process


def test_a_local_search_resumes_on_ray_from_the_command_line(ray_pool: RayPool, local_records: list[dict],
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    out = tmp_path / "mixed"
    run_search(out, tiny_settings(trials=3), tiny_child())  # one update, serial, in this process
    code = cli_main(["nas", "search", "--out", str(out), "--resume", "--trials", "6", "--workers", "2",
                     "--backend", "ray", "--quiet"])
    assert code == 0, capsys.readouterr().err
    records = read_trials(out)
    assert sorted(r["trial"] for r in records) == list(range(6))  # none lost, none repeated
    assert all("/pid" in r["worker"] for r in records[3:] if not r["cached"])  # trained on Ray
    assert content(records) == content(local_records)


def test_a_childs_user_error_on_ray_is_one_line(ray_pool: RayPool) -> None:
    job = {"trial": 0, "arch": "3x3-4", "seed": 1, "search_seed": 0, "max_params": 10**6,
           "config": {**tiny_child().to_dict(), "data": {**tiny_child().to_dict()["data"], "name": "no_such_data"}}}
    with pytest.raises(UserError) as err:
        list(ray_pool.run([job]))
    assert "\n" not in str(err.value) and type(err.value) is UserError
    assert ray_pool.in_flight == []


def test_missing_ray_is_a_one_line_error_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UserError, match=r"pip install 'deepnn\[ray\]'"):
        run_search(tmp_path / "s", tiny_settings(), tiny_child(), backend="ray")
    assert not (tmp_path / "s").exists()  # nothing written: the same command works once Ray is installed
    for args, fragment in [(["--backend", "ray"], "pip install 'deepnn[ray]'"),
                           (["--ray-address", "head:6379"], "--ray-address needs --backend ray")]:
        code = cli_main(["nas", "search", "--out", str(tmp_path / "c"), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and fragment in err[0], err
    with pytest.raises(UserError, match="--backend must be one of local, ray"):
        run_search(tmp_path / "s", tiny_settings(), tiny_child(), backend="dask")


def test_a_wrong_ray_address_fails_at_once_in_one_line(tmp_path: Path) -> None:
    # ray.init retries an address where nothing listens for minutes; the search checks it first
    pytest.importorskip("ray", reason=NO_RAY)
    with socket.socket() as s:  # a port nothing listens on: bound, then released
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(UserError, match=f"nothing answers at the Ray address {re.escape(address)}"):
            check_reachable(address, timeout_s=2)
    check_reachable("auto")  # not HOST:PORT: left to Ray
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, "-m", "deepnn", "nas", "search", "--backend", "ray", "--ray-address",
                           f"127.0.0.1:{port}", "--trials", "2", "--out", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=120, env=env)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "nothing answers at the Ray address" in err[0], proc.stderr
    assert not (tmp_path / "s" / "settings.json").exists()
