"""Stand-ins for the classes componentize-py generates (same shapes as
``componentize-py -d wit -w transform bindings``), so the adapter is tested
without building a component."""

import types
from dataclasses import dataclass
from enum import Enum
from typing import Generic, List, Optional, TypeVar

from streamhost.event import _extend_generated

T = TypeVar("T")
E = TypeVar("E")


@dataclass
class Ok(Generic[T]):
    value: T


@dataclass(frozen=True)
class Err(Generic[E], Exception):
    value: E


@dataclass
class Header:
    name: str
    value: bytes


@dataclass
class Event:
    key: Optional[bytes]
    value: bytes
    timestamp: int
    headers: List[Header]


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


# As streamhost.event does to the generated class inside a component.
_extend_generated(Event)


class WitWorld:
    """The generated protocol class the adapter's WitWorld subclasses."""


def namespace():
    return types.SimpleNamespace(
        Ok=Ok, Err=Err, WitWorld=WitWorld, Event=Event, Header=Header, FunctionSignature=FunctionSignature,
        ScalarType=ScalarType, Scalar_Null=Scalar_Null, Scalar_Boolean=Scalar_Boolean, Scalar_Int=Scalar_Int,
        Scalar_Float=Scalar_Float, Scalar_Str=Scalar_Str, Scalar_Bytes=Scalar_Bytes,
    )
