"""The WSGI entry point for gunicorn: ``gostream.frontend.wsgi:app``."""

from gostream.common.logs import setup_logging
from gostream.common.settings import load
from gostream.frontend.app import create_app
from gostream.frontend.settings import FrontendSettings

settings = load(FrontendSettings)
setup_logging("frontend", settings.log_level)
app = create_app(settings)
