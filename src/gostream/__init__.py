"""Go-Stream: OKX trades through Kafka into QuestDB, served as live candlesticks."""

__version__ = "0.1.0"
