"""A local stand-in for the OKX v5 exchange; see server.py."""

from tests.okxsim.server import OkxExchange
from tests.okxsim.trades import aggregate, catalogue, generate, instrument_record, load_recording, trade_rates

__all__ = ["OkxExchange", "aggregate", "catalogue", "generate", "instrument_record", "load_recording", "trade_rates"]
