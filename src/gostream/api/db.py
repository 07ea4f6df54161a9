"""QuestDB over the PostgreSQL wire: a pooled engine and one way to run a query."""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Mapping
from typing import Any

import psycopg2
import psycopg2.extensions
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


# Numbers as QuestDB wrote them on the wire (text), without parsing them into Python
# ints and floats: for a body that only passes them on, as JSON (see market.candles_json).
# The numbers are exactly the ones psycopg2 would have parsed from the same text; QuestDB
# writes valid JSON numbers (`30236.0`, `1.0E-4`, `-5`); NaN and infinities arrive as
# SQL NULL (None).
_NUMBER_OIDS = (20, 21, 23, 700, 701, 1700)  # int8, int2, int4, float4, float8, numeric
NUMBERS_AS_TEXT = psycopg2.extensions.new_type(_NUMBER_OIDS, "GOSTREAM_NUMBER_TEXT", lambda value, _cursor: value)


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
        # QuestDB closes a PG connection idle for some minutes (seen: a pool unused for six
        # minutes answered every query with "server closed the connection"): none is kept
        # that long.
        pool_recycle=120,
        # Reads only: no BEGIN before each query and nothing to roll back after it.
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,
        connect_args={"connect_timeout": settings.questdb_connect_timeout_s, "application_name": "gostream-api"},
    )


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Under gunicorn's preload_app the engine is made in the master and forked: a
        # worker starts with a pool of its own (SQLAlchemy's advice), never a connection
        # of its parent's. The master never queries, so there is nothing to close there.
        ref = weakref.ref(self)

        def new_pool_in_child() -> None:
            db = ref()
            if db is not None:
                db.engine.dispose(close=False)

        os.register_at_fork(after_in_child=new_pool_in_child)

    def query(self, sql: str, params: Mapping[str, Any] | None = None, numbers_as_text: bool = False) -> list[tuple]:
        """Rows of one statement, as tuples. A connection QuestDB dropped (a restart) is
        thrown away and the statement tried once more on a new one; anything that keeps
        QuestDB from answering becomes ``Unavailable``. With ``numbers_as_text`` numeric
        columns come as QuestDB's text (str), not int or float."""
        for attempt in (1, 2):
            try:
                conn = self.engine.connect()
            except (SQLAlchemyError, PoolTimeout) as exc:
                raise self._unavailable(exc) from None
            try:
                # The driver's cursor directly: no result wrapping on the hot path.
                cursor = conn.connection.dbapi_connection.cursor()
                if numbers_as_text:
                    psycopg2.extensions.register_type(NUMBERS_AS_TEXT, cursor)
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
                        # Its pool-mates are as stale (a QuestDB restart, an idle close):
                        # start the pool afresh rather than retry on the next dead one.
                        self.engine.dispose()
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

