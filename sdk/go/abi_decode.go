package sdk

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// memory is a view of linear memory: buf[0] is at address base. In the
// plugin it covers the argument arena; in native tests, a test buffer.
// Reads outside the view panic (a malformed pointer from the host is a bug,
// never silently read).
type memory struct {
	buf  []byte
	base uint32
}

func (m memory) slice(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	off := uint64(ptr) - uint64(m.base) // wraps to huge when ptr < base
	end := off + uint64(n)
	if ptr < m.base || end > uint64(len(m.buf)) {
		outOfBounds(ptr, n)
	}
	return m.buf[off:end:end]
}

// The fixed-size readers run a few times per row, so they are kept small
// enough to inline: an address below base wraps around to a huge offset and
// Go's own bounds check panics, like any other address outside the view.

func (m memory) u8(ptr uint32) byte    { return m.buf[ptr-m.base] }
func (m memory) u32(ptr uint32) uint32 { return binary.LittleEndian.Uint32(m.buf[ptr-m.base:]) }
func (m memory) u64(ptr uint32) uint64 { return binary.LittleEndian.Uint64(m.buf[ptr-m.base:]) }
func (m memory) list(ptr uint32) (uint32, uint32) {
	b := m.buf[ptr-m.base:][:8]
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
}

//go:noinline
func outOfBounds(ptr, n uint32) {
	panic(fmt.Sprintf("canonical ABI: [%#x, +%d) is outside the argument memory", ptr, n))
}

// copyBytes copies a list<u8> out of memory: the arena is reused after
// the call, so nothing handed to plugin code may alias it.
func (m memory) copyBytes(ptr, n uint32) []byte {
	out := make([]byte, n)
	copy(out, m.slice(ptr, n))
	return out
}

func (m memory) copyString(ptr, n uint32) string { return string(m.slice(ptr, n)) }

// decodeEvents reads a list<event> of n elements at ptr.
func decodeEvents(m memory, ptr, n uint32) []Event {
	if n == 0 {
		return nil
	}
	m.slice(ptr, n*eventSize) // bounds check once, before allocating n events
	events := make([]Event, n)
	for i := range events {
		at := ptr + uint32(i)*eventSize
		e := &events[i]
		switch tag := m.u8(at + eventKeyTagOff); tag {
		case 0:
		case 1:
			kp, kn := m.list(at + eventKeyListOff)
			e.Key = m.copyBytes(kp, kn) // non-nil even when empty: Some([])
		default:
			panic(fmt.Sprintf("canonical ABI: option tag %d", tag))
		}
		vp, vn := m.list(at + eventValueOff)
		e.Value = m.copyBytes(vp, vn)
		e.Timestamp = int64(m.u64(at + eventTimestampOff))
		hp, hn := m.list(at + eventHeadersOff)
		if hn > 0 {
			m.slice(hp, hn*headerSize)
			e.Headers = make([]Header, hn)
			for j := range e.Headers {
				h := hp + uint32(j)*headerSize
				np, nn := m.list(h + headerNameOff)
				bp, bn := m.list(h + headerValueOff)
				e.Headers[j] = Header{Name: m.copyString(np, nn), Value: m.copyBytes(bp, bn)}
			}
		}
	}
	return events
}

// rowBuffers are the slices decodeRows fills, kept from call to call: the
// scalars and row headers are only valid during a call (UDFFunc says so).
// String and bytes payloads get a fresh buffer per batch, since plugin code
// may keep a string.
type rowBuffers struct {
	cells []Scalar
	rows  [][]Scalar
}

// decodeRows reads a list<list<scalar>> of n rows at ptr into buf. All
// scalars share one backing array and all string/bytes payloads one byte
// buffer, so a batch costs one allocation rather than a few per row.
func decodeRows(m memory, ptr, n uint32, buf *rowBuffers) [][]Scalar {
	if n == 0 {
		return nil
	}
	m.slice(ptr, n*listSize)
	var cells, payload uint64
	for i := uint32(0); i < n; i++ {
		sp, sn := m.list(ptr + i*listSize)
		m.slice(sp, sn*scalarSize)
		cells += uint64(sn)
		for j := uint32(0); j < sn; j++ {
			at := sp + j*scalarSize
			if tag := m.u8(at); tag == byte(Str) || tag == byte(Bytes) {
				payload += uint64(m.u32(at + scalarPayloadOff + 4))
			}
		}
	}
	all := resize(&buf.cells, int(cells))
	rows := resize(&buf.rows, int(n))
	data := make([]byte, 0, payload)
	next := 0
	for i := uint32(0); i < n; i++ {
		sp, sn := m.list(ptr + i*listSize)
		row := all[next : next+int(sn) : next+int(sn)]
		next += int(sn)
		for j := range row {
			at := sp + uint32(j)*scalarSize
			pay := at + scalarPayloadOff
			switch tag := Type(m.u8(at)); tag {
			case NullType:
			case Bool:
				row[j] = BoolValue(m.u8(pay) != 0)
			case Int:
				row[j] = Scalar{kind: Int, num: m.u64(pay)}
			case Float:
				row[j] = Scalar{kind: Float, num: m.u64(pay)}
			case Str, Bytes:
				bp, bn := m.list(pay)
				start := len(data)
				data = append(data, m.slice(bp, bn)...)
				b := data[start:len(data):len(data)]
				if tag == Str {
					row[j] = Scalar{kind: Str, str: bytesToString(b)}
				} else {
					row[j] = Scalar{kind: Bytes, raw: b}
				}
			default:
				panic(fmt.Sprintf("canonical ABI: scalar tag %d", tag))
			}
		}
		rows[i] = row
	}
	return rows
}

// resize returns (*s)[:n], zeroed, reallocating only when it is too small.
func resize[T any](s *[]T, n int) []T {
	if cap(*s) < n {
		*s = make([]T, n)
	}
	*s = (*s)[:n]
	clear(*s)
	return *s
}

// bytesToString aliases b: the payload buffer of decodeRows is never
// written again after decoding, so the strings are immutable as Go requires.
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// floatBits is used by tests and the encoder.
func floatBits(f float64) uint64 { return math.Float64bits(f) }
