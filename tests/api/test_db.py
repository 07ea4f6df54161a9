"""The api's QuestDB pool when QuestDB drops every connection it holds (a restart, or its
close of idle connections): the next query gets a fresh one, not a 503."""

from __future__ import annotations

import socket
import threading

import pytest

from gostream.api.db import Database, make_engine
from gostream.api.settings import ApiSettings
from tests.conftest import TEST_PORTS, spare_port


class Cutter:
    """A TCP relay to QuestDB's PG port whose connections can all be cut at once."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = spare_port()
        self.sockets: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sockets.clear()

    def close(self) -> None:
        self.cut()
        self.server.close()


@pytest.fixture
def cutter(questdb):
    relay = Cutter(TEST_PORTS.questdb_pg)
    yield relay
    relay.close()


def test_a_pool_of_dropped_connections_is_replaced_not_a_503(cutter):
    db = Database(make_engine(ApiSettings(questdb_host="127.0.0.1", questdb_pg_port=cutter.port, questdb_pool_size=4)))
    try:
        held = [db.engine.connect() for _ in range(4)]  # four connections open in the pool
        for conn in held:
            conn.close()
        assert db.query("SELECT 1") == [(1,)]
        cutter.cut()  # QuestDB "restarts": every pooled connection is dead
        assert db.query("SELECT 2") == [(2,)]
    finally:
        db.close()
