"""History at start: the trades of the last ``HISTORY_WINDOW`` before the first one stored.

On a fresh install the chart would otherwise start with one bar. For each symbol the
producer asks the store for its oldest trade and, if that is younger than the window's
start, queues a REST job that pages ``history-trades`` down from there (newest first, so
the chart fills from now backwards) until it reaches the window's start. It has the lowest
priority of the REST queue: live gaps and the audit's holes go first. The trades travel the
normal way (Kafka, the consumer, DEDUP). A restart picks up where the last one stopped:
the store's oldest trade is where that was.
"""

from __future__ import annotations

import logging
import re
import time

from gostream.producer import metrics
from gostream.producer.audit import Store
from gostream.producer.rest import Fill, HistoryFetcher

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
LOG_EVERY_PAGES = 50


def parse_window(text: str) -> float:
    """``6h``, ``90m``, ``2d``, ``3600`` (seconds) or ``0`` (off) -> seconds; ValueError else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r}: expected a duration such as 6h, 90m, 2d or 0")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def start(store: Store, fetcher: HistoryFetcher, symbols: tuple[str, ...], window_s: float) -> list[Fill]:
    """Queue what is missing of the window for each symbol; the jobs queued."""
    if window_s <= 0:
        return []
    since_ms = int((time.time() - window_s) * 1000)
    jobs = []
    for symbol in symbols:
        oldest = store.oldest(symbol)
        if oldest is not None and oldest[1] // 1000 <= since_ms:
            metrics.HISTORY_REMAINING.labels(symbol).set(0)
            continue
        # Page below the oldest row's first id (an aggregated row covers `fills` ids).
        below = oldest[0] - oldest[2] + 1 if oldest else None
        remaining_s = ((oldest[1] // 1000) if oldest else int(time.time() * 1000)) - since_ms
        metrics.HISTORY_REMAINING.labels(symbol).set(remaining_s / 1000)
        log.info("fetching history", extra={"symbol": symbol, "window_s": window_s, "below_id": below,
                                            "remaining_s": round(remaining_s / 1000)})
        jobs.append(fetcher.submit(Fill.history(symbol, since_ms, below, on_page=_progress, on_done=_done)))
    return jobs


def _progress(job: Fill, oldest_ms: int) -> None:
    metrics.HISTORY_REMAINING.labels(job.symbol).set(max(0.0, (oldest_ms - job.since_ms) / 1000))
    if job.pages % LOG_EVERY_PAGES == 0:
        log.info("history progress", extra={"symbol": job.symbol, "trades": job.found, "requests": job.pages,
                                            "remaining_s": round(max(0, oldest_ms - job.since_ms) / 1000)})


def _done(job: Fill) -> None:
    if job.error:
        log.error("history fetch gave up", extra={"symbol": job.symbol, "trades": job.found, "error": job.error})
        return
    metrics.HISTORY_REMAINING.labels(job.symbol).set(0)
    log.info("history fetched", extra={"symbol": job.symbol, "trades": job.found, "requests": job.pages,
                                       "reached_the_start_of_okx_history": job.exhausted})
