"""Hostile Python plugin: misbehaves in ways only a WASI guest can.

Each event's value is JSON ``{"do": ACTION, ...}``:
- ``ok``: echo the event;
- ``sleep`` (``seconds``): ``time.sleep`` (blocks in ``wasi:io/poll`` on a
  timer, in host code that epoch interruption cannot stop), then echo;
- ``print``: write a line to stdout and one to stderr, then echo.
"""

import sys
import time

import streamhost


class Plugin(streamhost.Transform):
    def process_event(self, event):
        req = event.json
        action = req.get("do", "ok")
        if action == "sleep":
            time.sleep(float(req["seconds"]))
        elif action == "print":
            print("hostile-python says hello on stdout")
            print("hostile-python says hello on stderr", file=sys.stderr)
        return event
