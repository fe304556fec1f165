"""The event record and its helpers.

Inside a component, ``Event`` and ``Header`` *are* the record classes that
componentize-py generated for the WIT contract, extended with the helpers
below, so a batch reaches ``process_event`` and goes back without a copy.
On plain CPython (unit tests) they are ordinary classes with the same
fields in the same order.
"""

import json as _json

_MISSING = object()
# Built once: json.dumps/json.loads with options build a new encoder per
# call and sniff the encoding of bytes, a third of a small record's cost.
_ENCODER = _json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DECODER = _json.JSONDecoder()


class _EventHelpers:
    """Methods shared by the native and the component ``Event``.

    Fields: ``key`` (bytes or None), ``value`` (bytes, JSON by convention),
    ``timestamp`` (int, ms since the Unix epoch), ``headers`` (list of Header).
    """

    @property
    def json(self):
        """The payload parsed as JSON; parsed on first use and cached for as
        long as ``value`` is the same object."""
        cache = self.__dict__.get("_json_cache")
        if cache is not None and cache[0] is self.value:
            return cache[1]
        parsed = loads(self.value)
        self.__dict__["_json_cache"] = (self.value, parsed)
        return parsed

    def set_json(self, obj):
        """Replaces the payload with ``obj`` as compact UTF-8 JSON."""
        self.value = dumps(obj)
        self.__dict__["_json_cache"] = (self.value, obj)
        return self

    def with_json(self, obj):
        """A new event with this event's key, timestamp and headers and
        ``obj`` as its payload."""
        return type(self)(self.key, dumps(obj), self.timestamp, list(self.headers))

    @property
    def text(self):
        """The payload as text (UTF-8)."""
        return self.value.decode("utf-8")

    def header(self, name, default=None):
        """The value (bytes) of the first header called ``name``."""
        for h in self.headers:
            if h.name == name:
                return h.value
        return default

    def set_header(self, name, value):
        """Sets header ``name`` (str or bytes value), replacing an existing one."""
        if isinstance(value, str):
            value = value.encode("utf-8")
        for h in self.headers:
            if h.name == name:
                h.value = value
                return self
        self.headers.append(Header(name, value))
        return self

    @classmethod
    def from_json(cls, obj, key=None, timestamp=0, headers=None):
        """An event whose payload is ``obj`` as JSON."""
        return cls(key, dumps(obj), timestamp, headers if headers is not None else [])


def dumps(obj):
    """Compact UTF-8 JSON bytes."""
    return _ENCODER.encode(obj).encode("utf-8")


def loads(data):
    """Parses UTF-8 JSON bytes (or text); raises ValueError (JSONDecodeError
    or UnicodeDecodeError) as json.loads does."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    try:
        obj, end = _DECODER.raw_decode(text)
    except _json.JSONDecodeError:
        # Leading whitespace or an error: the full path says exactly what.
        return _DECODER.decode(text)
    if end != len(text) and text[end:].strip():
        return _DECODER.decode(text)  # raises "Extra data"
    return obj


def _event_init(self, key=None, value=b"", timestamp=0, headers=None):
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(key, str):
        key = key.encode("utf-8")
    self.key = key
    self.value = value
    self.timestamp = timestamp
    self.headers = headers if headers is not None else []


class _NativeHeader:
    """One header: a name (str) and a raw value (bytes)."""

    def __init__(self, name, value):
        self.name = name
        self.value = value.encode("utf-8") if isinstance(value, str) else value

    def __eq__(self, other):
        return (self.name, self.value) == (getattr(other, "name", _MISSING), getattr(other, "value", _MISSING))

    def __repr__(self):
        return f"Header(name={self.name!r}, value={self.value!r})"


class _NativeEvent(_EventHelpers):
    """One event: ``Event(key=None, value=b"", timestamp=0, headers=None)``.
    A ``str`` value or key is encoded as UTF-8."""

    __init__ = _event_init

    def __eq__(self, other):
        fields = ("key", "value", "timestamp", "headers")
        return all(getattr(self, f) == getattr(other, f, _MISSING) for f in fields)

    def __repr__(self):
        return f"Event(key={self.key!r}, value={self.value!r}, timestamp={self.timestamp!r}, headers={self.headers!r})"


def _extend_generated(event_cls):
    """Grafts the helpers onto the generated record class; its field order
    (key, value, timestamp, headers) is the one ``_event_init`` takes."""
    for name, attr in vars(_EventHelpers).items():
        if not name.startswith("__"):
            setattr(event_cls, name, attr)
    event_cls.__init__ = _event_init
    return event_cls


try:  # Inside a component built by componentize-py.
    from wit_world.imports import types as _wit_types
except ImportError:  # Plain CPython.
    _wit_types = None

if _wit_types is not None:
    Event = _extend_generated(_wit_types.Event)
    Header = _wit_types.Header
else:
    Event = _NativeEvent
    Header = _NativeHeader
