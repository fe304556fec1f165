package sdk

import (
	"encoding/binary"
	"errors"
	"strings"
	"unicode/utf8"
)

// writer lays out an export's results in one byte buffer. Pointers are
// first written relative to the buffer's start and recorded in relocs;
// relocate turns them into addresses once the buffer's final address is
// known (appending may move the buffer while encoding).
//
// The buffer is reused from call to call (see the wasm glue), so encoding a
// batch allocates nothing once it has grown to the batch's size.
type writer struct {
	buf    []byte
	relocs []uint32
}

// reset prepares the writer for the next call. A buffer that grew for one
// unusually large batch is dropped once a call uses under a quarter of it,
// so it does not stay live forever.
func (w *writer) reset() {
	if cap(w.buf) > 8<<20 && len(w.buf) < cap(w.buf)/4 {
		w.buf, w.relocs = nil, nil
		return
	}
	w.buf = w.buf[:0]
	w.relocs = w.relocs[:0]
}

// alloc reserves size zeroed bytes at the given alignment (relative to the
// buffer start, which the glue places at an 8-aligned address).
func (w *writer) alloc(size, align uint32) uint32 {
	start := (uint32(len(w.buf)) + align - 1) &^ (align - 1)
	end := int(start) + int(size)
	if end > cap(w.buf) {
		grown := make([]byte, len(w.buf), max(2*cap(w.buf), end, 256))
		copy(grown, w.buf)
		w.buf = grown
	}
	old := len(w.buf)
	w.buf = w.buf[:end]
	clear(w.buf[old:end])
	return start
}

func (w *writer) u8(at uint32, v byte)    { w.buf[at] = v }
func (w *writer) u32(at uint32, v uint32) { binary.LittleEndian.PutUint32(w.buf[at:], v) }
func (w *writer) u64(at uint32, v uint64) { binary.LittleEndian.PutUint64(w.buf[at:], v) }

// list writes a (ptr, len) pair pointing at offset target.
func (w *writer) list(at, target, n uint32) {
	if n == 0 {
		return // (0, 0): an empty list needs no storage (0 is aligned and in bounds)
	}
	w.u32(at, target)
	w.u32(at+4, n)
	w.relocs = append(w.relocs, at)
}

func (w *writer) bytes(at uint32, b []byte) {
	if len(b) == 0 {
		return
	}
	p := w.alloc(uint32(len(b)), 1)
	copy(w.buf[p:], b)
	w.list(at, p, uint32(len(b)))
}

func (w *writer) str(at uint32, s string) {
	if len(s) == 0 {
		return
	}
	p := w.alloc(uint32(len(s)), 1)
	copy(w.buf[p:], s)
	w.list(at, p, uint32(len(s)))
}

// relocate adds base, the buffer's address, to every recorded pointer.
func (w *writer) relocate(base uint32) {
	for _, at := range w.relocs {
		w.u32(at, w.u32get(at)+base)
	}
}

func (w *writer) u32get(at uint32) uint32 { return binary.LittleEndian.Uint32(w.buf[at:]) }

// encodeInitResult writes a result<_, string>; it returns the offset of
// the return area.
func encodeInitResult(w *writer, err error) uint32 {
	ret := w.alloc(initResultSize, initResultAlign)
	if err != nil {
		w.u8(ret, 1)
		w.str(ret+initResultPayloadOff, validUTF8(err.Error()))
	}
	return ret
}

// encodeOutcomes writes the list<event-outcome> returned by `process`; it
// returns the offset of the (ptr, len) return area.
func encodeOutcomes(w *writer, outs []outcome) uint32 {
	ret := w.alloc(retListSize, retListAlign)
	n := uint32(len(outs))
	list := w.alloc(n*outcomeSize, outcomeAlign)
	w.list(ret, list, n)
	for i, o := range outs {
		at := list + uint32(i)*outcomeSize
		if o.failed {
			w.u8(at, 1)
			w.str(at+outcomePayloadOff, validUTF8(o.err))
			continue
		}
		m := uint32(len(o.events))
		evs := w.alloc(m*eventSize, eventAlign)
		w.list(at+outcomePayloadOff, evs, m)
		for j := range o.events {
			encodeEvent(w, evs+uint32(j)*eventSize, &o.events[j])
		}
	}
	return ret
}

func encodeEvent(w *writer, at uint32, e *Event) {
	if e.Key != nil {
		w.u8(at+eventKeyTagOff, 1)
		w.bytes(at+eventKeyListOff, e.Key)
	}
	w.bytes(at+eventValueOff, e.Value)
	w.u64(at+eventTimestampOff, uint64(e.Timestamp))
	n := uint32(len(e.Headers))
	hs := w.alloc(n*headerSize, headerAlign)
	w.list(at+eventHeadersOff, hs, n)
	for k, h := range e.Headers {
		ha := hs + uint32(k)*headerSize
		w.str(ha+headerNameOff, h.Name)
		w.bytes(ha+headerValueOff, h.Value)
	}
}

// encodeSignatures writes the list<function-signature> of `functions`.
func encodeSignatures(w *writer, sigs []signature) uint32 {
	ret := w.alloc(retListSize, retListAlign)
	n := uint32(len(sigs))
	list := w.alloc(n*signatureSize, signatureAlign)
	w.list(ret, list, n)
	for i, s := range sigs {
		at := list + uint32(i)*signatureSize
		w.str(at+signatureNameOff, s.name)
		np := uint32(len(s.params))
		ps := w.alloc(np, 1)
		for k, p := range s.params {
			w.buf[ps+uint32(k)] = byte(p)
		}
		w.list(at+signatureParamsOff, ps, np)
		w.u8(at+signatureResultOff, byte(s.result))
	}
	return ret
}

// encodeScalarResults writes the list<result<scalar, string>> of `call`.
func encodeScalarResults(w *writer, results []scalarResult) uint32 {
	ret := w.alloc(retListSize, retListAlign)
	n := uint32(len(results))
	list := w.alloc(n*scalarResultSize, scalarResultAlign)
	w.list(ret, list, n)
	for i := range results {
		r := &results[i]
		at := list + uint32(i)*scalarResultSize
		pay := at + scalarResultPayloadOff
		if r.failed {
			w.u8(at, 1)
			w.str(pay, validUTF8(r.err))
			continue
		}
		encodeScalar(w, pay, &r.value)
	}
	return ret
}

func encodeScalar(w *writer, at uint32, s *Scalar) {
	w.u8(at, byte(s.kind))
	pay := at + scalarPayloadOff
	switch s.kind {
	case Bool:
		w.u8(pay, byte(s.num&1))
	case Int, Float:
		w.u64(pay, s.num)
	case Str:
		w.str(pay, s.str)
	case Bytes:
		w.bytes(pay, s.raw)
	}
}

// The canonical ABI requires strings to be valid UTF-8: the host refuses
// the whole call otherwise. Error messages are repaired; values a plugin
// returns as strings are rejected (one row or event fails, not the batch).
func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

var errInvalidUTF8 = errors.New("string is not valid UTF-8")

func checkUTF8(s string) error {
	if !utf8.ValidString(s) {
		return errInvalidUTF8
	}
	return nil
}
