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

// elems is slice for a list of n elements of size bytes each, with the
// product computed without wrapping around.
func (m memory) elems(ptr, n, size uint32) []byte {
	total := uint64(n) * uint64(size)
	if total > uint64(len(m.buf)) {
		outOfBoundsList(ptr, n, size)
	}
	return m.slice(ptr, uint32(total))
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

//go:noinline
func outOfBoundsList(ptr, n, size uint32) {
	panic(fmt.Sprintf("canonical ABI: %d elements of %d bytes at %#x are outside the argument memory", n, size, ptr))
}

// copyBytes copies a list<u8> out of memory: the arena is reused after
// the call, so nothing handed to plugin code may alias it.
func (m memory) copyBytes(ptr, n uint32) []byte {
	out := make([]byte, n)
	copy(out, m.slice(ptr, n))
	return out
}

func (m memory) copyString(ptr, n uint32) string { return string(m.slice(ptr, n)) }

// listArg is one list as lowered by the host: (ptr, len) in elements.
type listArg struct{ ptr, n uint32 }

// column is a byte-column: one data buffer and the end offset of each item.
type column struct{ data, ends listArg }

// batchArgs is an event-batch as `process` receives it: the record's 7
// lists flattened into 14 parameters, in field order.
type batchArgs struct {
	values, keys        column
	keyless, timestamps listArg
	headers             listArg
}

// decodeBatch reads the events of an event-batch. Every byte of it is
// copied out of the arena (which the next call reuses), one Go buffer per
// column: all values share one buffer, all keys another, all header values
// a third and all header names one string; each event's slices are cut
// from them with their capacity capped at their own length, so appending
// to one never writes into the next. An inconsistent batch (columns of
// different lengths, ends out of order or past the data, indices out of
// range) panics: it would be a host bug, never read silently.
func decodeBatch(m memory, b batchArgs) []Event {
	n := b.values.ends.n
	if b.keys.ends.n != n || b.timestamps.n != n {
		panic(fmt.Sprintf("canonical ABI: event-batch of %d values, %d keys, %d timestamps",
			n, b.keys.ends.n, b.timestamps.n))
	}
	if n == 0 {
		return nil
	}
	values := m.copyBytes(b.values.data.ptr, b.values.data.n)
	keys := m.copyBytes(b.keys.data.ptr, b.keys.data.n)
	valueEnds := m.elems(b.values.ends.ptr, n, u32Size)
	keyEnds := m.elems(b.keys.ends.ptr, n, u32Size)
	stamps := m.elems(b.timestamps.ptr, n, s64Size)

	events := make([]Event, n)
	var vStart, kStart uint32
	for i := range events {
		e := &events[i]
		vEnd := binary.LittleEndian.Uint32(valueEnds[4*i:])
		kEnd := binary.LittleEndian.Uint32(keyEnds[4*i:])
		e.Value = cut(values, vStart, vEnd)
		e.Key = cut(keys, kStart, kEnd) // non-nil even when empty: a present, empty key
		e.Timestamp = int64(binary.LittleEndian.Uint64(stamps[8*i:]))
		vStart, kStart = vEnd, kEnd
	}
	kl := m.elems(b.keyless.ptr, b.keyless.n, u32Size)
	for j := uint32(0); j < b.keyless.n; j++ {
		i := binary.LittleEndian.Uint32(kl[4*j:])
		if i >= n {
			panic(fmt.Sprintf("canonical ABI: keyless event %d of %d", i, n))
		}
		events[i].Key = nil
	}
	decodeHeaders(m, b.headers, events)
	return events
}

// cut returns buf[start:end:end], panicking when the range is not inside
// buf; never nil.
func cut(buf []byte, start, end uint32) []byte {
	if start > end || uint64(end) > uint64(len(buf)) {
		panic(fmt.Sprintf("canonical ABI: byte-column item [%d, %d) of a %d-byte column", start, end, len(buf)))
	}
	return buf[start:end:end]
}

// decodeHeaders reads a list<batch-header> and hands each event its
// headers, in list order. The host sends them ordered by event; they are
// grouped by a counting pass so that order is not relied on.
func decodeHeaders(m memory, hs listArg, events []Event) {
	if hs.n == 0 {
		return
	}
	n := uint32(len(events))
	m.elems(hs.ptr, hs.n, batchHeaderSize) // bounds check once, before allocating
	// starts[i] becomes the index in all of event i's first header.
	starts := make([]uint32, n+1)
	var nameBytes, valueBytes uint64
	for j := uint32(0); j < hs.n; j++ {
		at := hs.ptr + j*batchHeaderSize
		ev := m.u32(at + batchHeaderEventOff)
		if ev >= n {
			panic(fmt.Sprintf("canonical ABI: header of event %d of %d", ev, n))
		}
		starts[ev+1]++
		nameBytes += uint64(m.u32(at + batchHeaderNameOff + 4))
		valueBytes += uint64(m.u32(at + batchHeaderValueOff + 4))
	}
	for i := uint32(1); i <= n; i++ {
		starts[i] += starts[i-1]
	}
	all := make([]Header, hs.n)
	nameBuf := make([]byte, 0, nameBytes)
	valueBuf := make([]byte, 0, valueBytes)
	type rng struct{ start, end int }
	nameSpans := make([]rng, hs.n)
	next := starts[:n] // next free slot of each event, advanced as headers are placed
	for j := uint32(0); j < hs.n; j++ {
		at := hs.ptr + j*batchHeaderSize
		ev := m.u32(at + batchHeaderEventOff)
		slot := next[ev]
		next[ev]++
		np, nn := m.list(at + batchHeaderNameOff)
		nameSpans[slot] = rng{len(nameBuf), len(nameBuf) + int(nn)}
		nameBuf = append(nameBuf, m.slice(np, nn)...)
		vp, vn := m.list(at + batchHeaderValueOff)
		v := len(valueBuf)
		valueBuf = append(valueBuf, m.slice(vp, vn)...)
		all[slot].Value = valueBuf[v:len(valueBuf):len(valueBuf)]
	}
	names := string(nameBuf) // one allocation; each name is a substring
	for j := range all {
		all[j].Name = names[nameSpans[j].start:nameSpans[j].end]
	}
	// After placing, next[i] (= starts[i]) is the end of event i's headers.
	var from uint32
	for i := range events {
		to := next[i]
		if to > from {
			events[i].Headers = all[from:to:to]
		}
		from = to
	}
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

// batchAt reads the (ptr, len) pairs of an event-batch stored in memory at
// ptr (a joiner's parameters are passed that way).
func batchAt(m memory, ptr uint32) batchArgs {
	m.slice(ptr, batchSize)
	l := func(off uint32) listArg {
		p, n := m.list(ptr + off)
		return listArg{p, n}
	}
	return batchArgs{
		values:     column{data: l(batchValuesOff + byteColumnDataOff), ends: l(batchValuesOff + byteColumnEndsOff)},
		keys:       column{data: l(batchKeysOff + byteColumnDataOff), ends: l(batchKeysOff + byteColumnEndsOff)},
		keyless:    l(batchKeylessOff),
		timestamps: l(batchTimestampsOff),
		headers:    l(batchHeadersOff),
	}
}

// decodeStrings copies a list<string> out of memory.
func decodeStrings(m memory, ptr, n uint32) []string {
	m.slice(ptr, n*listSize)
	out := make([]string, n)
	for i := range out {
		p, l := m.list(ptr + uint32(i)*listSize)
		out[i] = m.copyString(p, l)
	}
	return out
}

// decodeU32s copies a list<u32> out of memory.
func decodeU32s(m memory, ptr, n uint32) []uint32 {
	b := m.elems(ptr, n, u32Size)
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

// joinArgs is a joiner call's parameters, decoded.
type joinArgs struct {
	inputs                  []string
	mains, matches          []Event
	matchMains, matchInputs []uint32
}

// decodeJoinArgs reads join's parameter tuple stored at ptr.
func decodeJoinArgs(m memory, ptr uint32) joinArgs {
	m.slice(ptr, joinArgsSize)
	ip, in := m.list(ptr + joinArgsInputsOff)
	mp, mn := m.list(ptr + joinArgsMatchMainsOff)
	kp, kn := m.list(ptr + joinArgsMatchInputsOff)
	return joinArgs{
		inputs:      decodeStrings(m, ip, in),
		mains:       decodeBatch(m, batchAt(m, ptr+joinArgsMainsOff)),
		matches:     decodeBatch(m, batchAt(m, ptr+joinArgsMatchesOff)),
		matchMains:  decodeU32s(m, mp, mn),
		matchInputs: decodeU32s(m, kp, kn),
	}
}
