"""A tiny forward HTTP proxy that sends requests for `http://127.0.0.1/...` to a local emulator port.

The legacy `databricks-cli` 0.18 keeps only the hostname of DATABRICKS_HOST and drops the port, so
it always calls port 80. Pointing it at `http://127.0.0.1` with `HTTP_PROXY` set to this proxy gets
its (otherwise unchanged) requests to the emulator. Requests for any other host are refused: tests
never leave the machine.
"""

from __future__ import annotations

import http.client
import os
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from tests.emulators.base import LocalHttpServer

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
}


class ForwardProxy(LocalHttpServer):
    def __init__(self, target_port: int, allowed_host: str = "127.0.0.1") -> None:
        super().__init__()
        self.target_port = target_port
        self.allowed_host = allowed_host
        self.forwarded: list[str] = []  # "METHOD path" of each forwarded request

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        target = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if target.scheme != "http" or target.hostname != self.allowed_host:
            handler.send_error(502, f"This test proxy only forwards to http://{self.allowed_host}")
            return
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        connection = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=60)
        try:
            connection.request(handler.command, path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        self.forwarded.append(f"{handler.command} {path}")
        handler.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)


def legacy_cli_env(proxy: ForwardProxy, home: Path, token: str) -> dict[str, str]:
    """The environment for a legacy `databricks` command that reaches the emulator through `proxy`.

    The caller's DATABRICKS_*, HTTP(S)_PROXY and NO_PROXY are dropped, and HOME is `home`, so no
    ~/.databrickscfg or proxy of the developer takes part.
    """
    env = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(("DATABRICKS_", "NO_PROXY", "HTTP"))
    }
    env.update(
        HOME=str(home),
        DATABRICKS_HOST="http://127.0.0.1",
        DATABRICKS_TOKEN=token,
        HTTP_PROXY=proxy.url,
        http_proxy=proxy.url,
    )
    return env
