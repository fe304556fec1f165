"""Hostile plugin: for each event ``{"do": ACTION, ...}`` it attempts ACTION
and returns ``{"do": ACTION, "ok": bool, "observed": ..., "error": ...}``, so
a host test can assert that nothing was granted.

Actions:
- ``open-file`` (``path``): open and read a file.
- ``write-file`` (``path``): create and write a file.
- ``list-dir`` (``path``, default ``/``): list a directory.
- ``socket`` (``port``, ``host`` default 127.0.0.1): connect over TCP and
  send a line.
- ``resolve`` (``name``): resolve a host name.
- ``env``: read the environment.
- ``clock``: read the wall clock (``time.time()``).
- ``random``: read 16 bytes of OS randomness.
"""

# Imported up front: the socket module looks the idna codec up lazily, and a
# missing codec would make every network probe fail for the wrong reason.
import encodings.idna  # noqa: F401
import os
import socket
import time

import streamhost


def _open_file(req):
    with open(req["path"], "rb") as f:
        return f.read(4096).decode("utf-8", "replace")


def _write_file(req):
    with open(req["path"], "w") as f:
        f.write("written by sandbox-probe\n")
    return req["path"]


def _list_dir(req):
    return sorted(os.listdir(req.get("path", "/")))


def _socket(req):
    # A numeric address and a plain connect: no name lookup on the way, so
    # this probes TCP itself (`resolve` probes lookups).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect((req.get("host", "127.0.0.1"), int(req["port"])))
        s.sendall(b"hello from sandbox-probe\n")
        return "connected"


def _resolve(req):
    return [a[4][0] for a in socket.getaddrinfo(req.get("name", "localhost"), 80)]


def _env(req):
    return dict(os.environ)


def _clock(req):
    return time.time()


def _random(req):
    return os.urandom(16).hex()


ACTIONS = {
    "open-file": _open_file,
    "write-file": _write_file,
    "list-dir": _list_dir,
    "socket": _socket,
    "resolve": _resolve,
    "env": _env,
    "clock": _clock,
    "random": _random,
}


class Plugin(streamhost.Transform):
    def process_event(self, event):
        req = event.json
        action = req.get("do")
        probe = ACTIONS.get(action)
        if probe is None:
            raise streamhost.PluginError(f"unknown action {action!r}")
        try:
            result = {"do": action, "ok": True, "observed": probe(req)}
        except BaseException as e:  # noqa: BLE001 - the failure is the observation
            result = {"do": action, "ok": False, "error": f"{type(e).__name__}: {e}"}
        return event.with_json(result)
