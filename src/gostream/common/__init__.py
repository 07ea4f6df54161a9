"""What all four services share: settings, the trade record, health/metrics, logging."""
