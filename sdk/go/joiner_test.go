package sdk

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// lowerJoinArgs stores join's parameter tuple the way the host does (offsets
// worked out by hand: inputs @0, mains @8, matches @64, match-mains @120,
// match-inputs @128, 136 bytes, 4-aligned) and returns its address.
func lowerJoinArgs(h *fakeHost, inputs []string, mains, matches []Event, mm, mi []uint32) uint32 {
	strs := h.alloc(uint32(8*len(inputs)), 4)
	for i, s := range inputs {
		h.putBytes(strs+uint32(8*i), []byte(s))
	}
	a, b := lowerBatch(h, mains), lowerBatch(h, matches)
	u32s := func(v []uint32) listArg {
		p := h.alloc(uint32(4*len(v)), 4)
		for i, x := range v {
			h.putU32(p+uint32(4*i), x)
		}
		return listArg{p, uint32(len(v))}
	}
	l1, l2 := u32s(mm), u32s(mi)
	args := h.alloc(136, 4)
	put := func(at uint32, l listArg) { h.putU32(at, l.ptr); h.putU32(at+4, l.n) }
	put(args, listArg{strs, uint32(len(inputs))})
	for base, bt := range map[uint32]batchArgs{8: a, 64: b} {
		put(args+base, bt.values.data)
		put(args+base+8, bt.values.ends)
		put(args+base+16, bt.keys.data)
		put(args+base+24, bt.keys.ends)
		put(args+base+32, bt.keyless)
		put(args+base+40, bt.timestamps)
		put(args+base+48, bt.headers)
	}
	put(args+120, l1)
	put(args+128, l2)
	return args
}

func TestDecodeJoinArgs(t *testing.T) {
	h := newFakeHost(0x2000)
	mains := sampleEvents()
	matches := []Event{{Key: []byte("c"), Value: []byte("click"), Timestamp: 3}, {Value: []byte("like"), Timestamp: 4}}
	ptr := lowerJoinArgs(h, []string{"clicks", "likes"}, mains, matches, []uint32{0, 3}, []uint32{0, 1})
	got := decodeJoinArgs(h.mem(), ptr)
	want := joinArgs{inputs: []string{"clicks", "likes"}, mains: mains, matches: matches, matchMains: []uint32{0, 3}, matchInputs: []uint32{0, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %#v\nwant %#v", got, want)
	}
}

func TestJoinGroupsMatchesAndIsolatesFailures(t *testing.T) {
	resetRegistry()
	RegisterJoiner(func(main Event, m *Matches) ([]Event, error) {
		switch string(main.Value) {
		case "bad":
			return nil, errors.New("no ids")
		case "panic":
			var x map[string]int
			x["y"] = 1
		case "none":
			return nil, nil
		}
		var parts []string
		for _, in := range m.Inputs() {
			for _, e := range m.Get(in) {
				parts = append(parts, in+"="+string(e.Value))
			}
		}
		main.Value = []byte(fmt.Sprintf("%s:%d:%s", main.Value, m.Len(), strings.Join(parts, ",")))
		return []Event{main}, nil
	})
	h := newFakeHost(0x100)
	mains := []Event{{Value: []byte("a"), Timestamp: 1}, {Value: []byte("bad")}, {Value: []byte("panic")}, {Value: []byte("none")}, {Value: []byte("b"), Key: []byte("k"), Timestamp: 5}}
	matches := []Event{{Value: []byte("c1")}, {Value: []byte("l1")}, {Value: []byte("c2")}, {Value: []byte("x")}, {Value: []byte("c3")}}
	// Main 4 gets a click and a like; main 0 two clicks; one match names an
	// input out of range and one a main out of range (both ignored).
	ptr := lowerJoinArgs(h, []string{"clicks", "likes"}, mains, matches, []uint32{0, 4, 0, 9, 4}, []uint32{0, 1, 0, 0, 7})
	outs := joinBatch(decodeJoinArgs(h.mem(), ptr))
	if len(outs) != 5 {
		t.Fatalf("%d outcomes", len(outs))
	}
	if v := string(outs[0].events[0].Value); v != "a:2:clicks=c1,clicks=c2" {
		t.Fatalf("main 0: %q", v)
	}
	if !outs[1].failed || outs[1].err != "no ids" || !outs[2].failed || !strings.HasPrefix(outs[2].err, "panic: ") {
		t.Fatalf("failures %+v %+v", outs[1], outs[2])
	}
	if outs[3].failed || len(outs[3].events) != 0 {
		t.Fatalf("main 3: %+v", outs[3])
	}
	if e := outs[4].events[0]; string(e.Value) != "b:1:likes=l1" || string(e.Key) != "k" || e.Timestamp != 5 {
		t.Fatalf("main 4: %+v", e)
	}
}

func TestJoinWithoutJoinerFailsEveryMainEvent(t *testing.T) {
	resetRegistry()
	RegisterTransform(func(e Event) ([]Event, error) { return []Event{e}, nil })
	outs := joinBatch(joinArgs{inputs: []string{"c"}, mains: []Event{{Value: []byte("a")}}})
	if len(outs) != 1 || !outs[0].failed || !strings.Contains(outs[0].err, "registers no joiner") {
		t.Fatalf("%+v", outs)
	}
}

func TestNewMatchesForNativeTests(t *testing.T) {
	m := NewMatches([]string{"clicks", "likes"}, [][]Event{{{Value: []byte("c")}}})
	if m.Len() != 1 || len(m.Get("clicks")) != 1 || m.Get("likes") != nil || m.Get("other") != nil {
		t.Fatalf("%+v", m)
	}
}
