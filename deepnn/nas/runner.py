"""A crash-safe, resumable, parallel architecture search over :class:`ChildSpace` (lecture item C20):
REINFORCE (Zoph & Le 2017) or random search, each child a short ``deepnn train nas_child`` run.

The search folder ``SEARCH/`` holds:

* ``settings.json``: the search settings and the children's training config (written once, first);
* ``trials.jsonl``: one JSON line per finished trial, appended as it ends (write, flush, ``os.fsync``):
  ``trial``, ``arch`` (the ``nas_child`` string), ``reward``, ``val_accuracy``, ``params``, ``flops``,
  ``time_s`` (the child's own time), ``wall_s`` (search time when it ended), ``worker``, ``seed``,
  ``failure`` (``None`` or why the reward is 0), ``cached``, ``update``, ``entropy`` (of the controller
  that sampled it; ``None`` for random search), ``redrawn`` (architectures over the size limits drawn and
  dropped before this one, with ``over_budget="redraw"``);
* ``controller.safetensors``: the controller's weights, Adam's state, the sampling generator's state,
  the baseline and the next trial, written atomically (temporary file, fsync, rename) after every
  update. Tensors and JSON metadata only: nothing is unpickled on resume.

Trials come in *updates* of ``archs_per_update`` architectures: the controller samples them, the
children train (serially or on ``workers`` processes), then one REINFORCE step on the batch. A search
killed at any moment resumes from the last saved update: the controller samples the same batch again
(same weights, same generator state), trials of it already in ``trials.jsonl`` are taken from there,
the others are trained; so no trial is lost or repeated. Child ``t`` trains with seed
:func:`child_seed` ``(seed, t)`` and the data split depends only on the search seed, so a parallel
search writes the same records as a serial one, order aside (``time_s``, ``wall_s``, ``worker`` aside).

Where the children train is the *backend*, a choice of :func:`run_search` (``--backend``) that changes
no record; only the dispatch differs (:class:`Backend`: jobs in, records out as each child ends), the
recording, caching and resuming above are one code path for all:

* ``"local"`` (default): in this process (``workers=1``) or in ``workers`` spawned processes
  (:class:`concurrent.futures.ProcessPoolExecutor`), one torch thread each;
* ``"ray"``: each child is a Ray task (``num_cpus=1``, one torch thread) calling the same
  :func:`evaluate_child`, on an existing cluster (``ray.init(address=...)``, the address from
  ``ray_address`` or ``RAY_ADDRESS``) or, without one, on a local Ray instance of ``workers`` CPUs;
  at most ``workers`` tasks are in flight and the driver appends their records as they finish
  (``ray.wait``). Ray schedules the tasks; nothing here places them. Ray is an optional extra
  (``pip install 'deepnn[ray]'``). A job carries the children's config, not the data: every Ray
  node loads the data itself as ``deepnn train`` does there, so set ``DEEPNN_DATA`` (or
  ``data.data_dir``) to a folder holding it on every node, and install deepnn there too.

A search started with one backend may be resumed with the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..train.config import Config
from .controller import ChildSpace, Controller

TRIALS, SETTINGS, STATE = "trials.jsonl", "settings.json", "controller.safetensors"
STRATEGIES = ("rl", "random")
BACKENDS = ("local", "ray")
OVER_BUDGET = ("fail", "redraw")
MAX_DRAWS = 10_000  # redraws of one trial before a search whose limits nothing fits is stopped


@dataclass
class SearchSettings:
    """What a search is, apart from the children's training config (see the module docstring).

    Attributes:
        trials: children to evaluate in all.
        strategy: ``"rl"`` (the controller, REINFORCE) or ``"random"`` (uniform over the same space).
        seed: seeds the controller, its samples, the data split and every child (with its trial index).
        workers: child trainings at once (local processes, or Ray tasks in flight, one torch thread each);
            no effect on the results.
        archs_per_update: architectures per controller update (the batch of one REINFORCE step).
        controller_lr, entropy_weight, baseline_decay, hidden_size: the controller's Adam learning rate,
            entropy bonus ``β``, moving-average decay ``d`` of the baseline and LSTM width ``H``.
        max_params: children with more parameters are not trained (reward 0, failure logged).
        max_flops: children with more FLOPs per image (:func:`~deepnn.analysis.summarize_model`'s count) are
            not trained either; ``None``: no limit. With both limits set to a hand-designed model's size, the
            search looks only among architectures no larger and no costlier than it.
        over_budget: what happens to an architecture over ``max_params`` or ``max_flops``: ``"fail"``, it is a
            trial with reward 0 and its reason logged (the controller learns to avoid it); ``"redraw"``, it never
            becomes a trial: the controller (or random search) draws again until an architecture fits, so every
            trial is a trained child and random search is uniform over the architectures that fit. The controller
            learns from the architectures it kept (REINFORCE on its policy restricted to the budget, the
            normalizer's gradient left out); each record counts the draws it replaced in ``redrawn``.
        space: the :class:`ChildSpace` fields.
    """

    trials: int = 100
    strategy: str = "rl"
    seed: int = 0
    workers: int = 1
    archs_per_update: int = 4
    controller_lr: float = 0.03
    entropy_weight: float = 0.001
    baseline_decay: float = 0.8
    hidden_size: int = 32
    max_params: int = 1_000_000
    max_flops: int | None = None
    over_budget: str = "fail"
    space: dict[str, Any] = field(default_factory=lambda: dataclasses.asdict(ChildSpace()))

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        for name in ("trials", "workers", "archs_per_update", "hidden_size", "max_params"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.over_budget not in OVER_BUDGET:
            raise UserError(f"--over-budget must be one of {', '.join(OVER_BUDGET)}, got {self.over_budget!r}")
        if self.max_flops is not None and self.max_flops < 1:
            raise UserError(f"max-flops must be at least 1, got {self.max_flops}")
        if self.controller_lr <= 0:
            raise UserError(f"controller-lr must be positive, got {self.controller_lr}")
        if not 0 <= self.baseline_decay < 1:
            raise UserError(f"baseline-decay must lie in [0, 1), got {self.baseline_decay}")
        self.child_space()

    def child_space(self) -> ChildSpace:
        return ChildSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.space.items()})


def proxy_config() -> Config:
    """The children's default training: the proxy task. One epoch on the first 5,000 training images
    (batch 64, AdamW 0.01), validation on 2,000 held-out training images, one CPU thread, no progress
    bar. ``--config`` / ``--set`` change it as they change ``deepnn train``."""
    cfg = Config()
    cfg.model.name = "nas_child"
    cfg.data.train_subset, cfg.data.val_size, cfg.data.batch_size = 5000, 2000, 64
    cfg.optim.lr = 0.01
    cfg.train.epochs, cfg.train.threads, cfg.train.progress, cfg.train.device = 1, 1, False, "cpu"
    return cfg


def child_seed(seed: int, trial: int) -> int:
    """The seed of child ``trial`` of a search seeded ``seed``: the same in every worker and every run."""
    return int.from_bytes(hashlib.sha256(f"deepnn-nas/{seed}/{trial}".encode()).digest()[:4], "little") >> 1


# --------------------------------------------------------------------------- children


_DATA: dict[tuple, Any] = {}


def _data(cfg: Config, seed: int) -> Any:
    """The search's data (one copy per process): the validation split depends on the search seed only."""
    from ..data import load_image_data

    key = (cfg.data.name, cfg.data.data_dir, cfg.data.val_size, seed)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_image_data(cfg.data.name, data_dir=cfg.data.data_dir, val_size=cfg.data.val_size, seed=seed)
    return _DATA[key]


def _failure_of(e: BaseException) -> str | None:
    """The logged reason when ``e`` is a child's failure (reward 0), ``None`` when it is a bug to raise."""
    if isinstance(e, UserError):
        return (str(e).splitlines()[0] if str(e) else type(e).__name__)[:300]
    oom = getattr(torch, "OutOfMemoryError", ())
    if (oom and isinstance(e, oom)) or isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        return "out of memory"
    return None


def child_size(arch: str, data: Any) -> tuple[int, int]:
    """``(parameters, FLOPs per image)`` of the ``nas_child`` ``arch`` on ``data``'s images and classes
    (:func:`~deepnn.analysis.summarize_model`, built on the meta device)."""
    from ..analysis.summary import summarize_model

    c, h, _ = data.input_shape
    s = summarize_model("nas_child", (c, h, h), arch=arch, num_classes=len(data.classes))
    return s.params, s.flops


def over_budget(params: int, flops: int, max_params: int, max_flops: int | None) -> str | None:
    """Why a child of ``params`` parameters and ``flops`` FLOPs is over the search's limits, or ``None``."""
    if params > max_params:
        return f"too many parameters ({params:,} > max_params {max_params:,})"
    if max_flops is not None and flops > max_flops:
        return f"too many FLOPs ({flops:,} > max_flops {max_flops:,})"
    return None


def evaluate_child(job: dict[str, Any]) -> dict[str, Any]:
    """Train one child and return its trial record (without ``wall_s``); runs in any process.

    ``job``: ``trial``, ``arch``, ``seed`` (the child's), ``search_seed``, ``config`` (the children's
    config as a dict), ``max_params``, ``max_flops`` (``None``: no limit). The child is ``nas_child`` with
    ``model.args.arch`` = ``arch``, trained by :func:`~deepnn.runs.build_training` as ``deepnn train``
    would; its reward is its best validation accuracy. Too many parameters or FLOPs, NaN/inf losses, out of memory
    or any :class:`~deepnn.errors.UserError` give reward 0 and a ``failure`` reason.
    """
    from ..runs import build_training

    start = time.perf_counter()
    cfg = Config.from_dict(job["config"], "search settings")
    cfg.model.args = {**cfg.model.args, "arch": job["arch"]}
    cfg.train.seed = job["seed"]
    record: dict[str, Any] = {"trial": job["trial"], "arch": job["arch"], "reward": 0.0, "val_accuracy": None,
                              "params": None, "flops": None, "time_s": 0.0, "worker": f"pid{os.getpid()}",
                              "seed": job["seed"], "failure": None, "cached": False}
    data = _data(cfg, job["search_seed"])  # a missing dataset stops the search: it is no child's failure
    try:
        with torch.random.fork_rng(devices=[]):
            record["params"], record["flops"] = child_size(job["arch"], data)
            reason = over_budget(record["params"], record["flops"], job["max_params"], job.get("max_flops"))
            if reason is not None:
                raise UserError(reason)
            trainer = build_training(cfg, data=data).trainer
            trainer.fit()
            if trainer.best_val is None or not math.isfinite(trainer.best_val):
                raise UserError("no validation accuracy (is data.val_size 0?)")
            record["val_accuracy"] = record["reward"] = float(trainer.best_val)
    except Exception as e:  # noqa: BLE001 - a failing child is a result; anything else is re-raised
        reason = _failure_of(e)
        if reason is None:
            raise
        record["failure"] = reason
    record["time_s"] = round(time.perf_counter() - start, 3)
    return record


def _init_worker() -> None:
    torch.set_num_threads(1)


def _init_local_worker(parent: int) -> None:
    """A local pool worker: one torch thread, and exit as soon as the search process ``parent`` is gone
    (killed with SIGKILL or SIGTERM, the pool cannot tell its workers; without this they would stay,
    holding their memory, until the child they train ends or forever when idle)."""
    import threading

    _init_worker()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _evaluate_child_on_ray(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`evaluate_child` inside a Ray task: one torch thread, and the node's host name in ``worker``
    (process ids repeat across machines)."""
    import socket

    _init_worker()
    record = evaluate_child(job)
    record["worker"] = f"{socket.gethostname()}/{record['worker']}"
    return record


# --------------------------------------------------------------------------- the record


def read_trials(folder: Path, repair: bool = False) -> list[dict[str, Any]]:
    """The records of ``folder/trials.jsonl``. A last line cut short by a crash is dropped (and, with
    ``repair``, cut from the file so that the next record starts on a fresh line)."""
    path = folder / TRIALS
    if not path.is_file():
        return []
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    if repair and len(complete) != len(raw):
        with open(path, "r+b") as f:
            f.truncate(len(complete))
            os.fsync(f.fileno())
    records = []
    for n, line in enumerate(complete.decode().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{path}: line {n} is not JSON; the record was edited: repair or remove it") from None
    return records


def append_trial(folder: Path, record: dict[str, Any]) -> None:
    """Append one record as a JSON line and make it durable before returning (write, flush, fsync)."""
    with open(folder / TRIALS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file, fsync it, rename it over ``path``, fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class SearchState:
    """Everything a search continues from: controller, optimizer, generator, baseline, next trial."""

    controller: Controller | None
    optimizer: torch.optim.Optimizer | None
    generator: torch.Generator | None
    baseline: float | None = None
    next_trial: int = 0
    update: int = 0
    elapsed_s: float = 0.0

    @classmethod
    def fresh(cls, settings: SearchSettings) -> SearchState:
        if settings.strategy == "random":
            return cls(None, None, None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            controller = Controller(settings.child_space(), settings.hidden_size)
        optimizer = torch.optim.Adam(controller.parameters(), lr=settings.controller_lr)
        return cls(controller, optimizer, torch.Generator().manual_seed(settings.seed))

    def tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.controller is not None:
            out.update({f"model.{k}": v.detach().clone() for k, v in self.controller.state_dict().items()})
            for i, st in self.optimizer.state_dict()["state"].items():
                for name, value in st.items():
                    out[f"optim.{i}.{name}"] = torch.as_tensor(value).clone()
            out["generator"] = self.generator.get_state()
        return out

    def meta(self) -> dict[str, Any]:
        groups = self.optimizer.state_dict()["param_groups"] if self.optimizer is not None else None
        return {"baseline": self.baseline, "next_trial": self.next_trial, "update": self.update,
                "elapsed_s": self.elapsed_s, "param_groups": groups}

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        tensors = self.tensors() or {"empty": torch.zeros(0)}
        _atomic(folder / STATE, lambda p: save_file(tensors, str(p), metadata={"search": json.dumps(self.meta())}))

    @classmethod
    def load(cls, folder: Path, settings: SearchSettings) -> SearchState:
        from safetensors import safe_open

        path = folder / STATE
        state = cls.fresh(settings)
        if not path.is_file():
            return state  # killed before the first update: start from the seeded controller
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["search"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read the search state {path} ({e}); the folder is damaged") from None
        state.baseline, state.next_trial, state.update = meta["baseline"], meta["next_trial"], meta["update"]
        state.elapsed_s = meta["elapsed_s"]
        if state.controller is not None:
            state.controller.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            opt: dict[str, Any] = {"state": {}, "param_groups": meta["param_groups"]}
            for k, v in tensors.items():
                if k.startswith("optim."):
                    _, i, name = k.split(".", 2)
                    opt["state"].setdefault(int(i), {})[name] = v
            state.optimizer.load_state_dict(opt)
            state.generator.set_state(tensors["generator"])
        return state


# --------------------------------------------------------------------------- the search


def check_folder(out: Path, resume: bool) -> None:
    """Before the first trial: a new search needs an empty or missing folder, a resumed one its own."""
    if resume:
        if not (out / SETTINGS).is_file():
            raise UserError(f"--resume: {out} holds no search ({SETTINGS} missing); drop --resume to start one there")
        return
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the search")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; pass --resume to continue the search there, or choose a new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e}); choose a writable folder") from None


class Backend:
    """Where the children train: the one thing that differs between ``--backend local`` and ``ray``.

    :meth:`run` takes the jobs of one batch (the dicts :func:`evaluate_child` takes) and yields their
    records as each child ends, in any order; :meth:`close` frees the workers (also after an error).
    """

    def run(self, jobs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Train the children of ``jobs``; yield each record when its child ends."""
        for job in jobs:
            yield evaluate_child(job)

    def close(self) -> None:
        """Free the workers; pending children are dropped (a resumed search trains them)."""


class LocalPool(Backend):
    """``workers`` spawned processes, one torch thread each (:class:`ProcessPoolExecutor`)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing as mp

        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_local_worker,
                                        initargs=(os.getpid(),))

    def run(self, jobs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        futures: list[Future] = [self.pool.submit(evaluate_child, job) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`UserError` naming the install command."""
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray, which is not installed; fix: pip install 'deepnn[ray]'") from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise a one-line :class:`UserError` unless something accepts a TCP connection at a Ray address
    ``HOST:PORT`` (or ``ray://HOST:PORT``) within ``timeout_s``; ``ray.init`` itself retries a wrong
    address for minutes before it fails. Other forms (``auto``, ``local``) are left to Ray."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"nothing answers at the Ray address {address} ({e.strerror or type(e).__name__}); check "
                        f"--ray-address / RAY_ADDRESS (`ray status` on the head node prints it)") from None


class RayPool(Backend):
    """Each child a Ray task (``num_cpus=1``), at most ``workers`` in flight; Ray places them.

    Args:
        workers: tasks in flight at once (and the CPUs of a local instance started here).
        address: the cluster to join (``ray.init(address=...)``); ``None``: ``RAY_ADDRESS``, else a new
            local instance with ``workers`` CPUs, shut down by :meth:`close`. A Ray already initialized in
            this process (``ray.is_initialized()``) is used as it is and left running.
    """

    def __init__(self, workers: int, address: str | None = None) -> None:
        import logging

        ray = self.ray = import_ray()
        self.workers, self.in_flight = workers, []
        self.owned = not ray.is_initialized()
        if self.owned:
            address = address or os.environ.get("RAY_ADDRESS") or None
            try:
                if address:
                    check_reachable(address)
                    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
                else:
                    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"cannot connect to {where} ({first}); check --ray-address / RAY_ADDRESS "
                                f"(`ray status` on the head node prints it)") from None
        self.task = ray.remote(num_cpus=1)(_evaluate_child_on_ray)

    def _get(self, ref: Any) -> dict[str, Any]:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, UserError):  # e.g. a missing dataset on that node: one line, as locally
                raise e.cause from None
            raise

    def run(self, jobs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        queue = list(reversed(jobs))
        while queue or self.in_flight:
            while queue and len(self.in_flight) < self.workers:
                self.in_flight.append(self.task.remote(queue.pop()))
            ready, self.in_flight = self.ray.wait(self.in_flight, num_returns=1)
            yield self._get(ready[0])

    def close(self) -> None:
        for ref in self.in_flight:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - a task that ended meanwhile cannot be cancelled: nothing to do
                pass
        self.in_flight = []
        if self.owned:
            self.ray.shutdown()


def open_backend(backend: str, workers: int, ray_address: str | None = None) -> Backend:
    """The :class:`Backend` named ``backend`` (one of :data:`BACKENDS`) with ``workers`` children at once."""
    if backend == "ray":
        return RayPool(workers, ray_address)
    return LocalPool(workers) if workers > 1 else Backend()


def sample_batch(state: SearchState, settings: SearchSettings, first: int, n: int,
                 fits: Callable[[str], bool] = lambda arch: True
                 ) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor], list[int]]:
    """Architectures of trials ``first .. first + n − 1``: from the controller (with their log-probabilities
    and entropies), or uniformly at random, trial ``t`` from its own generator seeded by ``(seed, t)``; each
    drawn again while ``fits(arch)`` is false (``over_budget="redraw"``). The last list: the draws each
    trial replaced."""
    space = settings.child_space()

    def draw(sample: Callable[[], tuple[list[int], Any, Any]]) -> tuple[str, Any, Any, int]:
        for redrawn in range(MAX_DRAWS):
            tokens, log_prob, entropy = sample()
            arch = space.to_string(tokens)
            if fits(arch):
                return arch, log_prob, entropy, redrawn
        raise UserError(f"no architecture in {MAX_DRAWS:,} draws fits max_params {settings.max_params:,} and "
                        f"max_flops {settings.max_flops}; raise the limits or shrink the space")

    if state.controller is None:
        batch = []
        for t in range(first, first + n):
            g = torch.Generator().manual_seed(child_seed(settings.seed, t) ^ 0x5EED)
            batch.append(draw(lambda g=g: (space.random(g), None, None)))
        return [b[0] for b in batch], [], [], [b[3] for b in batch]
    controller = state.controller
    # a whole batch every time, so a resumed search draws the same
    batch = [draw(lambda: controller.sample(state.generator)) for _ in range(settings.archs_per_update)][:n]
    return [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch], [b[3] for b in batch]


def reinforce_batch(state: SearchState, settings: SearchSettings, rewards: list[float],
                    log_probs: list[torch.Tensor], entropies: list[torch.Tensor]) -> None:
    """One REINFORCE step on a batch (Zoph & Le 2017, eq. 2 with ``m`` architectures)::

        loss = −(1/m) Σ_k (R_k − b) · log p(a_k)  −  β · (1/m) Σ_k H(a_k)

    then the baseline follows the batch's mean reward, ``b ← d·b + (1 − d)·mean R`` (started at the
    first batch's mean)."""
    mean = sum(rewards) / len(rewards)
    baseline = mean if state.baseline is None else state.baseline
    loss = -torch.stack([(r - baseline) * lp for r, lp in zip(rewards, log_probs)]).mean()
    loss = loss - settings.entropy_weight * torch.stack(entropies).mean()
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    state.baseline = settings.baseline_decay * baseline + (1 - settings.baseline_decay) * mean


def run_search(out: str | Path, settings: SearchSettings | None = None, child: Config | None = None, *,
               resume: bool = False, on_trial: Callable[[dict[str, Any], float], None] | None = None,
               backend: str = "local", ray_address: str | None = None) -> list[dict[str, Any]]:
    """Run (or continue, with ``resume``) a search into the folder ``out`` (Zoph & Le 2017, or random search).

    Args:
        out: the search folder: new or empty, or (``resume``) one holding a search.
        settings: the search; a new search writes it and ``child`` to ``settings.json``, a resumed one reads
            them from there (``settings.trials`` / ``workers``, when given, may change).
        child: the children's training config (default :func:`proxy_config`).
        resume: continue the search in ``out`` (started with either backend).
        on_trial: ``on_trial(record, best_so_far)`` is called as each record is appended.
        backend: where children train, ``"local"`` or ``"ray"`` (see the module docstring); the records
            are the same (``time_s``, ``wall_s``, ``worker`` aside).
        ray_address: with ``backend="ray"``, the cluster to join (default ``RAY_ADDRESS``, else a local
            Ray instance of ``settings.workers`` CPUs).

    Returns:
        Every record of the folder's ``trials.jsonl``, by trial.
    """
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "ray":
        import_ray()  # before anything is written
    folder = Path(out)
    check_folder(folder, resume)
    if resume:
        saved = json.loads((folder / SETTINGS).read_text())
        stored = SearchSettings(**saved["search"])
        if settings is not None:
            stored.trials, stored.workers = settings.trials, settings.workers
        settings, child_dict = stored, saved["child"]
    else:
        settings = settings or SearchSettings()
        child = child or proxy_config()
        child.validate()
        child_dict = child.to_dict()
    settings.check()
    data = _data(Config.from_dict(child_dict, "search settings"), settings.seed)  # it exists: before any trial
    fit: dict[str, bool] = {}  # arch -> within the limits

    def fits(arch: str) -> bool:
        if settings.over_budget == "fail":
            return True
        if arch not in fit:
            fit[arch] = over_budget(*child_size(arch, data), settings.max_params, settings.max_flops) is None
        return fit[arch]
    done = {r["trial"]: r for r in read_trials(folder, repair=True)}
    cache: dict[str, dict[str, Any]] = {}
    for r in sorted(done.values(), key=lambda r: r["trial"]):
        if not r["cached"]:
            cache.setdefault(r["arch"], r)
    state = SearchState.load(folder, settings) if resume else SearchState.fresh(settings)
    best = max((r["reward"] for r in done.values()), default=0.0)
    pool = open_backend(backend, settings.workers, ray_address)  # Ray's start-up is no search time
    session_start = time.perf_counter()

    def finish(record: dict[str, Any], extra: dict[int, dict[str, Any]], records: dict[int, dict[str, Any]],
               session_start: float) -> None:
        nonlocal best
        record.update(extra[record["trial"]])
        record["wall_s"] = round(state.elapsed_s + time.perf_counter() - session_start, 3)
        append_trial(folder, record)
        records[record["trial"]] = done[record["trial"]] = record
        best = max(best, record["reward"])
        if on_trial is not None:
            on_trial(record, best)

    try:
        if not resume:  # once the data and the workers are there: a folder left empty can be used again
            _atomic(folder / SETTINGS, lambda p: p.write_text(json.dumps(
                {"search": dataclasses.asdict(settings), "child": child_dict}, indent=1)))
        while state.next_trial < settings.trials:
            first = state.next_trial
            n = min(settings.archs_per_update, settings.trials - first)
            archs, log_probs, entropies, redrawn = sample_batch(state, settings, first, n, fits)
            records: dict[int, dict[str, Any]] = {}
            jobs, repeats = [], []
            for k, arch in enumerate(archs):
                t = first + k
                if t in done:  # finished before a crash: keep it, do not train it again
                    if done[t]["arch"] != arch:
                        raise UserError(f"{folder / TRIALS}: trial {t} is {done[t]['arch']!r} but the restored "
                                        f"controller samples {arch!r}; the folder was edited or mixes two searches")
                    records[t] = done[t]
                elif arch in cache or any(j["arch"] == arch for j in jobs):
                    repeats.append((t, arch))
                else:
                    jobs.append({"trial": t, "arch": arch, "seed": child_seed(settings.seed, t),
                                 "search_seed": settings.seed, "config": child_dict,
                                 "max_params": settings.max_params, "max_flops": settings.max_flops})
            extra = {t: {"update": state.update, "entropy": float(entropies[t - first].detach()) if entropies else None,
                         "redrawn": redrawn[t - first]} for t in range(first, first + n)}

            for record in pool.run(jobs):
                cache.setdefault(record["arch"], record)
                finish(record, extra, records, session_start)
            for t, arch in repeats:
                if t in done:
                    records[t] = done[t]
                    continue
                src = cache[arch]
                finish({**{k: src[k] for k in ("arch", "reward", "val_accuracy", "params", "flops", "failure")},
                        "trial": t, "time_s": 0.0, "worker": "cache", "seed": child_seed(settings.seed, t),
                        "cached": True}, extra, records, session_start)
            if state.controller is not None:
                reinforce_batch(state, settings, [records[first + k]["reward"] for k in range(n)],
                                log_probs, entropies)
            state.next_trial, state.update = first + n, state.update + 1
            state.elapsed_s += time.perf_counter() - session_start
            session_start = time.perf_counter()
            state.save(folder)
    finally:
        pool.close()
    return sorted(read_trials(folder), key=lambda r: r["trial"])
