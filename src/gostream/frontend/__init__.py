"""The trading terminal: static page + a streaming reverse proxy of /api/* to the api.

    gunicorn -c python:gostream.frontend.gunicorn_conf gostream.frontend.wsgi:app

Lightweight Charts is not in the repository: ``make frontend-assets`` fetches the
pinned npm package into static/vendor/ (git-ignored), as the image build does.
"""
