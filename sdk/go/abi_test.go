package sdk

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// The tests below write and read memory with literal offsets worked out by
// hand from the canonical ABI, independently of abi_layout.go's constants.

// fakeHost lowers values the way the host does: a bump allocator over a
// buffer that starts at address base.
type fakeHost struct {
	buf  []byte
	base uint32
}

func newFakeHost(base uint32) *fakeHost { return &fakeHost{base: base} }

func (h *fakeHost) alloc(size, align uint32) uint32 {
	off := (uint32(len(h.buf)) + align - 1) &^ (align - 1)
	h.buf = append(h.buf, make([]byte, off+size-uint32(len(h.buf)))...)
	return h.base + off
}
func (h *fakeHost) at(addr uint32) []byte        { return h.buf[addr-h.base:] }
func (h *fakeHost) putU8(addr uint32, v byte)    { h.at(addr)[0] = v }
func (h *fakeHost) putU32(addr uint32, v uint32) { binary.LittleEndian.PutUint32(h.at(addr), v) }
func (h *fakeHost) putU64(addr uint32, v uint64) { binary.LittleEndian.PutUint64(h.at(addr), v) }
func (h *fakeHost) mem() memory                  { return memory{buf: h.buf, base: h.base} }
func (h *fakeHost) putBytes(addr uint32, b []byte) {
	p := h.alloc(uint32(len(b)), 1)
	copy(h.at(p), b)
	h.putU32(addr, p)
	h.putU32(addr+4, uint32(len(b)))
}

func TestDecodeEvents(t *testing.T) {
	h := newFakeHost(0x1000)
	list := h.alloc(2*40, 8)
	// event 0: key Some("k1"), value "v", ts -5, headers [("a","1"),("b","")]
	e0 := list
	h.putU8(e0, 1)
	h.putBytes(e0+4, []byte("k1"))
	h.putBytes(e0+12, []byte("v"))
	h.putU64(e0+24, uint64(0xFFFFFFFFFFFFFFFB))
	hs := h.alloc(2*16, 4)
	h.putBytes(hs, []byte("a"))
	h.putBytes(hs+8, []byte("1"))
	h.putBytes(hs+16, []byte("b"))
	h.putU32(e0+32, hs)
	h.putU32(e0+36, 2)
	// event 1: key Some(""), empty value, ts 1700000000000, no headers
	e1 := list + 40
	h.putU8(e1, 1)
	h.putU64(e1+24, 1700000000000)

	got := decodeEvents(h.mem(), list, 2)
	want := []Event{
		{Key: []byte("k1"), Value: []byte("v"), Timestamp: -5, Headers: []Header{{"a", []byte("1")}, {"b", []byte{}}}},
		{Key: []byte{}, Value: []byte{}, Timestamp: 1700000000000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	if got[1].Key == nil {
		t.Fatal("Some(empty key) must decode to a non-nil key")
	}
	// None key.
	h.putU8(e1, 0)
	if k := decodeEvents(h.mem(), list, 2)[1].Key; k != nil {
		t.Fatalf("None key decoded as %#v", k)
	}
}

func TestDecodeEventsCopiesOutOfArena(t *testing.T) {
	h := newFakeHost(8)
	list := h.alloc(40, 8)
	h.putBytes(list+12, []byte("payload"))
	evs := decodeEvents(h.mem(), list, 1)
	for i := range h.buf {
		h.buf[i] = 0xAA // the arena is reused by the next call
	}
	if string(evs[0].Value) != "payload" {
		t.Fatalf("decoded value aliases the arena: %q", evs[0].Value)
	}
}

func TestDecodeRejectsOutOfBounds(t *testing.T) {
	h := newFakeHost(0x100)
	list := h.alloc(40, 8)
	h.putU32(list+12, 0x50) // below base
	h.putU32(list+16, 4)
	defer func() {
		if recover() == nil {
			t.Fatal("expected a panic for a pointer outside the view")
		}
	}()
	decodeEvents(h.mem(), list, 1)
}

func putScalar(h *fakeHost, at uint32, tag byte, payload func(p uint32)) {
	h.putU8(at, tag)
	if payload != nil {
		payload(at + 8)
	}
}

func TestDecodeRows(t *testing.T) {
	h := newFakeHost(0x20000)
	rows := h.alloc(3*8, 4)
	// row 0: [str "héllo", int -7, float 2.5]
	r0 := h.alloc(3*16, 8)
	putScalar(h, r0, 4, func(p uint32) { h.putBytes(p, []byte("héllo")) })
	putScalar(h, r0+16, 2, func(p uint32) { h.putU64(p, uint64(0xFFFFFFFFFFFFFFF9)) })
	putScalar(h, r0+32, 3, func(p uint32) { h.putU64(p, math.Float64bits(2.5)) })
	h.putU32(rows, r0)
	h.putU32(rows+4, 3)
	// row 1: empty
	// row 2: [null, bool true, bytes {1,2}]
	r2 := h.alloc(3*16, 8)
	putScalar(h, r2, 0, nil)
	putScalar(h, r2+16, 1, func(p uint32) { h.putU8(p, 1) })
	putScalar(h, r2+32, 5, func(p uint32) { h.putBytes(p, []byte{1, 2}) })
	h.putU32(rows+16, r2)
	h.putU32(rows+20, 3)

	got := decodeRows(h.mem(), rows, 3, &rowBuffers{})
	want := [][]Scalar{
		{StrValue("héllo"), IntValue(-7), FloatValue(2.5)},
		{},
		{NullValue(), BoolValue(true), BytesValue([]byte{1, 2})},
	}
	if len(got) != 3 || len(got[1]) != 0 {
		t.Fatalf("rows: %v", got)
	}
	for i := range want {
		for j := range want[i] {
			if !reflect.DeepEqual(got[i][j], want[i][j]) {
				t.Errorf("row %d col %d: got %v want %v", i, j, got[i][j], want[i][j])
			}
		}
	}
	// Appending to one row must not clobber the next (rows share a backing array).
	_ = append(got[0], IntValue(99))
	if got[1] != nil && len(got[1]) != 0 || !reflect.DeepEqual(got[2][0], NullValue()) {
		t.Fatal("rows alias each other")
	}
}

// readBack is a hand-written reader of the results the writer produced.
type readBack struct {
	buf  []byte
	base uint32
}

func (r readBack) u8(a uint32) byte    { return r.buf[a-r.base] }
func (r readBack) u32(a uint32) uint32 { return binary.LittleEndian.Uint32(r.buf[a-r.base:]) }
func (r readBack) u64(a uint32) uint64 { return binary.LittleEndian.Uint64(r.buf[a-r.base:]) }
func (r readBack) bytes(a uint32) []byte {
	p, n := r.u32(a), r.u32(a+4)
	if n == 0 {
		return []byte{}
	}
	return r.buf[p-r.base : p-r.base+n]
}

func finish(w *writer, ret uint32, base uint32) (readBack, uint32) {
	w.relocate(base)
	return readBack{buf: w.buf, base: base}, base + ret
}

func TestEncodeOutcomes(t *testing.T) {
	var w writer
	outs := []outcome{
		{events: []Event{
			{Key: []byte("key"), Value: []byte(`{"a":1}`), Timestamp: 42, Headers: []Header{{"h", []byte("x")}}},
			{Value: []byte("second"), Timestamp: -1},
		}},
		{err: "bad \xff record", failed: true},
		{}, // filtered out: zero events
	}
	ret := encodeOutcomes(&w, outs)
	r, retAddr := finish(&w, ret, 0x40000)
	list, n := r.u32(retAddr), r.u32(retAddr+4)
	if n != 3 || list%4 != 0 {
		t.Fatalf("list %#x len %d", list, n)
	}
	// outcome 0: ok, 2 events, each 40 bytes, 8-aligned
	if r.u8(list) != 0 {
		t.Fatal("outcome 0 tag")
	}
	evs, m := r.u32(list+4), r.u32(list+8)
	if m != 2 || evs%8 != 0 {
		t.Fatalf("events %#x len %d", evs, m)
	}
	if r.u8(evs) != 1 || string(r.bytes(evs+4)) != "key" || string(r.bytes(evs+12)) != `{"a":1}` || r.u64(evs+24) != 42 {
		t.Fatal("event 0 fields")
	}
	hs, hn := r.u32(evs+32), r.u32(evs+36)
	if hn != 1 || string(r.bytes(hs)) != "h" || string(r.bytes(hs+8)) != "x" {
		t.Fatal("event 0 header")
	}
	e1 := evs + 40
	if r.u8(e1) != 0 || string(r.bytes(e1+12)) != "second" || int64(r.u64(e1+24)) != -1 || r.u32(e1+36) != 0 {
		t.Fatal("event 1 fields")
	}
	// outcome 1: err, repaired to valid UTF-8
	if r.u8(list+12) != 1 || string(r.bytes(list+16)) != "bad \uFFFD record" {
		t.Fatalf("outcome 1: tag %d msg %q", r.u8(list+12), r.bytes(list+16))
	}
	// outcome 2: ok, empty list
	if r.u8(list+24) != 0 || r.u32(list+32) != 0 {
		t.Fatal("outcome 2")
	}
}

func TestEncodeScalarResults(t *testing.T) {
	var w writer
	res := []scalarResult{
		{value: IntValue(-3)},
		{value: FloatValue(0.125)},
		{value: StrValue("mobile")},
		{value: BytesValue([]byte{9})},
		{value: BoolValue(true)},
		{value: NullValue()},
		{err: "boom", failed: true},
	}
	ret := encodeScalarResults(&w, res)
	r, retAddr := finish(&w, ret, 0x80)
	list, n := r.u32(retAddr), r.u32(retAddr+4)
	if n != 7 || list%8 != 0 {
		t.Fatalf("list %#x len %d", list, n)
	}
	el := func(i uint32) uint32 { return list + 24*i }
	check := func(i uint32, tag byte) {
		t.Helper()
		if r.u8(el(i)) != 0 || r.u8(el(i)+8) != tag {
			t.Fatalf("result %d: result tag %d scalar tag %d", i, r.u8(el(i)), r.u8(el(i)+8))
		}
	}
	check(0, 2)
	if int64(r.u64(el(0)+16)) != -3 {
		t.Fatal("int payload")
	}
	check(1, 3)
	if math.Float64frombits(r.u64(el(1)+16)) != 0.125 {
		t.Fatal("float payload")
	}
	check(2, 4)
	if string(r.bytes(el(2)+16)) != "mobile" {
		t.Fatal("str payload")
	}
	check(3, 5)
	if string(r.bytes(el(3)+16)) != "\x09" {
		t.Fatal("bytes payload")
	}
	check(4, 1)
	if r.u8(el(4)+16) != 1 {
		t.Fatal("bool payload")
	}
	check(5, 0)
	if r.u8(el(6)) != 1 || string(r.bytes(el(6)+8)) != "boom" {
		t.Fatal("error result")
	}
}

func TestEncodeSignaturesAndInit(t *testing.T) {
	var w writer
	ret := encodeSignatures(&w, []signature{
		{name: "ctr", params: []Type{Int, Int}, result: Float},
		{name: "now", result: Int},
	})
	r, retAddr := finish(&w, ret, 0x1000)
	list, n := r.u32(retAddr), r.u32(retAddr+4)
	if n != 2 {
		t.Fatal("len")
	}
	if string(r.bytes(list)) != "ctr" || !reflect.DeepEqual(r.bytes(list+8), []byte{2, 2}) || r.u8(list+16) != 3 {
		t.Fatal("signature 0")
	}
	s1 := list + 20
	if string(r.bytes(s1)) != "now" || r.u32(s1+12) != 0 || r.u8(s1+16) != 2 {
		t.Fatal("signature 1")
	}

	w.reset()
	ret = encodeInitResult(&w, nil)
	r, retAddr = finish(&w, ret, 0x1000)
	if r.u8(retAddr) != 0 {
		t.Fatal("ok init")
	}
	w.reset()
	ret = encodeInitResult(&w, errors.New("no config"))
	r, retAddr = finish(&w, ret, 0x1000)
	if r.u8(retAddr) != 1 || string(r.bytes(retAddr+4)) != "no config" {
		t.Fatal("err init")
	}
}

func TestWriterReuseClearsStaleBytes(t *testing.T) {
	var w writer
	encodeOutcomes(&w, []outcome{{err: strings.Repeat("x", 100), failed: true}})
	w.reset()
	ret := encodeOutcomes(&w, []outcome{{}})
	r, retAddr := finish(&w, ret, 0)
	list := r.u32(retAddr)
	if r.u8(list) != 0 || r.u32(list+4) != 0 || r.u32(list+8) != 0 {
		t.Fatal("stale bytes from the previous call leaked into the results")
	}
}

func TestWriterDropsAnOversizedBuffer(t *testing.T) {
	var w writer
	w.alloc(16<<20, 1)
	w.reset() // the big call itself: kept
	if cap(w.buf) < 16<<20 {
		t.Fatal("buffer dropped right after the call that needed it")
	}
	w.alloc(100, 1)
	w.reset() // a small call after it: dropped
	if cap(w.buf) != 0 {
		t.Fatalf("oversized buffer kept: cap %d", cap(w.buf))
	}
}
