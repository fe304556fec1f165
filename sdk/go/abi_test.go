package sdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
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

// lowerBatch lowers events as an event-batch the way the host does, with
// hand-worked layouts: byte columns as (data list<u8>, ends list<u32>);
// keyless and timestamps as list<u32> and list<s64> (8-aligned); headers
// as a list of 20-byte records {event u32 @0, name @4, value @12}.
func lowerBatch(h *fakeHost, events []Event) batchArgs {
	col := func(item func(e *Event) []byte) column {
		var data []byte
		ends := h.alloc(uint32(4*len(events)), 4)
		for i := range events {
			data = append(data, item(&events[i])...)
			h.putU32(ends+uint32(4*i), uint32(len(data)))
		}
		d := h.alloc(uint32(len(data)), 1)
		copy(h.at(d), data)
		return column{data: listArg{d, uint32(len(data))}, ends: listArg{ends, uint32(len(events))}}
	}
	var b batchArgs
	b.values = col(func(e *Event) []byte { return e.Value })
	b.keys = col(func(e *Event) []byte { return e.Key })
	var keyless []uint32
	var nh uint32
	for i, e := range events {
		if e.Key == nil {
			keyless = append(keyless, uint32(i))
		}
		nh += uint32(len(e.Headers))
	}
	kl := h.alloc(uint32(4*len(keyless)), 4)
	for j, i := range keyless {
		h.putU32(kl+uint32(4*j), i)
	}
	b.keyless = listArg{kl, uint32(len(keyless))}
	ts := h.alloc(uint32(8*len(events)), 8)
	for i, e := range events {
		h.putU64(ts+uint32(8*i), uint64(e.Timestamp))
	}
	b.timestamps = listArg{ts, uint32(len(events))}
	hs := h.alloc(20*nh, 4)
	at := hs
	for i, e := range events {
		for _, hd := range e.Headers {
			h.putU32(at, uint32(i))
			h.putBytes(at+4, []byte(hd.Name))
			h.putBytes(at+12, hd.Value)
			at += 20
		}
	}
	b.headers = listArg{hs, nh}
	return b
}

func sampleEvents() []Event {
	return []Event{
		{Key: []byte("k1"), Value: []byte("v"), Timestamp: -5, Headers: []Header{{"a", []byte("1")}, {"b", []byte{}}}},
		{Key: nil, Value: []byte{}, Timestamp: 1700000000000, Headers: []Header{{"c", []byte("xyz")}}},
		{Key: []byte{}, Value: []byte(`{"n":2}`), Timestamp: 0},
		{Key: []byte("k3"), Value: []byte("w"), Timestamp: math.MaxInt64, Headers: []Header{{"héader", []byte{0, 0xff}}}},
	}
}

func TestDecodeBatch(t *testing.T) {
	h := newFakeHost(0x1000)
	want := sampleEvents()
	b := lowerBatch(h, want)
	got := decodeBatch(h.mem(), b)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %#v\nwant %#v", got, want)
	}
	if got[1].Key != nil {
		t.Fatal("a keyless event must decode to a nil key")
	}
	if got[2].Key == nil {
		t.Fatal("a present, empty key must decode to a non-nil key")
	}
	if got[2].Headers != nil {
		t.Fatalf("an event without headers got %#v", got[2].Headers)
	}
}

func TestDecodeBatchByHand(t *testing.T) {
	// Two events lowered without lowerBatch: values "ab", "c"; keys
	// keyless, "K"; timestamps 7, -1; headers (out of event order) for
	// event 1 "x"="1", event 0 "y"="", event 1 "z"="2".
	h := newFakeHost(0x40)
	vdata := h.alloc(3, 1)
	copy(h.at(vdata), "abc")
	vends := h.alloc(8, 4)
	h.putU32(vends, 2)
	h.putU32(vends+4, 3)
	kdata := h.alloc(1, 1)
	copy(h.at(kdata), "K")
	kends := h.alloc(8, 4)
	h.putU32(kends, 0)
	h.putU32(kends+4, 1)
	kl := h.alloc(4, 4)
	h.putU32(kl, 0)
	ts := h.alloc(16, 8)
	h.putU64(ts, 7)
	h.putU64(ts+8, uint64(0xFFFFFFFFFFFFFFFF))
	hs := h.alloc(60, 4)
	for j, hd := range []struct {
		ev          uint32
		name, value string
	}{{1, "x", "1"}, {0, "y", ""}, {1, "z", "2"}} {
		at := hs + uint32(20*j)
		h.putU32(at, hd.ev)
		h.putBytes(at+4, []byte(hd.name))
		h.putBytes(at+12, []byte(hd.value))
	}
	b := batchArgs{
		values:     column{listArg{vdata, 3}, listArg{vends, 2}},
		keys:       column{listArg{kdata, 1}, listArg{kends, 2}},
		keyless:    listArg{kl, 1},
		timestamps: listArg{ts, 2},
		headers:    listArg{hs, 3},
	}
	got := decodeBatch(h.mem(), b)
	want := []Event{
		{Value: []byte("ab"), Timestamp: 7, Headers: []Header{{"y", []byte{}}}},
		{Key: []byte("K"), Value: []byte("c"), Timestamp: -1, Headers: []Header{{"x", []byte("1")}, {"z", []byte("2")}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %#v\nwant %#v", got, want)
	}
}

func TestDecodeBatchCopiesOutOfArenaAndIsolatesEvents(t *testing.T) {
	h := newFakeHost(8)
	b := lowerBatch(h, sampleEvents())
	evs := decodeBatch(h.mem(), b)
	for i := range h.buf {
		h.buf[i] = 0xAA // the arena is reused by the next call
	}
	want := sampleEvents()
	if !reflect.DeepEqual(evs, want) {
		t.Fatalf("decoded events alias the arena: %#v", evs)
	}
	// Events share column buffers: growing one must never write into the next.
	evs[0].Value = append(evs[0].Value, "XYZ"...)
	evs[0].Key = append(evs[0].Key, '!')
	evs[0].Headers[1].Value = append(evs[0].Headers[1].Value, '?')
	evs[0].SetHeader("new", []byte("h"))
	if !reflect.DeepEqual(evs[1:], want[1:]) {
		t.Fatalf("appending to event 0 changed its neighbours:\n%#v", evs[1:])
	}
	evs[1].Headers = append(evs[1].Headers, Header{"d", nil}) // event 3's header is next in the shared array
	if !reflect.DeepEqual(evs[2:], want[2:]) || !reflect.DeepEqual(evs[1].Headers[0], want[1].Headers[0]) {
		t.Fatalf("appending to event 1's headers changed event 3's:\n%#v", evs[1:])
	}
	if string(evs[0].Value) != "vXYZ" || string(evs[0].Key) != "k1!" || len(evs[0].Headers) != 3 {
		t.Fatalf("event 0: %#v", evs[0])
	}
}

func TestDecodeBatchEmpty(t *testing.T) {
	if evs := decodeBatch(memory{}, batchArgs{}); len(evs) != 0 {
		t.Fatalf("%#v", evs)
	}
}

func TestDecodeRejectsMalformedBatches(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(h *fakeHost, b *batchArgs)
	}{
		{"values data below the view", func(h *fakeHost, b *batchArgs) { b.values.data.ptr = 0x50 }},
		{"values data past the view", func(h *fakeHost, b *batchArgs) { b.values.data.n = 1 << 20 }},
		{"header list past the view", func(h *fakeHost, b *batchArgs) { b.headers.n = 1 << 30 }},
		{"an end past its data", func(h *fakeHost, b *batchArgs) { h.putU32(b.values.ends.ptr+12, 1000) }},
		{"decreasing ends", func(h *fakeHost, b *batchArgs) { h.putU32(b.keys.ends.ptr, 2); h.putU32(b.keys.ends.ptr+4, 1) }},
		{"fewer keys than values", func(h *fakeHost, b *batchArgs) { b.keys.ends.n-- }},
		{"fewer timestamps than values", func(h *fakeHost, b *batchArgs) { b.timestamps.n-- }},
		{"keyless index out of range", func(h *fakeHost, b *batchArgs) { h.putU32(b.keyless.ptr, 4) }},
		{"header of a missing event", func(h *fakeHost, b *batchArgs) { h.putU32(b.headers.ptr+20, 9) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(0x100)
			b := lowerBatch(h, sampleEvents())
			tc.spoil(h, &b)
			defer func() {
				if recover() == nil {
					t.Fatal("expected a panic")
				}
			}()
			decodeBatch(h.mem(), b)
		})
	}
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

// output reads a transform-output return area by hand: events @0 (7
// lists: values data/ends @0/@8, keys data/ends @16/@24, keyless @32,
// timestamps @40, headers @48), origins @56, errors @64.
type output struct {
	r   readBack
	ret uint32
}

func (o output) list(off uint32) (uint32, uint32) {
	return o.r.u32(o.ret + off), o.r.u32(o.ret + off + 4)
}

func (o output) u32s(t *testing.T, off uint32) []uint32 {
	t.Helper()
	p, n := o.list(off)
	if p%4 != 0 {
		t.Fatalf("list<u32> @%d at unaligned %#x", off, p)
	}
	out := []uint32{}
	for i := uint32(0); i < n; i++ {
		out = append(out, o.r.u32(p+4*i))
	}
	return out
}

// column returns the items of the byte column at off, checking its ends.
func (o output) column(t *testing.T, off uint32) [][]byte {
	t.Helper()
	ends := o.u32s(t, off+8)
	dp, dn := o.list(off)
	data := []byte{}
	if dn > 0 {
		data = o.r.buf[dp-o.r.base : dp-o.r.base+dn]
	}
	items := [][]byte{}
	var prev uint32
	for _, e := range ends {
		if e < prev || e > dn {
			t.Fatalf("column @%d: ends %v over %d bytes", off, ends, dn)
		}
		items = append(items, data[prev:e])
		prev = e
	}
	if len(ends) > 0 && prev != dn {
		t.Fatalf("column @%d: last end %d, data %d bytes", off, prev, dn)
	}
	return items
}

// batchArgs reads the event-batch at the start of the return area, so the
// SDK's own decoder can read the output back.
func (o output) batchArgs() batchArgs {
	l := func(off uint32) listArg { p, n := o.list(off); return listArg{p, n} }
	return batchArgs{
		values:     column{l(0), l(8)},
		keys:       column{l(16), l(24)},
		keyless:    l(32),
		timestamps: l(40),
		headers:    l(48),
	}
}

func encodeOutput(outs []outcome, base uint32) output {
	var w writer
	ret := encodeTransformOutput(&w, outs)
	r, retAddr := finish(&w, ret, base)
	return output{r, retAddr}
}

func TestEncodeTransformOutput(t *testing.T) {
	o := encodeOutput([]outcome{
		{events: []Event{ // input 0: fan-out of two
			{Key: []byte("key"), Value: []byte(`{"a":1}`), Timestamp: 42, Headers: []Header{{"h", []byte("x")}}},
			{Value: []byte("second"), Timestamp: -1}, // keyless
		}},
		{err: "bad \xff record", failed: true}, // input 1: error, repaired to UTF-8
		{},                                     // input 2: dropped
		{events: []Event{ // input 3: an empty, present key and two headers
			{Key: []byte{}, Value: []byte("third"), Timestamp: 7, Headers: []Header{{"p", nil}, {"q", []byte("2")}}},
		}},
		{err: "", failed: true}, // input 4: an empty error message
	}, 0x40000)
	if o.ret%4 != 0 {
		t.Fatalf("return area at %#x", o.ret)
	}
	if got := o.column(t, 0); !reflect.DeepEqual(got, [][]byte{[]byte(`{"a":1}`), []byte("second"), []byte("third")}) {
		t.Fatalf("values %q", got)
	}
	if got := o.column(t, 16); !reflect.DeepEqual(got, [][]byte{[]byte("key"), {}, {}}) {
		t.Fatalf("keys %q", got)
	}
	if got := o.u32s(t, 32); !reflect.DeepEqual(got, []uint32{1}) {
		t.Fatalf("keyless %v", got)
	}
	tp, tn := o.list(40)
	if tn != 3 || tp%8 != 0 || o.r.u64(tp) != 42 || int64(o.r.u64(tp+8)) != -1 || o.r.u64(tp+16) != 7 {
		t.Fatalf("timestamps at %#x len %d", tp, tn)
	}
	hp, hn := o.list(48)
	if hn != 3 || hp%4 != 0 {
		t.Fatalf("headers at %#x len %d", hp, hn)
	}
	for i, want := range []struct {
		ev          uint32
		name, value string
	}{{0, "h", "x"}, {2, "p", ""}, {2, "q", "2"}} {
		at := hp + uint32(20*i)
		if o.r.u32(at) != want.ev || string(o.r.bytes(at+4)) != want.name || string(o.r.bytes(at+12)) != want.value {
			t.Fatalf("header %d: event %d %q=%q", i, o.r.u32(at), o.r.bytes(at+4), o.r.bytes(at+12))
		}
	}
	if got := o.u32s(t, 56); !reflect.DeepEqual(got, []uint32{0, 0, 3}) {
		t.Fatalf("origins %v", got)
	}
	ep, en := o.list(64)
	if en != 2 || ep%4 != 0 {
		t.Fatalf("errors at %#x len %d", ep, en)
	}
	if o.r.u32(ep) != 1 || string(o.r.bytes(ep+4)) != "bad \uFFFD record" {
		t.Fatalf("error 0: event %d %q", o.r.u32(ep), o.r.bytes(ep+4))
	}
	if o.r.u32(ep+12) != 4 || o.r.u32(ep+20) != 0 {
		t.Fatalf("error 1: event %d len %d", o.r.u32(ep+12), o.r.u32(ep+20))
	}
}

func TestEncodeTransformOutputNothing(t *testing.T) {
	for _, outs := range [][]outcome{nil, {{}, {}}} { // no input; inputs all dropped
		o := encodeOutput(outs, 0x100)
		for off := uint32(0); off < 72; off += 4 {
			if v := o.r.u32(o.ret + off); v != 0 {
				t.Fatalf("%d outcomes: word @%d is %#x, want every list (0, 0)", len(outs), off, v)
			}
		}
	}
}

// The output's event-batch has the input's layout: the SDK's decoder reads
// back exactly what its encoder wrote, for random events.
func TestTransformOutputRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bytesOf := func(max int) []byte {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for round := 0; round < 50; round++ {
		var outs []outcome
		var want []Event
		var wantOrigins []uint32
		for i := rng.IntN(40); i > 0; i-- {
			if rng.IntN(6) == 0 {
				outs = append(outs, outcome{err: "e", failed: true})
				continue
			}
			var o outcome
			for j := rng.IntN(4); j > 0; j-- {
				e := Event{Value: bytesOf(50), Timestamp: int64(rng.Uint64())}
				switch rng.IntN(3) {
				case 0: // keyless
				case 1:
					e.Key = []byte{}
				default:
					e.Key = bytesOf(10)
				}
				for k := rng.IntN(3); k > 0; k-- {
					e.Headers = append(e.Headers, Header{Name: strings.Repeat("hé", rng.IntN(3)), Value: bytesOf(8)})
				}
				o.events = append(o.events, e)
				want = append(want, e)
				wantOrigins = append(wantOrigins, uint32(len(outs)))
			}
			outs = append(outs, o)
		}
		o := encodeOutput(outs, 0x10000)
		got := decodeBatch(memory{buf: o.r.buf, base: o.r.base}, o.batchArgs())
		if len(got) != len(want) {
			t.Fatalf("round %d: %d events, want %d", round, len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if !bytes.Equal(g.Value, w.Value) || !bytes.Equal(g.Key, w.Key) || (g.Key == nil) != (w.Key == nil) ||
				g.Timestamp != w.Timestamp || len(g.Headers) != len(w.Headers) {
				t.Fatalf("round %d event %d: got %#v want %#v", round, i, g, w)
			}
			for k := range w.Headers {
				if g.Headers[k].Name != w.Headers[k].Name || !bytes.Equal(g.Headers[k].Value, w.Headers[k].Value) {
					t.Fatalf("round %d event %d header %d: got %#v want %#v", round, i, k, g.Headers[k], w.Headers[k])
				}
			}
		}
		if got := o.u32s(t, 56); len(want) > 0 && !reflect.DeepEqual(got, wantOrigins) {
			t.Fatalf("round %d: origins %v want %v", round, got, wantOrigins)
		}
	}
}

func TestEncodeTransformOutputBoundsTheResult(t *testing.T) {
	big := make([]byte, 1<<20)
	many := make([]Event, 2100) // 2100 MiB if encoded, all one slice
	for i := range many {
		many[i] = Event{Value: big}
	}
	o := encodeOutput([]outcome{
		{events: []Event{{Value: big}}},
		{events: many},
		{events: []Event{{Value: []byte("small")}}},
	}, 0)
	if got := o.u32s(t, 56); !reflect.DeepEqual(got, []uint32{0, 2}) {
		t.Fatalf("origins %v", got)
	}
	ep, en := o.list(64)
	if en != 1 || o.r.u32(ep) != 1 || !strings.Contains(string(o.r.bytes(ep+4)), "do not fit") {
		t.Fatalf("errors: %d, event %d %q", en, o.r.u32(ep), o.r.bytes(ep+4))
	}
	if items := o.column(t, 0); len(items) != 2 || len(items[0]) != 1<<20 || string(items[1]) != "small" {
		t.Fatalf("values: %d items", len(items))
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
	encodeTransformOutput(&w, []outcome{{err: strings.Repeat("x", 100), failed: true}, {events: []Event{{Value: []byte("v")}}}})
	w.reset()
	ret := encodeTransformOutput(&w, []outcome{{}})
	r, retAddr := finish(&w, ret, 0)
	for off := uint32(0); off < 72; off += 4 {
		if r.u32(retAddr+off) != 0 {
			t.Fatal("stale bytes from the previous call leaked into the results")
		}
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
