"""Group commit: concurrent writes queued to one writer that commits them in batches.

A server that commits each vote in a transaction of its own pays one commit (on SQLite with
``synchronous=FULL``, one fsync) per vote, and its writers take turns on the database's lock.
:class:`GroupCommit` runs the operations queued meanwhile (next-task assignments and answers,
each a function of a :class:`~sqlalchemy.Connection`) in one transaction, one savepoint per
operation, and commits once:

- an operation that raises (a 409, a 422, a 403) rolls back its savepoint alone and its caller
  gets that error; the others of the batch go on (one that lost a race with another process,
  :class:`~crowdtune.store.errors.LostRaceError`, is run again:
  :func:`~crowdtune.store.db.retrying`);
- each caller's future resolves only after the batch's commit returned, so nothing is
  acknowledged that is not stored (and, with ``synchronous=FULL``/``synchronous_commit=on``,
  durable);
- a batch whose transaction fails as a whole (the commit, BEGIN, a lost connection) is run
  again from the start, up to :data:`BATCH_ATTEMPTS` times; then every caller of the batch
  gets :class:`CommitFailedError` (503), never a silent loss; a batch that met a lock held
  past the busy timeout is not run again (it waited that long already). Its operations may
  be retried by the client: the idempotency key makes that safe.

While one batch commits, the next requests queue; the writer takes all of them (up to
``max_batch``) as its next batch. Nobody waits for a batch to fill up: under light load a
batch holds one operation, under heavy load many, and the commit cost is shared.

On SQLite each batch holds :func:`~crowdtune.store.db.write_lock` (this process's lock, then a
kernel-queued lock on a file beside the database, shared by every crowdtune process) and begins
``IMMEDIATE``, so the reads inside a batch (the item assignment picks) see the same database as
its writes, whatever other server processes do. On PostgreSQL several writer threads share the
connection pool (``threads``), and row locks and unique constraints keep them apart.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from crowdtune.store.db import SQLITE_BEGIN, retrying, write_lock
from crowdtune.store.errors import BusyError

#: How often a batch whose transaction failed as a whole is run before its callers get 503.
BATCH_ATTEMPTS = 3
#: Most operations one batch holds.
MAX_BATCH = 256

Result = TypeVar("Result")
Operation = Callable[[Connection], Result]


class CommitFailedError(BusyError):
    """The batch holding a write could not be committed (after :data:`BATCH_ATTEMPTS` tries):
    nothing of it was acknowledged; send it again (with the same idempotency key)."""


@dataclass
class _Queued:
    operation: Callable[[Connection], Any]
    future: Future[Any]


class GroupCommit:
    """A writer that runs queued operations in batches, one transaction per batch.

    ``submit`` (from any thread) or ``await run`` (from an event loop) an operation: a function
    of a :class:`~sqlalchemy.Connection` inside the batch's transaction that returns plain data
    (it must not commit, and its result must not need the connection afterwards).

    >>> from sqlalchemy import create_engine, text
    >>> writer = GroupCommit(create_engine("sqlite://"))
    >>> writer.submit(lambda connection: connection.scalar(text("SELECT 1 + 1"))).result()
    2
    >>> writer.close()

    Parameters
    ----------
    engine
        Where the batches run (:func:`~crowdtune.store.make_engine`).
    threads
        Writer threads, each running its own batches (None: one on SQLite, whose writers take
        turns anyway, four on PostgreSQL).
    max_batch
        Most operations in one batch.
    attempts
        How often a batch whose transaction fails as a whole is run (:data:`BATCH_ATTEMPTS`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        threads: int | None = None,
        max_batch: int = MAX_BATCH,
        attempts: int = BATCH_ATTEMPTS,
    ) -> None:
        if threads is None:
            threads = 1 if engine.dialect.name == "sqlite" else 4
        if threads < 1 or max_batch < 1 or attempts < 1:
            raise ValueError(
                f"threads, max_batch and attempts must be at least 1, got {threads}, "
                f"{max_batch}, {attempts}"
            )
        self.engine = engine
        self.max_batch = max_batch
        self.attempts = attempts
        #: Batches committed and operations run, for tests and profiling.
        self.batches = 0
        self.operations = 0
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"crowdtune-group-commit-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, operation: Operation[Result]) -> Future[Result]:
        """Queue ``operation``; its future resolves after the commit of the batch holding it
        (with its result, or with the error it raised, or with :class:`CommitFailedError`)."""
        if self._closed:
            raise RuntimeError("the group commit writer is closed")
        future: Future[Result] = Future()
        self._queue.put(_Queued(operation, future))
        return future

    async def run(self, operation: Operation[Result]) -> Result:
        """``operation``'s result once its batch has committed (see :meth:`submit`); the event
        loop never waits on the database."""
        return await asyncio.wrap_future(self.submit(operation))

    def close(self) -> None:
        """Finish what is queued, then stop the writer threads."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = [first], False
            while len(batch) < self.max_batch:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    stop = True
                    break
                batch.append(queued)
            self._commit([q for q in batch if q.future.set_running_or_notify_cancel()])
            if stop:
                return

    def _commit(self, batch: list[_Queued]) -> None:
        """Run ``batch`` until a transaction of it commits; then resolve every future."""
        if not batch:
            return
        problem: BaseException | None = None
        for _ in range(self.attempts):
            try:
                outcomes = self._run(batch)
            except BusyError as exc:  # it waited the busy timeout already: no second wait
                problem = exc
                break
            except Exception as exc:  # the transaction as a whole failed: run it again
                problem = exc
                continue
            self.batches += 1
            self.operations += len(batch)
            for queued, (ok, value) in zip(batch, outcomes, strict=True):
                if ok:
                    queued.future.set_result(value)
                else:
                    queued.future.set_exception(value)
            return
        # A driver's error says what went wrong without SQLAlchemy's statement and links.
        reason = str(getattr(problem, "orig", None) or problem).strip()
        why = reason if isinstance(problem, BusyError) else (
            f"the database did not commit this write ({reason})"
        )  # fmt: skip
        error = CommitFailedError(
            f"{why}; it was not acknowledged: send it again (with the same Idempotency-Key)"
        )
        for queued in batch:
            queued.future.set_exception(error)

    def _run(self, batch: list[_Queued]) -> list[tuple[bool, Any]]:
        """One transaction: each operation in a savepoint of its own, then one commit."""
        outcomes: list[tuple[bool, Any]] = []
        with write_lock(self.engine), self.engine.connect() as connection:
            connection = connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with connection.begin():
                for queued in batch:
                    try:
                        outcomes.append((True, retrying(connection, queued.operation)))
                    except Exception as exc:  # this operation's own error: it fails alone
                        if not connection.in_transaction():
                            raise  # the savepoint could not be rolled back: the batch failed
                        outcomes.append((False, exc))
        return outcomes
