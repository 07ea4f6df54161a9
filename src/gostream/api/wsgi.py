"""The WSGI entry point for gunicorn: ``gostream.api.wsgi:app``."""

from gostream.api.app import create_app
from gostream.api.settings import ApiSettings
from gostream.common.logs import setup_logging
from gostream.common.settings import load

settings = load(ApiSettings)
setup_logging("api", settings.log_level)
app = create_app(settings)
