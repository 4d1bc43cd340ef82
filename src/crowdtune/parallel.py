"""Where independent tasks run: in this process, on local threads or processes, or on Ray.

A backend maps a module-level function over argument tuples and yields the results in the order
of the tasks, whatever order they finish in. Callers seed every task from its index, so a result
never depends on the backend or on how many workers it has.

>>> backend = get_backend("local", workers=1)
>>> list(backend.map(pow, [(2, 3), (3, 2)]))
[8, 9]

To use an existing Ray cluster, install crowdtune (with the ``ray`` extra) on every node, and
pass its address: ``--backend ray --address ray://HEAD:10001`` on the command line, or
``get_backend("ray", address="ray://HEAD:10001")``. ``address="auto"`` joins the cluster this
machine is part of (started with ``ray start --head``). Without an address a local Ray instance
starts with ``num_cpus`` CPUs (default 2).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Protocol

from crowdtune.validation import check_choice

BACKENDS = ("local", "ray")
LOCAL_KINDS = ("process", "thread")


class Backend(Protocol):
    """Runs ``fn(*args)`` for every tuple of ``tasks``; results come back in task order."""

    name: str
    workers: int

    def map(self, fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]]) -> Iterator[Any]: ...


def _limit_threads() -> None:
    # One BLAS thread per worker process: the workers already use every core.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


class LocalBackend:
    """This machine: inline with one worker, else a pool of ``kind`` workers.

    Processes (spawned, one BLAS thread each) suit Python-heavy tasks; threads suit tasks whose
    time goes to NumPy calls that release the GIL, and start instantly.
    """

    name = "local"

    def __init__(self, workers: int = 1, kind: str = "process") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        check_choice(kind, LOCAL_KINDS, "local backend kind")
        self.workers = workers
        self.kind = kind

    def map(self, fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
        if self.workers == 1:
            for args in tasks:
                yield fn(*args)
            return
        pool: Executor
        if self.kind == "thread":
            pool = ThreadPoolExecutor(self.workers)
        else:
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_limit_threads)
        with pool:
            futures = [pool.submit(fn, *args) for args in tasks]
            for future in futures:
                yield future.result()

    def __repr__(self) -> str:
        return f"LocalBackend(workers={self.workers}, kind={self.kind!r})"


class RayBackend:
    """Ray tasks of one CPU each, on a cluster at ``address`` or on a local instance.

    The first use calls ``ray.init(address=...)``, or ``ray.init(num_cpus=num_cpus)`` when no
    address is given; an already initialised Ray is reused as it is.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int = 2) -> None:
        if num_cpus < 1:
            raise ValueError(f"num_cpus must be at least 1, got {num_cpus}")
        self.address = address
        self.num_cpus = num_cpus
        self.workers = num_cpus

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError as error:  # pragma: no cover - ray is in the [all] extra
            raise ImportError('the Ray backend needs ray: pip install "crowdtune[ray]"') from error
        if not ray.is_initialized():
            if self.address is None:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=self.address, log_to_driver=False)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", self.num_cpus)))
        return ray

    def map(self, fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
        ray = self._ray()
        remote = ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(*args) for args in tasks]
        for ref in refs:
            yield ray.get(ref)

    def __repr__(self) -> str:
        return f"RayBackend(address={self.address!r}, num_cpus={self.num_cpus})"


def get_backend(
    name: str = "local", *, workers: int = 1, address: str | None = None, kind: str = "process"
) -> Backend:
    """A backend by name: ``local`` (``workers``, ``kind``) or ``ray`` (``address``, ``workers``
    CPUs for a local instance)."""
    check_choice(name, BACKENDS, "backend")
    if name == "ray":
        return RayBackend(address=address, num_cpus=max(1, workers))
    if address is not None:
        raise ValueError("--address only applies to --backend ray")
    return LocalBackend(workers=workers, kind=kind)
