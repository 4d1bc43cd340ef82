"""Engines, sessions and migrations.

:func:`make_engine` opens SQLite (WAL journal, foreign keys on, a busy timeout) or PostgreSQL
(through psycopg 3, with a lock timeout); on both, a lock that another connection holds past
the timeout is a :class:`~crowdtune.store.errors.BusyError`, whatever statement met it.
:func:`upgrade` brings a database to the newest schema by running the Alembic migrations
shipped inside the package, with no ``alembic.ini``, so it works from an installed wheel as
well as from a checkout.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from crowdtune.store.errors import BusyError, LostRaceError, UnusableDatabaseError
from crowdtune.validation import check_choice

#: Where the store lives when no URL is given: a file in the working directory.
DEFAULT_URL = "sqlite:///./crowdtune.db"
#: How long a statement waits for a lock another connection holds before the store gives up
#: with :class:`~crowdtune.store.errors.BusyError`, in milliseconds: SQLite's busy timeout (and
#: this process's write lock, :func:`write_lock`), PostgreSQL's ``lock_timeout``.
BUSY_TIMEOUT_MS = 30_000
#: Errors of a lock that stayed held: SQLite's primary result codes SQLITE_BUSY and
#: SQLITE_LOCKED (extended codes keep them in the low byte), PostgreSQL's SQLSTATEs
#: lock_not_available (a lock_timeout ran out), serialization_failure and deadlock_detected.
SQLITE_BUSY_CODES = (5, 6)
POSTGRES_BUSY_STATES = ("55P03", "40001", "40P01")
#: SQLite's ``synchronous`` setting: ``FULL`` (the default) or ``NORMAL``. FULL fsyncs every
#: commit: a committed (acknowledged) vote survives the process being killed and the machine
#: losing power; group commit (:mod:`crowdtune.store.group_commit`) shares one fsync among the
#: votes of a batch. In WAL mode NORMAL syncs at checkpoints, not at every commit: a committed
#: transaction survives the server process being killed, but the last ones may roll back if
#: the machine loses power (or the operating system crashes).
SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")
DEFAULT_SQLITE_SYNCHRONOUS = "FULL"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Execution option naming how a SQLite transaction begins ("DEFERRED" or "IMMEDIATE"). A writer
# that reads first (assignment) begins IMMEDIATE: it takes the write lock up front, so two
# writers queue on the busy timeout instead of one failing when it upgrades its read lock.
SQLITE_BEGIN = "crowdtune_sqlite_begin"


def normalize_url(url: str | URL | None = None) -> URL:
    """Parse a database URL; ``postgresql://`` and ``postgres://`` get the psycopg 3 driver.

    Raises
    ------
    ValueError
        The URL cannot be parsed, or names a database other than SQLite or PostgreSQL.
    """
    text = DEFAULT_URL if url is None else url
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(
            f"not a database URL: {str(text)!r} ({exc}); expected e.g. {DEFAULT_URL} or "
            "postgresql+psycopg://user@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql") and "+" not in parsed.drivername:
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise ValueError(
            f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)!r};"
            " use sqlite:///FILE or postgresql+psycopg://user@host/dbname"
        )
    return parsed


def _configure_sqlite(engine: Engine, synchronous: str, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, say when transactions begin (see on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL: readers never block the writer and the writer never blocks readers.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def _configure_postgres(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Without a lock_timeout a statement waits for a lock for ever (and its request with it).
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {busy_timeout_ms}")
            # A commit returns once its WAL record is on disk (PostgreSQL's default, stated
            # here so that a server configured otherwise cannot lose acknowledged votes).
            cursor.execute("SET synchronous_commit = on")
        dbapi_connection.commit()


def is_busy(error: BaseException) -> bool:
    """Whether a driver's error says a lock stayed held by another connection (see
    :data:`SQLITE_BUSY_CODES`, :data:`POSTGRES_BUSY_STATES`).

    >>> import sqlite3
    >>> error = sqlite3.OperationalError("database is locked")
    >>> error.sqlite_errorcode = 5
    >>> is_busy(error), is_busy(ValueError("database is locked"))
    (True, False)
    """
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in SQLITE_BUSY_CODES
    return getattr(error, "sqlstate", None) in POSTGRES_BUSY_STATES


def _raise_busy(engine: Engine, busy_timeout_ms: int) -> None:
    """Make every busy error of ``engine`` a :class:`BusyError`, in one place: whichever
    statement, commit or connection meets a held lock, callers see one error (503 in the
    server) instead of the driver's (500)."""

    @event.listens_for(engine, "handle_error")
    def on_error(context: ExceptionContext) -> None:
        error = context.original_exception
        if is_busy(error):
            # Raised here, SQLAlchemy cleans up (rolls back, invalidates) and lets it through.
            raise BusyError(
                f"the database is busy: another connection held a lock for more than "
                f"{busy_timeout_ms / 1000:g} s ({str(error).strip()}); try again"
            ) from error


def sqlite_synchronous_mode(value: str) -> str:
    """``value`` as a :data:`SQLITE_SYNCHRONOUS` mode (any case); ``ValueError`` otherwise."""
    mode = value.upper()
    check_choice(mode, SQLITE_SYNCHRONOUS, "sqlite_synchronous")
    return mode


def busy_timeout(milliseconds: int) -> int:
    """``milliseconds`` as a busy timeout (a positive integer); ``ValueError`` otherwise."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or milliseconds < 1:
        raise ValueError(f"the busy timeout must be a positive number of ms, got {milliseconds!r}")
    return milliseconds


def in_memory(url: URL) -> bool:
    """Whether a (normalized) URL names an in-memory SQLite database."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


class _WriterLock:
    """The write lock of one SQLite engine: this process's threads take a Python lock in turn,
    then (a file database) an exclusive ``flock`` on :func:`lock_file_path`, which the kernel
    queues between processes and frees when a holder dies."""

    def __init__(self, timeout: float, path: Path | None) -> None:
        self.timeout = timeout
        self.path = path
        self.threads = threading.Lock()
        self._fd: int | None = None

    def acquire(self) -> None:
        if not self.threads.acquire(timeout=self.timeout):
            raise BusyError(
                f"the database is busy: other writers of this process held it for more than "
                f"{self.timeout:g} s; try again"
            )
        if self.path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            # Blocks in the kernel until the other process's transaction ends: no polling. A
            # holder holds it for one transaction; one that dies releases it with its files.
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self.threads.release()
            raise

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self.threads.release()


# The write lock of each SQLite engine (see write_lock).
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, _WriterLock] = weakref.WeakKeyDictionary()


def lock_file_path(url: URL) -> Path | None:
    """The file beside a SQLite database whose lock every crowdtune process takes around its
    write transactions (``crowdtune.db`` -> ``crowdtune.db.lock``); None for an in-memory
    database or another backend."""
    if url.get_backend_name() != "sqlite" or in_memory(url):
        return None
    assert url.database is not None
    return Path(url.database).with_name(Path(url.database).name + ".lock")


@contextmanager
def write_lock(bind: Engine | Connection) -> Iterator[None]:
    """Hold the write lock of a SQLite database for the block; a no-op otherwise.

    SQLite lets one writer in at a time, and a writer that finds the database locked polls with
    growing sleeps (up to 100 ms) until the busy timeout: under 50 concurrent requests the lock
    sits free while the waiters sleep, and throughput falls to a few writes per second. Waiting
    on a lock instead hands the database from one writer to the next at once: this process's
    writers queue on a Python lock, and crowdtune processes (``serve --workers N``, the CLI,
    the job worker) on an exclusive ``flock`` of :func:`lock_file_path`, queued by the kernel.
    The busy timeout still arbitrates with programs that do not take it (the ``sqlite3`` shell).

    Raises
    ------
    BusyError
        This process's other writers held it past the engine's busy timeout
        (:func:`make_engine`).
    """
    lock = _WRITE_LOCKS.get(bind.engine)
    if lock is None:
        yield
        return
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def savepoint(connection: Connection, name: str) -> Iterator[None]:
    """Run the block in a savepoint of the transaction open on ``connection``: released when
    the block ends, rolled back (and released) when it raises, so that what the block wrote
    goes away and the transaction goes on.

    The statements go straight to the driver's cursor: SQLAlchemy's ``begin_nested()``
    compiles them anew each time, and its execution costs more than SQLite's, so on the
    server's hot path two savepoints cost more than the statements of a vote. ``name`` must be
    an SQL identifier; nested savepoints need different names.
    """
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            cursor.execute(f"RELEASE SAVEPOINT {name}")
            raise
        cursor.execute(f"RELEASE SAVEPOINT {name}")
    finally:
        cursor.close()


#: How often :func:`retrying` runs an operation that keeps losing races.
RACE_ATTEMPTS = 20

Result = TypeVar("Result")


def retrying(
    connection: Connection,
    operation: Callable[[Connection], Result],
    *,
    attempts: int = RACE_ATTEMPTS,
) -> Result:
    """``operation(connection)`` in a savepoint (:func:`savepoint`), run again while it
    raises :class:`~crowdtune.store.errors.LostRaceError` (its writes rolled back each time),
    at most ``attempts`` times; then that error goes to the caller. Any other error rolls the
    savepoint back and goes to the caller at once, leaving the transaction usable.

    One savepoint serves both: the group commit's isolation of each operation and the retry of
    a lost race, which on PostgreSQL saves two round trips per request.
    """
    for attempt in range(attempts):
        try:
            with savepoint(connection, "crowdtune_operation"):
                return operation(connection)
        except LostRaceError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def make_engine(
    url: str | URL | None = None,
    *,
    sqlite_synchronous: str = DEFAULT_SQLITE_SYNCHRONOUS,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url`` (default :data:`DEFAULT_URL`), set up for concurrent use.

    SQLite connections use the WAL journal with ``synchronous`` = ``sqlite_synchronous`` (see
    :data:`SQLITE_SYNCHRONOUS`) and enforce foreign keys; PostgreSQL goes through psycopg 3
    with ``pool_pre_ping`` and ``synchronous_commit = on``. On both a statement waits up to
    ``busy_timeout_ms`` for a lock another connection holds, then raises :class:`BusyError`.
    Extra keyword arguments go to :func:`sqlalchemy.create_engine`.

    Raises
    ------
    ValueError
        As :func:`normalize_url`, an unknown ``sqlite_synchronous``, or a busy timeout that is
        not a positive number of milliseconds.
    """
    parsed = normalize_url(url)
    synchronous = sqlite_synchronous_mode(sqlite_synchronous)
    busy_timeout_ms = busy_timeout(busy_timeout_ms)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine, synchronous, busy_timeout_ms)
        _WRITE_LOCKS[engine] = _WriterLock(busy_timeout_ms / 1000, lock_file_path(parsed))
    else:
        engine = create_engine(parsed, pool_pre_ping=True, **kwargs)
        _configure_postgres(engine, busy_timeout_ms)
    _raise_busy(engine, busy_timeout_ms)
    return engine


def database_name(url: str | URL) -> str:
    """How messages name a database: a SQLite file by its path, else the URL without its
    password."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}" if not in_memory(parsed) else "in-memory SQLite"
    return parsed.render_as_string(hide_password=True)


def check_database(url: str | URL | None = None, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
    """Check that a database can be served: it opens, a SQLite file is intact (``PRAGMA
    quick_check``, which reads every page: seconds for a large file) and it takes writes.

    The write check creates a table in a transaction that is rolled back, so nothing is left
    behind: on SQLite in the file itself (a file opened read-only, or on a read-only disk,
    fails), on PostgreSQL a temporary table (no right to create tables in the schema needed;
    a read-only server or ``default_transaction_read_only`` fails). File permissions alone
    say little (root may write any file), so the check writes.

    Raises
    ------
    UnusableDatabaseError
        Naming the database (:func:`database_name`) and what failed.
    ValueError
        As :func:`normalize_url`.
    """
    parsed = normalize_url(url)
    name = database_name(parsed)
    sqlite = parsed.get_backend_name() == "sqlite"
    engine = make_engine(parsed, busy_timeout_ms=busy_timeout_ms, poolclass=NullPool)
    stage = "cannot be opened"
    try:
        with engine.connect() as connection:
            if sqlite:
                stage = "cannot be read"
                found = connection.exec_driver_sql("PRAGMA quick_check").scalars().all()
                if found != ["ok"]:
                    # One row per problem, or one row of many lines: the first few are enough.
                    lines = [line for row in found for line in str(row).splitlines()]
                    shown = "; ".join(lines[:4]) + ("; ..." if len(lines) > 4 else "")
                    raise UnusableDatabaseError(
                        f"{name} is damaged (PRAGMA quick_check: {shown}); restore it from a backup"
                    )
                connection.rollback()
            stage = "cannot be written"
            table = "TEMPORARY TABLE" if not sqlite else "TABLE"
            with connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin() as write:
                connection.exec_driver_sql(f"CREATE {table} crowdtune_write_check (x INTEGER)")
                connection.exec_driver_sql("INSERT INTO crowdtune_write_check VALUES (1)")
                write.rollback()
    except BusyError as exc:
        raise UnusableDatabaseError(f"{name} {stage}: {exc}") from exc
    except DBAPIError as exc:
        reason = str(exc.orig).strip()
        if "malformed" in reason or "not a database" in reason:
            reason += "; the file is damaged, restore it from a backup"
        elif "readonly" in reason or "read-only" in reason:
            reason += "; check the file's and its folder's permissions, and the disk"
        raise UnusableDatabaseError(f"{name} {stage}: {reason}") from exc
    finally:
        engine.dispose()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of crowdtune."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS}"
    return head


def _engine(target: str | URL | Engine | None) -> tuple[Engine, bool]:
    if isinstance(target, Engine):
        return target, False
    return make_engine(target), True


def upgrade(target: str | URL | Engine | None = None, revision: str = "head") -> str | None:
    """Migrate a database to ``revision`` (default: the newest); a no-op when it is there.

    Parameters
    ----------
    target
        A URL (default :data:`DEFAULT_URL`) or an engine from :func:`make_engine`.
    revision
        An Alembic revision id or ``"head"``.

    Returns
    -------
    str or None
        The revision the database is at afterwards.
    """
    return _migrate(target, command.upgrade, revision)


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite: foreign keys off while the block runs, on again after it.

    A migration that changes a column rebuilds its table on SQLite (Alembic's batch mode: copy,
    drop, rename), and dropping a table that other rows refer to fails while foreign keys are
    on. SQLite's procedure for such changes turns them off around the transaction (the pragma
    does nothing inside one) and checks them before committing (:func:`_check_foreign_keys`).
    Other databases: nothing to do.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys = OFF")  # autocommit mode: outside any transaction
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def _check_foreign_keys(connection: Connection) -> None:
    """SQLite: raise (rolling the migration back) if any row refers to a row that is missing."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(
            f"the migration left {len(broken)} row(s) referring to missing rows "
            f"(first: table {broken[0][0]}, row {broken[0][1]}); nothing was changed"
        )


def downgrade(target: str | URL | Engine | None, revision: str) -> str | None:
    """Migrate a database back to ``revision`` (an Alembic revision id), with the same
    foreign-key handling as :func:`upgrade`; what the newer schema holds and the older cannot
    is lost (each migration's ``downgrade`` says what). Returns the revision it is at."""
    return _migrate(target, command.downgrade, revision)


def _migrate(
    target: str | URL | Engine | None, step: Callable[[Config, str], None], revision: str
) -> str | None:
    """Run Alembic's ``step`` (upgrade or downgrade) to ``revision`` in one transaction with
    foreign keys off on SQLite (:func:`_foreign_keys_off`), checked before the commit; the
    revision the database is at afterwards."""
    engine, owned = _engine(target)
    try:
        config = _alembic_config()
        with engine.connect() as connection, _foreign_keys_off(connection):
            with connection.begin():
                # env.py runs the migrations on this connection (and so with our pragmas).
                config.attributes["connection"] = connection
                step(config, revision)
                _check_foreign_keys(connection)
        return current_revision(engine)
    finally:
        if owned:
            engine.dispose()


def current_revision(target: str | URL | Engine | None = None) -> str | None:
    """The migration a database is at (None for an empty database)."""
    engine, owned = _engine(target)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        if owned:
            engine.dispose()
