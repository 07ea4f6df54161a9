"""Kafka -> QuestDB, offsets committed only after QuestDB acknowledged."""
