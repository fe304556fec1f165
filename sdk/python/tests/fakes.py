"""Stand-ins for the classes componentize-py generates (same shapes as
``componentize-py -d wit -w transform bindings``), so the adapter is tested
without building a component."""

import types
from dataclasses import dataclass
from enum import Enum
from typing import Generic, List, Optional, TypeVar

from streamhost.event import Event, Header

T = TypeVar("T")
E = TypeVar("E")


@dataclass
class Ok(Generic[T]):
    value: T


@dataclass(frozen=True)
class Err(Generic[E], Exception):
    value: E


@dataclass
class ByteColumn:
    data: bytes
    ends: List[int]


@dataclass
class BatchHeader:
    event: int
    name: str
    value: bytes


@dataclass
class EventBatch:
    values: ByteColumn
    keys: ByteColumn
    keyless: List[int]
    timestamps: List[int]
    headers: List[BatchHeader]


@dataclass
class EventError:
    event: int
    message: str


@dataclass
class TransformOutput:
    events: EventBatch
    origins: List[int]
    errors: List[EventError]


@dataclass
class AddOutput:
    states: ByteColumn
    errors: List[EventError]


@dataclass
class Scalar_Null:
    pass


@dataclass
class Scalar_Boolean:
    value: bool


@dataclass
class Scalar_Int:
    value: int


@dataclass
class Scalar_Float:
    value: float


@dataclass
class Scalar_Str:
    value: str


@dataclass
class Scalar_Bytes:
    value: bytes


class ScalarType(Enum):
    NULL = 0
    BOOLEAN = 1
    INT = 2
    FLOAT = 3
    STR = 4
    BYTES = 5
    ANY = 6


@dataclass
class FunctionSignature:
    name: str
    params: List[ScalarType]
    result: ScalarType


class WitWorld:
    """The generated protocol class the adapter's WitWorld subclasses."""


def namespace():
    return types.SimpleNamespace(
        Ok=Ok, Err=Err, WitWorld=WitWorld, ByteColumn=ByteColumn, BatchHeader=BatchHeader, EventBatch=EventBatch,
        EventError=EventError, TransformOutput=TransformOutput, AddOutput=AddOutput, FunctionSignature=FunctionSignature,
        ScalarType=ScalarType, Scalar_Null=Scalar_Null, Scalar_Boolean=Scalar_Boolean, Scalar_Int=Scalar_Int,
        Scalar_Float=Scalar_Float, Scalar_Str=Scalar_Str, Scalar_Bytes=Scalar_Bytes,
    )


def column(items):
    ends, total = [], 0
    for item in items:
        total += len(item)
        ends.append(total)
    return ByteColumn(b"".join(items), ends)


def pack(events):
    """The EventBatch the host would send for ``events`` (streamhost.Event)."""
    return EventBatch(
        column([e.value for e in events]),
        column([e.key or b"" for e in events]),
        [i for i, e in enumerate(events) if e.key is None],
        [e.timestamp for e in events],
        [BatchHeader(i, h.name, h.value) for i, e in enumerate(events) for h in e.headers],
    )


def items(col):
    out, start = [], 0
    for end in col.ends:
        out.append(col.data[start:end])
        start = end
    return out


def unpack(output, n):
    """One entry per input, as the host reads a TransformOutput: a list of
    output Events or Err(message). Checks the layout on the way."""
    batch = output.events
    values, keys = items(batch.values), items(batch.keys)
    count = len(batch.timestamps)
    assert len(values) == len(keys) == len(output.origins) == count, "columns disagree"
    assert output.origins == sorted(output.origins), "origins out of order"
    events = [
        Event(None if i in batch.keyless else keys[i], values[i], batch.timestamps[i], [])
        for i in range(count)
    ]
    for h in batch.headers:
        events[h.event].headers.append(Header(h.name, h.value))
    result = [[] for _ in range(n)]
    for e, origin in zip(events, output.origins):
        result[origin].append(e)
    for err in output.errors:
        assert result[err.event] == [], "an input with an error has outputs"
        result[err.event] = Err(err.message)
    return result
