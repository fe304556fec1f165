"""Base classes a plugin's ``app.py`` subclasses."""

import inspect
import json
import types
import typing


class PluginError(Exception):
    """Raise to reject one event (or one UDF row) with a plain message; any
    other exception does the same, prefixed with its type."""


class Transform:
    """An ETL transform (``world = "transform"``).

    Override :meth:`process_event`; optionally :meth:`init`.
    """

    def init(self, config):
        """Called once per instance before any batch, with the plugin's
        ``config`` from pipeline.json (parsed JSON; None when absent).
        Raising refuses the plugin at load time."""

    def process_event(self, event):
        """Returns the event (possibly modified), a new event, a list of
        events (fan-out, possibly empty) or None (drop). Raising rejects
        this event alone."""
        raise NotImplementedError("a Transform must define process_event(self, event)")


class Joiner:
    """The output of a window join (``world = "joiner"``): a main event and
    its matches in, zero or more events out.

    Override :meth:`join`; optionally :meth:`init`.
    """

    def init(self, config):
        """As :meth:`Transform.init`."""

    def join(self, main, matches):
        """Joins the main event ``main`` with ``matches``, a dict from each
        other input's name (in the step's order, every one present) to the
        list of its matching events, in time order. Returns an event, a list
        of events or None (no output for this main event). Raising fails
        (dead-letters) this main event alone."""
        raise NotImplementedError("a Joiner must define join(self, main, matches)")


class Aggregator:
    """A user-defined aggregate function (``world = "aggregator"``) of a
    ``window-aggregate`` step. The host stores every accumulator (the
    state) and hands it back with each batch: the plugin keeps nothing
    between calls.

    Override :meth:`create`, :meth:`add`, :meth:`merge` and :meth:`finish`;
    optionally :meth:`init`, and :meth:`encode` / :meth:`decode` (JSON by
    default: any value ``json.dumps`` takes, stable across hot swaps).
    """

    def init(self, config):
        """As :meth:`Transform.init`."""

    def create(self):
        """The empty accumulator (asked once per instance)."""
        raise NotImplementedError("an Aggregator must define create(self)")

    def add(self, state, event):
        """Returns ``state`` with ``event`` folded in. Raising fails
        (dead-letters) this event alone; the state stays as it was, so do
        not change ``state`` in place before raising."""
        raise NotImplementedError("an Aggregator must define add(self, state, event)")

    def merge(self, a, b):
        """The accumulator of both ``a``'s and ``b``'s events (panes of a
        sliding window, sessions, skew buckets)."""
        raise NotImplementedError("an Aggregator must define merge(self, a, b)")

    def finish(self, state):
        """The aggregate's value (anything ``json.dumps`` takes). Raising
        fails this (key, window)'s value alone."""
        raise NotImplementedError("an Aggregator must define finish(self, state)")

    def finish_partial(self, state):
        """The value for an early (partial) firing of a window that will
        fire again; :meth:`finish` unless overridden."""
        return self.finish(state)

    def encode(self, state):
        """The bytes the host stores for ``state``."""
        return json.dumps(state, separators=(",", ":")).encode("utf-8")

    def decode(self, data):
        """``state`` back from :meth:`encode`'s bytes."""
        return json.loads(data)


class Udf:
    """Scalar user-defined functions (``world = "udf"``).

    Mark each exported method with :func:`function`; its type hints
    (``int``, ``float``, ``str``, ``bytes``, ``bool``, ``Optional[...]``,
    none for "any") become the signature the host checks calls against.
    """

    def init(self, config):
        """As :meth:`Transform.init`."""


def function(fn=None, *, name=None):
    """Marks a :class:`Udf` method as an exported function, under its own
    name or ``name``. Usable as ``@function`` or ``@function(name="x")``."""

    def mark(f):
        f.__streamhost_function__ = name or f.__name__
        return f

    return mark(fn) if fn is not None else mark


# Scalar type names, as in the WIT enum `scalar-type`.
NULL, BOOLEAN, INT, FLOAT, STR, BYTES, ANY = "null", "boolean", "int", "float", "str", "bytes", "any"

_HINT_TYPES = {bool: BOOLEAN, int: INT, float: FLOAT, str: STR, bytes: BYTES, type(None): NULL}
_UNION_ORIGINS = (typing.Union, types.UnionType)


def scalar_type_of_hint(hint):
    """The scalar type name of a type hint (``Optional[X]`` is X: null is
    always accepted for an optional argument and allowed as a result)."""
    if hint is None:
        return NULL
    if hint in _HINT_TYPES:
        return _HINT_TYPES[hint]
    if typing.get_origin(hint) in _UNION_ORIGINS:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return scalar_type_of_hint(args[0])
    return ANY


def udf_functions(plugin):
    """``[(name, bound method, [param types], result type)]`` of a Udf
    instance's marked methods, base classes' first, in definition order
    (an override replaces the base method in place)."""
    cls = type(plugin)
    names = []
    for klass in reversed(cls.__mro__):
        names.extend(n for n in vars(klass) if n not in names)
    out = []
    for attr in names:
        member = inspect.getattr_static(cls, attr)
        exported = getattr(member, "__streamhost_function__", None)
        if exported is None:
            continue
        hints = typing.get_type_hints(member)
        params = list(inspect.signature(member).parameters.values())[1:]  # skip self
        arg_types = [scalar_type_of_hint(hints[p.name]) if p.name in hints else ANY for p in params]
        result = scalar_type_of_hint(hints["return"]) if "return" in hints else ANY
        out.append((exported, getattr(plugin, attr), arg_types, result))
    return out
