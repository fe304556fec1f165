package sdk

import (
	"fmt"
	"math"
)

// Event is one event flowing through a pipeline: one row of a WIT
// `types.event-batch` (the SDK converts the batch's columns to and from
// Events).
//
// The Key, Value and header values of an input event are cut from buffers
// shared by the whole batch (one per column; each slice's capacity ends at
// its own length, so appending never touches another event). Keeping one
// of them keeps that buffer alive: copy it (bytes.Clone) to keep a small
// part of a large batch for long.
type Event struct {
	// Key is the optional partitioning / join key. nil means "no key"; a
	// non-nil empty slice is a present, empty key.
	Key []byte
	// Value is the payload; JSON (UTF-8) by convention.
	Value []byte
	// Timestamp is the event time in milliseconds since the Unix epoch.
	Timestamp int64
	// Headers is free-form metadata carried along with the event.
	Headers []Header
}

// Header is one event header (a WIT `types.batch-header` without its
// event index). Name must be valid UTF-8.
type Header struct {
	Name  string
	Value []byte
}

// HeaderValue returns the value of the first header called name.
func (e *Event) HeaderValue(name string) ([]byte, bool) {
	for _, h := range e.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return nil, false
}

// SetHeader replaces the first header called name, or appends one.
func (e *Event) SetHeader(name string, value []byte) {
	for i := range e.Headers {
		if e.Headers[i].Name == name {
			e.Headers[i].Value = value
			return
		}
	}
	e.Headers = append(e.Headers, Header{Name: name, Value: value})
}

// Type is the declared type of a UDF argument or result (WIT
// `types.scalar-type`); the constants are in WIT order, which is also the
// order of the `scalar` variant's cases.
type Type uint8

const (
	// NullType accepts or returns only null.
	NullType Type = iota
	// Bool is a boolean.
	Bool
	// Int is a signed 64-bit integer.
	Int
	// Float is a 64-bit float.
	Float
	// Str is a UTF-8 string.
	Str
	// Bytes is raw bytes.
	Bytes
	// Any accepts any scalar; the function checks at run time.
	Any
)

func (t Type) String() string {
	switch t {
	case NullType:
		return "null"
	case Bool:
		return "bool"
	case Int:
		return "int"
	case Float:
		return "float"
	case Str:
		return "str"
	case Bytes:
		return "bytes"
	case Any:
		return "any"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Scalar is a typed value passed to and returned from UDFs (WIT
// `types.scalar`). The zero Scalar is null.
type Scalar struct {
	kind Type   // one of NullType..Bytes
	num  uint64 // bool (0/1), int64 bits or float64 bits
	str  string
	raw  []byte
}

// NullValue returns the null scalar.
func NullValue() Scalar { return Scalar{} }

// BoolValue returns a boolean scalar.
func BoolValue(b bool) Scalar {
	s := Scalar{kind: Bool}
	if b {
		s.num = 1
	}
	return s
}

// IntValue returns an integer scalar.
func IntValue(i int64) Scalar { return Scalar{kind: Int, num: uint64(i)} }

// FloatValue returns a float scalar.
func FloatValue(f float64) Scalar { return Scalar{kind: Float, num: math.Float64bits(f)} }

// StrValue returns a string scalar. s must be valid UTF-8.
func StrValue(s string) Scalar { return Scalar{kind: Str, str: s} }

// BytesValue returns a bytes scalar.
func BytesValue(b []byte) Scalar { return Scalar{kind: Bytes, raw: b} }

// Kind is the scalar's case: NullType, Bool, Int, Float, Str or Bytes.
func (s Scalar) Kind() Type { return s.kind }

// IsNull reports whether s is null.
func (s Scalar) IsNull() bool { return s.kind == NullType }

// Bool returns the boolean, if s is one.
func (s Scalar) Bool() (bool, bool) { return s.num != 0, s.kind == Bool }

// Int returns the integer, if s is one.
func (s Scalar) Int() (int64, bool) { return int64(s.num), s.kind == Int }

// Float returns the float, if s is one.
func (s Scalar) Float() (float64, bool) { return math.Float64frombits(s.num), s.kind == Float }

// Number returns s as a float64 if it is an int or a float.
func (s Scalar) Number() (float64, bool) {
	switch s.kind {
	case Int:
		return float64(int64(s.num)), true
	case Float:
		return math.Float64frombits(s.num), true
	}
	return 0, false
}

// Str returns the string, if s is one.
func (s Scalar) Str() (string, bool) { return s.str, s.kind == Str }

// Bytes returns the bytes, if s is one.
func (s Scalar) Bytes() ([]byte, bool) { return s.raw, s.kind == Bytes }

// String renders s for messages and tests.
func (s Scalar) String() string {
	switch s.kind {
	case NullType:
		return "null"
	case Bool:
		return fmt.Sprintf("%t", s.num != 0)
	case Int:
		return fmt.Sprintf("%d", int64(s.num))
	case Float:
		return fmt.Sprintf("%g", math.Float64frombits(s.num))
	case Str:
		return fmt.Sprintf("%q", s.str)
	case Bytes:
		return fmt.Sprintf("bytes(%x)", s.raw)
	}
	return "invalid"
}

// Level is the severity of a log line (WIT `host.level`).
type Level uint8

const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)
