"""A local stand-in for the OKX v5 exchange; see server.py."""

from tests.okxsim.server import OkxExchange
from tests.okxsim.trades import aggregate, generate, load_recording

__all__ = ["OkxExchange", "aggregate", "generate", "load_recording"]
