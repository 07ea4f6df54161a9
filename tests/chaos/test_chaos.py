"""The short chaos runs (about 3 minutes each).

Process faults: every trade printed is stored exactly once while the consumer is
SIGKILLed three times, the Kafka broker restarts, the producer is SIGKILLed, QuestDB is
stopped for 15 s and the WebSocket is cut every 10 s.

REST faults: the same promise, and the producer's audit reporting 0 missing with no open
hole in its ledger, while the WebSocket is cut every 10 s, REST is down for 55 s (the
gaps cut meanwhile cannot be filled live), the producer is SIGTERMed and SIGKILLed with
fills pending, REST answers 429 to every other request and lags 5 s behind the feed, and
the producer is down while every record of the topic is deleted; a quiet symbol shares
the busy one's only partition."""

from tests.chaos.harness import Chaos, Plan


def test_exactly_once_under_faults(tmp_path):
    report = Chaos(tmp_path, Plan()).execute()
    print(report.summary())
    assert len(report.injected) >= 14  # every planned fault really happened
    assert report.emitted >= 9000
    assert report.ok, report.summary()


def test_the_audit_heals_every_hole_under_rest_faults(tmp_path):
    report = Chaos(tmp_path, Plan.rest_faults()).execute()
    print(report.summary())
    assert len(report.injected) >= 16  # 10 WebSocket cuts, 6 REST and producer faults
    assert report.emitted >= 10000
    assert report.ledger_closed >= 1, "REST was down while gaps opened: the audit must have healed some"
    assert report.ok, report.summary()
