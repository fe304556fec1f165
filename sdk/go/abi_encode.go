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

// maxResultBytes bounds the encoded transform-output of one batch: every
// pointer and length must fit in 32 bits, and a handler returning the same
// large slice in many events could otherwise exceed that without using the
// memory. An event whose outputs would cross it fails alone.
const maxResultBytes = 1 << 31

const errResultTooLarge = "the outputs of this event do not fit in the batch's result (2 GiB)"

// resultCost is about how many bytes an outcome adds to the result
// (alignment padding included, a little generously).
func resultCost(o *outcome) uint64 {
	if o.failed {
		return uint64(len(o.err)) + eventErrorSize + 8
	}
	var n uint64
	for i := range o.events {
		e := &o.events[i]
		n += uint64(len(e.Value)) + uint64(len(e.Key)) + 4 + 4 + 4 + 8 + 4 // ends, keyless, timestamp, origin
		for _, h := range e.Headers {
			n += uint64(len(h.Name)) + uint64(len(h.Value)) + batchHeaderSize + 8
		}
	}
	return n
}

// encodeTransformOutput writes the transform-output returned by `process`
// from outs, the outcome of each input event in input order; it returns
// the offset of the return area. Each byte column is one data buffer and
// its ends; the outputs are grouped by input, so origins, keyless and
// errors come out ascending as the WIT requires.
func encodeTransformOutput(w *writer, outs []outcome) uint32 {
	// Pass 1: the size of every column, so each is one contiguous area.
	var total uint64
	var nEvents, nKeyless, nHeaders, nErrors, valueBytes, keyBytes uint32
	for i := range outs {
		o := &outs[i]
		cost := resultCost(o)
		if total+cost > maxResultBytes {
			*o = outcome{err: errResultTooLarge, failed: true}
			cost = resultCost(o)
		}
		total += cost
		if o.failed {
			nErrors++
			continue
		}
		for j := range o.events {
			e := &o.events[j]
			nEvents++
			valueBytes += uint32(len(e.Value))
			keyBytes += uint32(len(e.Key))
			if e.Key == nil {
				nKeyless++
			}
			nHeaders += uint32(len(e.Headers))
		}
	}

	ret := w.alloc(outputSize, outputAlign)
	values := w.alloc(valueBytes, 1)
	valueEnds := w.alloc(nEvents*u32Size, u32Align)
	keys := w.alloc(keyBytes, 1)
	keyEnds := w.alloc(nEvents*u32Size, u32Align)
	keyless := w.alloc(nKeyless*u32Size, u32Align)
	stamps := w.alloc(nEvents*s64Size, s64Align)
	headers := w.alloc(nHeaders*batchHeaderSize, batchHeaderAlign)
	origins := w.alloc(nEvents*u32Size, u32Align)
	errs := w.alloc(nErrors*eventErrorSize, eventErrorAlign)

	batch := ret + outputEventsOff
	w.list(batch+batchValuesOff+byteColumnDataOff, values, valueBytes)
	w.list(batch+batchValuesOff+byteColumnEndsOff, valueEnds, nEvents)
	w.list(batch+batchKeysOff+byteColumnDataOff, keys, keyBytes)
	w.list(batch+batchKeysOff+byteColumnEndsOff, keyEnds, nEvents)
	w.list(batch+batchKeylessOff, keyless, nKeyless)
	w.list(batch+batchTimestampsOff, stamps, nEvents)
	w.list(batch+batchHeadersOff, headers, nHeaders)
	w.list(ret+outputOriginsOff, origins, nEvents)
	w.list(ret+outputErrorsOff, errs, nErrors)

	// Pass 2: fill the columns. Strings and header values are allocated
	// as they come (w.buf may move; offsets stay valid).
	var ev, kl, hd, er, vEnd, kEnd uint32
	for i := range outs {
		o := &outs[i]
		if o.failed {
			at := errs + er*eventErrorSize
			w.u32(at+eventErrorEventOff, uint32(i))
			w.str(at+eventErrorMessageOff, validUTF8(o.err))
			er++
			continue
		}
		for j := range o.events {
			e := &o.events[j]
			vEnd += uint32(copy(w.buf[values+vEnd:], e.Value))
			w.u32(valueEnds+ev*u32Size, vEnd)
			if e.Key == nil {
				w.u32(keyless+kl*u32Size, ev)
				kl++
			} else {
				kEnd += uint32(copy(w.buf[keys+kEnd:], e.Key))
			}
			w.u32(keyEnds+ev*u32Size, kEnd)
			w.u64(stamps+ev*s64Size, uint64(e.Timestamp))
			for _, h := range e.Headers {
				at := headers + hd*batchHeaderSize
				w.u32(at+batchHeaderEventOff, ev)
				w.str(at+batchHeaderNameOff, h.Name)
				w.bytes(at+batchHeaderValueOff, h.Value)
				hd++
			}
			w.u32(origins+ev*u32Size, uint32(i))
			ev++
		}
	}
	return ret
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
