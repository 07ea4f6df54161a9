"""QuestDB's disk use as metrics: what its table_storage() reports for every table, polled
on a thread of its own (one query a minute; nothing on the ingest path waits for it), and the
size of QuestDB's volume, so an alert can fire before the volume is full."""

from __future__ import annotations

import logging
import re
import threading

from prometheus_client import Counter, Gauge

from gostream.common.schema import query

log = logging.getLogger("gostream.consumer.storage")

TABLE_DISK = Gauge(
    "gostream_consumer_questdb_table_disk_bytes",
    "Bytes one QuestDB table or materialized view takes on disk, WAL segments included (table_storage())",
    ["table"],
)
TABLE_ROWS = Gauge("gostream_consumer_questdb_table_rows", "Rows of one QuestDB table or view (table_storage())", ["table"])
VOLUME = Gauge("gostream_consumer_questdb_volume_bytes", "Size of QuestDB's data volume (QUESTDB_VOLUME_SIZE); 0: not known")
POLL_ERRORS = Counter("gostream_consumer_questdb_storage_errors_total", "table_storage() polls that failed")

STORAGE_SQL = "SELECT tableName, rowCount, diskSize FROM table_storage()"

_UNITS = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_QUANTITY = re.compile(r"^([0-9]{1,15})(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def volume_bytes(text: str) -> int:
    """A Kubernetes storage quantity ('10Gi', '500G', '1048576') in bytes; '' is 0 (not known).
    ValueError says why for anything else."""
    text = text.strip()
    if not text:
        return 0
    found = _QUANTITY.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a size like 10Gi, 500Mi, 2Ti, 100G or a byte count")
    return int(found.group(1)) * _UNITS[found.group(2) or ""]


def table_sizes(rows: object) -> dict[str, tuple[int, int]]:
    """table_storage()'s rows (as schema.query gives them) -> {table: (rows, bytes)}.
    Total: a row that is not a dict with a table name and whole non-negative numbers is
    left out (and counted by the caller as nothing learnt about that table)."""
    sizes: dict[str, tuple[int, int]] = {}
    if not isinstance(rows, list):
        return sizes
    for row in rows:
        if not isinstance(row, dict):
            continue
        name, count, size = row.get("tableName"), row.get("rowCount"), row.get("diskSize")
        if not isinstance(name, str) or not name:
            continue
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (count, size)):
            continue
        sizes[name] = (count, size)
    return sizes


class StorageWatch:
    """Sets the gauges from table_storage() every ``every_s`` until ``stopping`` is set.
    A failed poll is logged and counted and the gauges keep their last values (a QuestDB
    restart must not look like an empty disk); a table dropped disappears from them."""

    def __init__(self, questdb_url: str, volume: int, every_s: float, stopping: threading.Event) -> None:
        self._url = questdb_url
        self._every_s = every_s
        self._stopping = stopping
        self._tables: set[str] = set()
        VOLUME.set(volume)

    def poll(self) -> None:
        try:
            sizes = table_sizes(query(self._url, STORAGE_SQL))
        except Exception as exc:  # QuestDB away, auth, timeout: the next poll tries again
            POLL_ERRORS.inc()
            log.warning("table_storage() failed", extra={"error": str(exc)[:300]})
            return
        for table, (count, size) in sizes.items():
            TABLE_ROWS.labels(table).set(count)
            TABLE_DISK.labels(table).set(size)
        for table in self._tables - sizes.keys():
            TABLE_ROWS.remove(table)
            TABLE_DISK.remove(table)
        self._tables = set(sizes)

    def run(self) -> None:
        while not self._stopping.is_set():
            self.poll()
            self._stopping.wait(self._every_s)

    def start(self) -> StorageWatch:
        threading.Thread(target=self.run, name="questdb-storage", daemon=True).start()
        return self
