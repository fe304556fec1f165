"""Adapts a plugin class to componentize-py's generated ``WitWorld``.

Kept free of any binding import: the entry module (``_entry``) hands in the
generated classes as a namespace, and the unit tests hand in fakes.
The per-event path is a plain loop with local-variable lookups; output
events are checked cheaply so a wrongly typed field fails its own event
instead of trapping the whole batch during lowering.
"""

import json
import os

from .event import Event, Header, _event
from .plugin import ANY, BOOLEAN, BYTES, FLOAT, INT, NULL, STR, Aggregator, Joiner, PluginError, Transform, Udf, udf_functions

# The generated classes (of `wit_world.imports.types`) the adapters use; the
# udf ones are absent from a transform or joiner build and the other way round.
BINDING_TYPES = (
    "ByteColumn", "BatchHeader", "EventBatch", "EventError", "TransformOutput", "AddOutput", "FunctionSignature", "ScalarType",
    "Scalar_Null", "Scalar_Boolean", "Scalar_Int", "Scalar_Float", "Scalar_Str", "Scalar_Bytes",
)

_S64_MIN, _S64_MAX = -(2**63), 2**63 - 1


class BindingError(Exception):
    """The plugin module cannot be adapted (raised at build time, since
    componentize-py runs the entry module while building)."""


def find_plugin_class(module, world):
    """The plugin class of ``module``: its ``Plugin`` attribute, else the one
    subclass of the world's base class defined there."""
    base = {"transform": Transform, "udf": Udf, "joiner": Joiner, "aggregator": Aggregator}[world]
    cls = getattr(module, "Plugin", None)
    if cls is None:
        candidates = [
            v for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, base) and v is not base and v.__module__ == module.__name__
        ]
        if len(candidates) != 1:
            found = ", ".join(c.__name__ for c in candidates) or "none"
            raise BindingError(
                f"{module.__name__}.py must define `class Plugin(streamhost.{base.__name__})` "
                f"(or exactly one subclass of streamhost.{base.__name__}; found {found})"
            )
        cls = candidates[0]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise BindingError(f"{module.__name__}.Plugin must subclass streamhost.{base.__name__} for world {world!r}")
    return cls


_SDK_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__))


def describe(exc):
    """The message an exception turns into: ``Type: text (file.py:line)``,
    located at the innermost frame of the plugin's own code; a PluginError
    is just its text."""
    if isinstance(exc, PluginError):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = None
    tb = exc.__traceback__
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not path.startswith((_SDK_DIR, _STDLIB_DIR)):
            where = f"{os.path.basename(path)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{text} ({where})" if where else text


def parse_config(text):
    """The ``init`` config: JSON text, None when empty or ``null``."""
    if not text or not text.strip():
        return None
    return json.loads(text)


def run_init(plugin, config_text, err):
    try:
        config = parse_config(config_text)
    except ValueError as e:
        raise err(f"invalid plugin config: {e}") from None
    try:
        plugin.init(config)
    except Exception as e:  # noqa: BLE001 - reported to the host as the init error
        raise err(describe(e)) from None


def transform_world(plugin, wit):
    """A ``WitWorld`` class for the transform world around ``plugin``."""
    Err = wit.Err

    def process(self, batch):
        return process_columns(plugin.process_event, batch, wit)

    def init(self, config):
        run_init(plugin, config, Err)

    return type("WitWorld", (wit.WitWorld,), {"init": init, "process": process})


def joiner_world(plugin, wit):
    """A ``WitWorld`` class for the joiner world around ``plugin``."""
    Err = wit.Err

    def join(self, inputs, mains, matches, match_mains, match_inputs):
        return join_columns(plugin.join, inputs, mains, matches, match_mains, match_inputs, wit)

    def init(self, config):
        run_init(plugin, config, Err)

    return type("WitWorld", (wit.WitWorld,), {"init": init, "join": join})


def aggregator_world(plugin, wit):
    """A ``WitWorld`` class for the aggregator world around ``plugin``."""
    Err = wit.Err

    def init(self, config):
        run_init(plugin, config, Err)

    def create(self):
        return bytes(plugin.encode(plugin.create()))

    def add(self, states, events, groups):
        return add_columns(plugin, states, events, groups, wit)

    def merge(self, states, into, outputs):
        try:
            return merge_columns(plugin, states, into, outputs, wit)
        except Exception as e:  # noqa: BLE001 - a failed merge fails the call, as an error
            raise Err(describe(e)) from None

    def finish(self, states, partial):
        return finish_columns(plugin, states, partial, wit)

    return type("WitWorld", (wit.WitWorld,), {"init": init, "create": create, "add": add, "merge": merge, "finish": finish})


def column_items(column):
    """The items of a ``byte-column``, as bytes."""
    data, out, start = column.data, [], 0
    for end in column.ends:
        out.append(data[start:end])
        start = end
    return out


def to_column(items, wit):
    ends, total = [], 0
    for item in items:
        total += len(item)
        ends.append(total)
    return wit.ByteColumn(b"".join(items), ends)


def add_columns(plugin, states, events, groups, wit):
    """Folds event ``i`` into state ``groups[i]``: each group decoded once,
    its events added in order, encoded once. A failed event (``add``
    raised, or its state does not decode) leaves its group's state as it was."""
    old = column_items(states)
    decoded = []
    for data in old:
        try:
            decoded.append((True, plugin.decode(data)))
        except Exception as e:  # noqa: BLE001 - the group's events fail with it
            decoded.append((False, f"cannot decode the accumulator: {describe(e)}"))
    touched = [False] * len(old)
    errors = []
    EventError = wit.EventError
    add = plugin.add
    for i, event in enumerate(batch_events(events)):
        g = groups[i] if i < len(groups) else len(old)
        if g >= len(old):
            errors.append(EventError(i, f"event {i} names no accumulator"))
            continue
        ok, state = decoded[g]
        if not ok:
            errors.append(EventError(i, state))
            continue
        try:
            decoded[g] = (True, add(state, event))
            touched[g] = True
        except Exception as e:  # noqa: BLE001 - one event's failure is that event's error
            errors.append(EventError(i, describe(e)))
    new = []
    for g, data in enumerate(old):
        ok, state = decoded[g]
        new.append(bytes(plugin.encode(state)) if ok and touched[g] else data)
    return wit.AddOutput(to_column(new, wit), errors)


def merge_columns(plugin, states, into, outputs, wit):
    """Input ``i`` merged into output ``into[i]``, in input order; an output
    no input names is the empty accumulator."""
    out = [None] * outputs
    for i, data in enumerate(column_items(states)):
        o = into[i] if i < len(into) else outputs
        if o >= outputs:
            raise PluginError(f"accumulator {i} names no output")
        state = plugin.decode(data)
        out[o] = state if out[o] is None else plugin.merge(out[o], state)
    return to_column([bytes(plugin.encode(plugin.create() if s is None else s)) for s in out], wit)


def finish_columns(plugin, states, partial, wit):
    """Each state's value as JSON bytes, or its error."""
    Ok, Err = wit.Ok, wit.Err
    finish = plugin.finish_partial if partial else plugin.finish
    out = []
    for data in column_items(states):
        try:
            out.append(Ok(json.dumps(finish(plugin.decode(data)), separators=(",", ":")).encode("utf-8")))
        except Exception as e:  # noqa: BLE001 - one window's failure is its own
            out.append(Err(describe(e)))
    return out


def join_columns(join, inputs, mains, matches, match_mains, match_inputs, wit):
    """Runs ``join(main, {input: [match, ...]})`` over every main event of a
    joiner call and packs the results into a ``transform-output`` (origins
    are main indices). Matches out of range are ignored (the host never
    sends them)."""
    n = len(mains.timestamps)
    groups = [{name: [] for name in inputs} for _ in range(n)]
    names = list(inputs)
    for event, m, k in zip(batch_events(matches), match_mains, match_inputs):
        if m < n and k < len(names):
            groups[m][names[k]].append(event)
    per_main = iter(groups)
    # process_columns calls its function once per main event, in order.
    return process_columns(lambda main: join(main, next(per_main)), mains, wit)


def batch_events(batch):
    """The events of a columnar ``event-batch``, as a list of Events."""
    values, keys = batch.values, batch.keys
    data, ends = values.data, values.ends
    key_data, key_ends = keys.data, keys.ends
    keyless = set(batch.keyless)
    headers_of = {}
    for h in batch.headers:
        headers_of.setdefault(h.event, []).append(Header(h.name, h.value))
    out = []
    start = kstart = 0
    for i, ts in enumerate(batch.timestamps):
        end = ends[i] if i < len(ends) else start
        kend = key_ends[i] if i < len(key_ends) else kstart
        out.append(_event(None if i in keyless else key_data[kstart:kend], data[start:end], ts, headers_of.get(i) or []))
        start, kstart = end, kend
    return out


def process_columns(process_event, batch, wit):
    """Runs ``process_event`` over a columnar ``event-batch`` and packs the
    results into a ``transform-output``. The loop is written for speed:
    locals only, and plain bytes outputs need no conversion."""
    values, keys = batch.values, batch.keys
    data, ends = values.data, values.ends
    key_data, key_ends = keys.data, keys.ends
    timestamps = batch.timestamps
    keyless = set(batch.keyless)
    headers_of = {}
    for h in batch.headers:
        headers_of.setdefault(h.event, []).append(Header(h.name, h.value))
    make = _event
    EventError, BatchHeader = wit.EventError, wit.BatchHeader

    out_values, out_ends, out_keys, out_key_ends = [], [], [], []
    out_keyless, out_ts, out_headers, origins, errors = [], [], [], [], []
    vlen = klen = 0
    start = kstart = 0
    for i, end in enumerate(ends):
        kend = key_ends[i]
        event = make(
            None if i in keyless else key_data[kstart:kend],
            data[start:end],
            timestamps[i],
            headers_of.get(i) or [],
        )
        start, kstart = end, kend
        try:
            result = process_event(event)
            if result is None:
                continue
            outputs = result if type(result) is list else (result,)
            checked = [e if _plain(e) else _checked(e) for e in outputs]
        except Exception as e:  # noqa: BLE001 - one event's failure is that event's error
            errors.append(EventError(i, describe(e)))
            continue
        for e in checked:
            n = len(out_ts)
            value = e.value
            out_values.append(value)
            vlen += len(value)
            out_ends.append(vlen)
            key = e.key
            if key is None:
                out_keyless.append(n)
            else:
                out_keys.append(key)
                klen += len(key)
            out_key_ends.append(klen)
            out_ts.append(e.timestamp)
            for h in e.headers:
                out_headers.append(BatchHeader(n, h.name, h.value))
            origins.append(i)
    events = wit.EventBatch(
        wit.ByteColumn(b"".join(out_values), out_ends),
        wit.ByteColumn(b"".join(out_keys), out_key_ends),
        out_keyless,
        out_ts,
        out_headers,
    )
    return wit.TransformOutput(events, origins, errors)


def _plain(e):
    """True for an Event whose fields need no conversion or check."""
    return (
        type(e) is Event and type(e.value) is bytes and type(e.timestamp) is int
        and _S64_MIN <= e.timestamp <= _S64_MAX and e.key is None and not e.headers
    )


def _checked(e):
    """``e`` with bytes fields and a valid timestamp, or raises TypeError."""
    if not hasattr(e, "value") or not hasattr(e, "timestamp"):
        raise TypeError(
            f"process_event returned {type(e).__name__}; expected an Event, a list of Events or None"
        )
    value = _as_bytes(e.value, "value")
    key = None if e.key is None else _as_bytes(e.key, "key")
    ts = e.timestamp
    if type(ts) is not int or not _S64_MIN <= ts <= _S64_MAX:
        raise TypeError(f"event timestamp must be a 64-bit int (ms), got {ts!r}")
    headers = []
    for h in getattr(e, "headers", None) or ():
        if type(h.name) is not str:
            raise TypeError(f"header name must be str, got {type(h.name).__name__}")
        headers.append(Header(h.name, _as_bytes(h.value, "header value")))
    return _event(key, value, ts, headers)


def _as_bytes(v, what):
    if type(v) is bytes:
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode("utf-8")
    raise TypeError(f"event {what} must be bytes or str, got {type(v).__name__}")


def udf_world(plugin, wit):
    """A ``WitWorld`` class for the udf world around ``plugin``."""
    Ok, Err = wit.Ok, wit.Err
    functions = {name: (method, params, result) for name, method, params, result in udf_functions(plugin)}
    signatures = [
        wit.FunctionSignature(name, [scalar_type(wit, t) for t in params], scalar_type(wit, result))
        for name, (_, params, result) in functions.items()
    ]
    lift = {
        wit.Scalar_Null: NULL, wit.Scalar_Boolean: BOOLEAN, wit.Scalar_Int: INT,
        wit.Scalar_Float: FLOAT, wit.Scalar_Str: STR, wit.Scalar_Bytes: BYTES,
    }

    def arg(scalar, expected, position):
        kind = lift.get(type(scalar))
        if kind is None:
            raise PluginError(f"argument {position}: not a scalar")
        if kind == NULL:
            return None
        if expected == ANY or expected == kind:
            return scalar.value
        if expected == FLOAT and kind == INT:
            return float(scalar.value)
        raise PluginError(f"argument {position}: expected {expected}, got {kind}")

    def call(self, name, rows):
        entry = functions.get(name)
        if entry is None:
            return [Err(f"unknown function {name!r}")] * len(rows)
        method, params, result_type = entry
        arity = len(params)
        out = []
        append = out.append
        for row in rows:
            try:
                if len(row) != arity:
                    raise PluginError(f"expected {arity} argument(s), got {len(row)}")
                args = [arg(s, t, i + 1) for i, (s, t) in enumerate(zip(row, params))]
                append(Ok(to_scalar(wit, method(*args), result_type)))
            except Exception as e:  # noqa: BLE001 - one row's failure is that row's error
                append(Err(describe(e)))
        return out

    def get_functions(self):
        return list(signatures)

    def init(self, config):
        run_init(plugin, config, Err)

    return type("WitWorld", (wit.WitWorld,), {"init": init, "functions": get_functions, "call": call})


def scalar_type(wit, name):
    return getattr(wit.ScalarType, name.upper())


def to_scalar(wit, value, declared):
    """Lowers a UDF's Python result to a scalar of its declared type."""
    if value is None:
        return wit.Scalar_Null()
    if isinstance(value, bool):
        kind = BOOLEAN
    elif isinstance(value, int):
        if not _S64_MIN <= value <= _S64_MAX:
            raise PluginError("int result out of the 64-bit range")
        kind = INT
    elif isinstance(value, float):
        kind = FLOAT
    elif isinstance(value, str):
        kind = STR
    elif isinstance(value, (bytes, bytearray, memoryview)):
        value, kind = bytes(value), BYTES
    else:
        raise PluginError(f"unsupported result type {type(value).__name__}")
    if declared == FLOAT and kind == INT:
        value, kind = float(value), FLOAT
    elif declared not in (ANY, kind):
        raise PluginError(f"declared result {declared}, returned {kind}")
    cls = {BOOLEAN: wit.Scalar_Boolean, INT: wit.Scalar_Int, FLOAT: wit.Scalar_Float, STR: wit.Scalar_Str, BYTES: wit.Scalar_Bytes}[kind]
    return cls(value)
