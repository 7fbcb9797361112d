"""The sweep's Optuna storage: SQLite in the sweep folder or a shared database server.

Several machines may open the same fresh database at once; creating Optuna's tables is then
serialised (a PostgreSQL advisory lock, a file lock for SQLite), because the storage's own
`CREATE TYPE` / `CREATE TABLE` race and the loser dies with a unique-key violation. A server that
cannot be reached, or a driver that is not installed, is one line with the password hidden.
"""

from __future__ import annotations

import fcntl
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import URL, make_url

from recipes.core.errors import RecipeError

CONNECT_SECONDS = 5
LOCK_KEY = 0x5EED_5EED  # the advisory lock every recipes sweep takes around schema changes
DRIVERS = {"psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]", "pymysql": "PyMySQL"}
FIX = "pip install 'training-recipes[postgres]'"


def parse_url(url: str) -> URL:
    """The URL with a driver that is installed: plain postgresql:// uses psycopg 3 if psycopg2 is
    missing (SQLAlchemy's default is psycopg2)."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise RecipeError(
            f"--storage {url!r} is not a database URL; e.g. postgresql://user:password@host/db "
            "or sqlite:///path/optuna.db"
        ) from None
    plain = parsed.drivername == "postgresql" and not importlib.util.find_spec("psycopg2")
    if plain and importlib.util.find_spec("psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def shown(url: URL | str) -> str:
    """The URL as it may be printed: its password replaced by ***."""
    return (make_url(url) if isinstance(url, str) else url).render_as_string(hide_password=True)


def engine_kwargs(url: URL) -> dict:
    """SQLite waits for a busy database; servers give up connecting after a few seconds."""
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 60}}
    return {"connect_args": {"connect_timeout": CONNECT_SECONDS}, "pool_pre_ping": True}


def missing_driver(url: URL) -> RecipeError:
    module = url.get_driver_name()
    package = DRIVERS.get(module, module)
    return RecipeError(
        f"the database driver for {url.drivername} is not installed (module {module}); "
        f"pip install {package}" + (f", or {FIX}" if url.get_backend_name() == "postgresql" else "")
    )


def unreachable(err: Exception, url: URL) -> RecipeError:
    reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    return RecipeError(
        f"cannot open the sweep storage {shown(url)} within {CONNECT_SECONDS} s ({reason}); "
        "start the database server or fix --storage"
    )


@contextmanager
def schema_lock(url: URL, kwargs: dict) -> Iterator[None]:
    """Hold the lock that makes creating (or upgrading) the tables one process at a time."""
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "optuna.db").with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        return
    if url.get_backend_name() != "postgresql":
        yield
        return
    engine = sqlalchemy.create_engine(url, **kwargs)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({LOCK_KEY})"))
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({LOCK_KEY})"))
    finally:
        engine.dispose()


def storage_lock(url: str):
    """The schema lock, for other changes that must be made by one process at a time."""
    parsed = parse_url(url)
    return schema_lock(parsed, engine_kwargs(parsed))


def make_storage(url: str, heartbeat: int) -> RDBStorage:
    """Optuna's RDB storage with a heartbeat: a trial whose process stops beating for twice the
    interval is failed and queued again (RetryHeartbeatStaleTrialCallback), by whichever process
    starts a trial next."""
    parsed = parse_url(url)
    kwargs = engine_kwargs(parsed)
    try:
        with schema_lock(parsed, kwargs):
            return RDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat,
                grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
            )
    except ImportError:  # SQLAlchemy's ModuleNotFoundError, or Optuna's ImportError around it
        raise missing_driver(parsed) from None
    except sqlalchemy.exc.OperationalError as err:
        raise unreachable(err, parsed) from None
