"""OKX WebSocket trades -> Kafka."""
