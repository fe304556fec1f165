"""Write streamhost plugins in Python.

A transform plugin is a folder with a ``plugin.toml`` (``world = "transform"``)
and an ``app.py``::

    import streamhost

    class Plugin(streamhost.Transform):
        def init(self, config):            # optional; config from pipeline.json
            self.min_dwell = (config or {}).get("min_dwell_ms", 0)

        def process_event(self, event):
            record = event.json            # parsed lazily from event.value
            if record.get("dwell_ms", 0) < self.min_dwell:
                return None                # drop
            record["seen"] = True
            return event.with_json(record) # or a list of events (fan-out)

Raising an exception rejects that event alone (the host dead-letters it with
the exception text); the rest of the batch goes on. A UDF plugin
(``world = "udf"``) subclasses :class:`Udf` and marks typed methods with
:func:`function`. A joiner (``world = "joiner"``, the output of a window join)
subclasses :class:`Joiner` and defines ``join(self, main, matches)``. An
aggregator (``world = "aggregator"``, a user-defined aggregate function)
subclasses :class:`Aggregator` and defines ``create``, ``add``, ``merge``
and ``finish`` over a state the host stores.

``streamhost plugin build DIR`` turns the folder into a component with
componentize-py; this package is bundled in, and adapts the class to the
generated bindings (see ``_adapter``). Everything here also runs on plain
CPython, so plugins are unit-testable with ``unittest``.
"""

from . import log
from .event import Event, Header
from .plugin import Aggregator, Joiner, PluginError, Transform, Udf, function

__all__ = ["Aggregator", "Event", "Header", "Joiner", "PluginError", "Transform", "Udf", "function", "log"]
