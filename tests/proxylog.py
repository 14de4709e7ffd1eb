"""A proxy.py plugin for tests: one log line per request the proxy carries.

proxy.py's own access log has one line per connection (at its close), and the crawler keeps
connections alive, so the tests log each request as the proxy forwards it:
``carried GET 127.0.0.2:8080/p/1.html``.
"""

from __future__ import annotations

import logging

from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin

__all__ = ["RequestLog"]

log = logging.getLogger(__name__)


class RequestLog(HttpProxyBasePlugin):
    def handle_client_request(self, request: HttpParser) -> HttpParser | None:
        method = (request.method or b"").decode()
        host = (request.host or b"").decode()
        path = (request.path or b"").decode()
        log.info("carried %s %s:%s%s", method, host, request.port, path)
        return request
