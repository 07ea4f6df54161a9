"""QuestDB over the PostgreSQL wire: a pooled engine and one way to run a query."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg2
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gostream.api import metrics
from gostream.api.queries import PING
from gostream.api.settings import ApiSettings

log = logging.getLogger(__name__)


class Unavailable(RuntimeError):
    """QuestDB cannot answer (down, refusing, or its schema is not there yet)."""


def make_engine(settings: ApiSettings) -> Engine:
    url = URL.create(
        "postgresql+psycopg2",
        username=settings.questdb_user,
        password=settings.questdb_password,
        host=settings.questdb_host,
        port=settings.questdb_pg_port,
        database=settings.questdb_database,
    )
    return create_engine(
        url,
        pool_size=settings.questdb_pool_size,
        max_overflow=settings.questdb_pool_size,
        pool_timeout=5,
        pool_recycle=1800,
        # Reads only: no BEGIN before each query and nothing to roll back after it.
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,
        connect_args={"connect_timeout": settings.questdb_connect_timeout_s, "application_name": "gostream-api"},
    )


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> Sequence[tuple]:
        """Rows of one statement, as tuples. A connection QuestDB dropped (a restart) is
        thrown away and the statement tried once more on a new one; anything that keeps
        QuestDB from answering becomes ``Unavailable``."""
        for attempt in (1, 2):
            try:
                conn = self.engine.connect()
            except (SQLAlchemyError, PoolTimeout) as exc:
                raise self._unavailable(exc) from None
            try:
                # The driver's cursor directly: no result wrapping on the hot path.
                cursor = conn.connection.dbapi_connection.cursor()
                started = time.perf_counter()
                try:
                    cursor.execute(sql, params)
                    return cursor.fetchall()
                finally:
                    metrics.DB_QUERY.observe(time.perf_counter() - started)
                    cursor.close()
            except psycopg2.Error as exc:
                if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                    conn.invalidate()
                    if attempt == 1:
                        continue
                raise self._unavailable(exc) from None
            finally:
                conn.close()
        raise AssertionError("unreachable")

    def _unavailable(self, exc: BaseException) -> Unavailable:
        metrics.QUESTDB_ERRORS.inc()
        detail = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        log.warning("questdb query failed", extra={"error": detail})
        if "does not exist" in detail:
            return Unavailable(f"QuestDB schema is not ready yet ({detail})")
        return Unavailable("QuestDB is unavailable")

    def ping(self) -> list[str]:
        try:
            self.query(PING)
            return []
        except Unavailable as exc:
            return [str(exc)]

    def close(self) -> None:
        self.engine.dispose()

