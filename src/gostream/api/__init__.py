"""The candle API: Flask app factory (``create_app``) served by gunicorn.

    gunicorn -c python:gostream.api.gunicorn_conf gostream.api.wsgi:app

Reads QuestDB over its PostgreSQL wire protocol with a pooled SQLAlchemy engine
(psycopg2). Every SQL text is built once at import time from whitelisted pieces; request
values travel only as bound parameters.
"""
