"""The event a plugin sees, and its helpers.

The WIT moves a batch as columns (``event-batch``); the adapter cuts it
into these plain objects, one per event, and packs the results back. The
same classes serve unit tests on plain CPython.
"""

import json as _json

_MISSING = object()
# Built once: json.dumps/json.loads with options build a new encoder per
# call and sniff the encoding of bytes, a third of a small record's cost.
_ENCODER = _json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DECODER = _json.JSONDecoder()


class _EventHelpers:
    """The helpers of ``Event``.

    Fields: ``key`` (bytes or None), ``value`` (bytes, JSON by convention),
    ``timestamp`` (int, ms since the Unix epoch), ``headers`` (list of Header).
    """

    __slots__ = ()

    @property
    def json(self):
        """The payload parsed as JSON; parsed on first use and cached for as
        long as ``value`` is the same object."""
        cache = self._json_cache
        if cache is not None and cache[0] is self.value:
            return cache[1]
        parsed = loads(self.value)
        self._json_cache = (self.value, parsed)
        return parsed

    def set_json(self, obj):
        """Replaces the payload with ``obj`` as compact UTF-8 JSON."""
        self.value = dumps(obj)
        self._json_cache = (self.value, obj)
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


class Header:
    """One header: a name (str) and a raw value (bytes; a str is encoded)."""

    __slots__ = ("name", "value")

    def __init__(self, name, value):
        self.name = name
        self.value = value.encode("utf-8") if isinstance(value, str) else value

    def __eq__(self, other):
        return (self.name, self.value) == (getattr(other, "name", _MISSING), getattr(other, "value", _MISSING))

    def __repr__(self):
        return f"Header(name={self.name!r}, value={self.value!r})"


class Event(_EventHelpers):
    """One event: ``Event(key=None, value=b"", timestamp=0, headers=None)``.
    A ``str`` value or key is encoded as UTF-8."""

    __slots__ = ("key", "value", "timestamp", "headers", "_json_cache")

    def __init__(self, key=None, value=b"", timestamp=0, headers=None):
        if isinstance(value, str):
            value = value.encode("utf-8")
        if isinstance(key, str):
            key = key.encode("utf-8")
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.headers = headers if headers is not None else []
        self._json_cache = None

    def __eq__(self, other):
        fields = ("key", "value", "timestamp", "headers")
        return all(getattr(self, f) == getattr(other, f, _MISSING) for f in fields)

    def __repr__(self):
        return f"Event(key={self.key!r}, value={self.value!r}, timestamp={self.timestamp!r}, headers={self.headers!r})"


def _event(key, value, timestamp, headers):
    """An Event from fields already of the right types (the adapter's fast
    path: no encoding checks)."""
    e = _new_event(Event)
    e.key = key
    e.value = value
    e.timestamp = timestamp
    e.headers = headers
    e._json_cache = None
    return e


_new_event = object.__new__
