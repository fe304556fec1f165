"""The module componentize-py builds: ``componentize streamhost._entry``.

It imports the plugin author's ``app`` module, finds the plugin class and
exposes it as the ``WitWorld`` class componentize-py looks for. It runs at
build time too (componentize-py snapshots the initialised interpreter), so
a malformed ``app.py`` fails the build with a clear message.
"""

import types as _types

import componentize_py_types as _cpt
import wit_world as _wit_world
from wit_world.imports import host as _host
from wit_world.imports import types as _wit_types

import app as _app

from . import _adapter, log

_LEVELS = {
    log.TRACE: _host.Level.TRACE, log.DEBUG: _host.Level.DEBUG, log.INFO: _host.Level.INFO,
    log.WARN: _host.Level.WARN, log.ERROR: _host.Level.ERROR,
}


def _host_sink(level, message, fields):
    _host.log(_LEVELS.get(level, _host.Level.INFO), message, fields)


log.set_sink(_host_sink)

if hasattr(_wit_world.WitWorld, "process"):
    _world = "transform"
elif hasattr(_wit_world.WitWorld, "join"):
    _world = "joiner"
elif hasattr(_wit_world.WitWorld, "finish"):
    _world = "aggregator"
else:
    _world = "udf"
_wit = _types.SimpleNamespace(
    Ok=_cpt.Ok,
    Err=_cpt.Err,
    WitWorld=_wit_world.WitWorld,
    **{name: getattr(_wit_types, name, None) for name in _adapter.BINDING_TYPES},
)
_plugin = _adapter.find_plugin_class(_app, _world)()

if _world == "transform":
    WitWorld = _adapter.transform_world(_plugin, _wit)
elif _world == "joiner":
    WitWorld = _adapter.joiner_world(_plugin, _wit)
elif _world == "aggregator":
    WitWorld = _adapter.aggregator_world(_plugin, _wit)
else:
    WitWorld = _adapter.udf_world(_plugin, _wit)
