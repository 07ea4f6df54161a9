"""The local stack: real Kafka and QuestDB processes plus the four services.

Used by `make up` (through the supervisor) and by the tests (through ``Process``),
so both run exactly the same commands.
"""
