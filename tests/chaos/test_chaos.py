"""The short chaos run (under 3 minutes): every trade printed is stored exactly once
while the consumer is SIGKILLed three times, the Kafka broker restarts, the producer is
SIGKILLed, QuestDB is stopped for 15 s and the WebSocket is cut every 10 s."""

from tests.chaos.harness import Chaos, Plan


def test_exactly_once_under_faults(tmp_path):
    report = Chaos(tmp_path, Plan()).execute()
    print(report.summary())
    assert len(report.injected) >= 14  # every planned fault really happened
    assert report.emitted >= 9000
    assert report.ok, report.summary()
