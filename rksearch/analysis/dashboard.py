"""optuna-dashboard on a study folder, safe to run while the search writes the same database.

SQLite in WAL mode lets one writer and any number of readers work at once: a reader never
blocks the search's commits and never sees half of one. ``rksearch run`` opens the database in
WAL mode; the dashboard makes sure of it (:mod:`rksearch.storage.open`: the mode is stored in the
file) and every connection gets a generous busy timeout, so even a brief lock (a checkpoint)
makes a request wait instead of fail.

optuna-dashboard (0.21) has no login and no read-only mode: whoever reaches it can delete or
rename studies and change trials. It listens on 127.0.0.1 unless told otherwise; ``read_only``
puts a filter in front of it that refuses every request but GET and HEAD (each change it makes
is a POST, PUT, PATCH or DELETE).
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from rksearch.core.errors import RKSearchError
from rksearch.analysis.study import Study, load_study
from rksearch.storage.open import ensure_wal, open_storage
from rksearch.storage.urls import sqlite_path

READ_METHODS = ("GET", "HEAD")


def read_only_app(app):
    """The WSGI ``app`` answering 405 to every request that could change something."""
    def guarded(environ, start_response):
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return app(environ, start_response)
        start_response("405 Method Not Allowed", [("Content-Type", "text/plain; charset=utf-8"),
                                                  ("Allow", ", ".join(READ_METHODS))])
        return [b"this dashboard is read-only (rksearch dashboard --read-only)\n"]

    return guarded


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


@dataclass
class Dashboard:
    """A bound, not yet serving, optuna-dashboard for one study."""

    study: Study
    server: WSGIServer
    study_id: int
    wal: bool
    read_only: bool = False

    @property
    def exposed(self) -> bool:
        """Listening beyond this machine (any address but a loopback one)."""
        return not ipaddress.ip_address(self.server.server_address[0].split("%")[0]).is_loopback

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/dashboard/studies/{self.study_id}"

    def serve_forever(self) -> None:
        try:
            self.server.serve_forever()
        finally:
            self.server.server_close()

    def start(self) -> threading.Thread:
        """Serve from a daemon thread (for notebooks and tests); ``stop()`` ends it."""
        t = threading.Thread(target=self.server.serve_forever, daemon=True, name="rksearch-dashboard")
        t.start()
        return t

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def dashboard(study_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8080,
              storage: str | None = None, read_only: bool = False) -> Dashboard:
    """Check the study, open its storage and bind ``host:port`` (0 picks a free port); ``storage``
    as for :func:`~rksearch.analysis.study.load_study`; ``read_only`` refuses every change."""
    import optuna_dashboard

    study = load_study(study_dir, storage=storage)
    wal = True  # a database server: concurrent readers are its business
    if sqlite_path(study.url) is not None:
        try:
            wal = ensure_wal(study.db, timeout=5)
        except RKSearchError:  # a read-only file, a lock held long: served all the same
            wal = False
    rdb = open_storage(study.url, read_only=True, source=study.source)
    app = optuna_dashboard.wsgi(rdb)
    if read_only:
        app = read_only_app(app)
    try:
        server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    except socket.gaierror as e:
        raise RKSearchError(f"cannot resolve host {host!r}: {e.strerror or e}", field="--host") from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise RKSearchError(f"port {port} on {host} is already in use; pick another with --port", field="--port") from None
        if e.errno == errno.EACCES:
            raise RKSearchError(f"not allowed to listen on port {port}; use a port above 1023", field="--port") from None
        raise RKSearchError(f"cannot listen on {host}:{port}: {e.strerror or e}", field="--host") from None
    return Dashboard(study, server, rdb.get_study_id_from_name(study.name), wal, read_only)
