package sdk

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func resetRegistry() {
	initFunc, transform, joiner, udfs, udfIndex, registerErrs = nil, nil, nil, nil, map[string]int{}, nil
}

func TestUDFChecksArityAndTypes(t *testing.T) {
	resetRegistry()
	RegisterUDF("ratio", []Type{Int, Float}, Float, func(a []Scalar) (Scalar, error) {
		if a[0].IsNull() || a[1].IsNull() {
			return NullValue(), nil
		}
		n, _ := a[0].Int()
		d, _ := a[1].Float() // an int argument arrives widened
		if d == 0 {
			return Scalar{}, errors.New("division by zero")
		}
		return FloatValue(float64(n) / d), nil
	})
	if err := runInit("null"); err != nil {
		t.Fatal(err)
	}
	rows := [][]Scalar{
		{IntValue(1), FloatValue(4)},
		{IntValue(3), IntValue(2)},
		{StrValue("x"), IntValue(2)},
		{IntValue(1)},
		{IntValue(1), FloatValue(0)},
		{NullValue(), FloatValue(1)},
	}
	got := callBatch("ratio", rows, new([]scalarResult))
	if v, _ := got[0].value.Float(); got[0].failed || v != 0.25 {
		t.Fatalf("row 0: %+v", got[0])
	}
	if v, _ := got[1].value.Float(); got[1].failed || v != 1.5 {
		t.Fatalf("row 1: %+v", got[1])
	}
	if !got[2].failed || got[2].err != "ratio: argument 1: expected int, got str" {
		t.Fatalf("row 2: %+v", got[2])
	}
	if !got[3].failed || !strings.Contains(got[3].err, "expected 2 argument(s), got 1") {
		t.Fatalf("row 3: %+v", got[3])
	}
	if !got[4].failed || got[4].err != "ratio: division by zero" {
		t.Fatalf("row 4: %+v", got[4])
	}
	if got[5].failed || !got[5].value.IsNull() {
		t.Fatalf("row 5: %+v", got[5])
	}
	for _, r := range callBatch("nope", rows[:2], new([]scalarResult)) {
		if !r.failed || r.err != `unknown function "nope"` {
			t.Fatalf("unknown function: %+v", r)
		}
	}
}

func TestUDFResultTypeAndPanics(t *testing.T) {
	resetRegistry()
	RegisterUDF("lies", nil, Int, func([]Scalar) (Scalar, error) { return StrValue("x"), nil })
	RegisterUDF("boom", nil, Any, func([]Scalar) (Scalar, error) { panic("kaput") })
	RegisterUDF("badutf8", nil, Str, func([]Scalar) (Scalar, error) { return StrValue("\xff"), nil })
	if r := callBatch("lies", [][]Scalar{{}}, new([]scalarResult))[0]; !r.failed || r.err != "lies: returned str, declared int" {
		t.Fatalf("%+v", r)
	}
	if r := callBatch("boom", [][]Scalar{{}}, new([]scalarResult))[0]; !r.failed || r.err != "boom: panic: kaput" {
		t.Fatalf("%+v", r)
	}
	if r := callBatch("badutf8", [][]Scalar{{}}, new([]scalarResult))[0]; !r.failed {
		t.Fatalf("invalid UTF-8 result accepted: %+v", r)
	}
	sigs := functionSignatures()
	if len(sigs) != 3 || sigs[0].name != "lies" || sigs[0].result != Int || sigs[1].result != Any {
		t.Fatalf("%+v", sigs)
	}
}

func TestRegistrationErrorsFailInit(t *testing.T) {
	resetRegistry()
	if err := runInit("null"); err == nil || !strings.Contains(err.Error(), "registers nothing") {
		t.Fatalf("empty plugin: %v", err)
	}
	RegisterUDF("f", nil, Int, func([]Scalar) (Scalar, error) { return IntValue(1), nil })
	RegisterUDF("f", nil, Int, func([]Scalar) (Scalar, error) { return IntValue(1), nil })
	if err := runInit("null"); err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Fatalf("duplicate: %v", err)
	}
	resetRegistry()
	RegisterTransform(func(e Event) ([]Event, error) { return []Event{e}, nil })
	OnInit(func(config string) error {
		if config != `{"x":1}` {
			return errors.New("bad config " + config)
		}
		return nil
	})
	if err := runInit(`{"x":1}`); err != nil {
		t.Fatal(err)
	}
	if err := runInit(`null`); err == nil {
		t.Fatal("init error not propagated")
	}
}

// process lowers events as the host would, runs the `process` export's
// path (decode, transform per event, encode) and returns the output.
func process(t *testing.T, events []Event) output {
	t.Helper()
	h := newFakeHost(0x10000)
	b := lowerBatch(h, events)
	var w writer
	ret := runProcess(h.mem(), b, &w)
	r, retAddr := finish(&w, ret, 0x800000)
	return output{r, retAddr}
}

// headerRows reads the output's headers as "event:name=value".
func (o output) headerRows() []string {
	p, n := o.list(48)
	rows := []string{}
	for i := uint32(0); i < n; i++ {
		at := p + 20*i
		rows = append(rows, fmt.Sprintf("%d:%s=%s", o.r.u32(at), o.r.bytes(at+4), o.r.bytes(at+12)))
	}
	return rows
}

// errorRows reads the output's errors as "event:message".
func (o output) errorRows() []string {
	p, n := o.list(64)
	rows := []string{}
	for i := uint32(0); i < n; i++ {
		at := p + 12*i
		rows = append(rows, fmt.Sprintf("%d:%s", o.r.u32(at), o.r.bytes(at+4)))
	}
	return rows
}

func strs(items [][]byte) []string {
	out := []string{}
	for _, b := range items {
		out = append(out, string(b))
	}
	return out
}

func TestProcessIsolatesFailuresPerEvent(t *testing.T) {
	resetRegistry()
	RegisterTransform(func(e Event) ([]Event, error) {
		switch string(e.Value) {
		case "drop":
			return nil, nil
		case "bad":
			return []Event{e}, errors.New("bad event") // the error wins over the outputs
		case "panic":
			var m map[string]int
			m["x"] = 1
		case "badheader":
			e.SetHeader("\xff", nil)
			return []Event{e}, nil
		case "split":
			a, b := e, e
			a.Value, b.Value = []byte("split-a"), []byte("split-b")
			b.Key = nil
			b.Headers = append([]Header{{"part", []byte("b")}}, e.Headers...)
			return []Event{a, b}, nil
		}
		e.SetHeader("seen", []byte("1"))
		return []Event{e}, nil
	})
	in := []Event{
		{Key: []byte("k0"), Value: []byte("keep"), Timestamp: 10, Headers: []Header{{"h", []byte("v")}}},
		{Key: []byte("k1"), Value: []byte("drop"), Timestamp: 11},
		{Value: []byte("bad"), Timestamp: 12},
		{Value: []byte("panic"), Timestamp: 13},
		{Key: []byte{}, Value: []byte("split"), Timestamp: 14, Headers: []Header{{"x", []byte("1")}}},
		{Value: []byte("badheader"), Timestamp: 15},
		{Value: []byte("keyless"), Timestamp: 16},
	}
	o := process(t, in)
	if got := strs(o.column(t, 0)); !reflect.DeepEqual(got, []string{"keep", "split-a", "split-b", "keyless"}) {
		t.Fatalf("values %q", got)
	}
	if got := strs(o.column(t, 16)); !reflect.DeepEqual(got, []string{"k0", "", "", ""}) {
		t.Fatalf("keys %q", got)
	}
	// split-a keeps its present, empty key; split-b and the keyless input have none.
	if got := o.u32s(t, 32); !reflect.DeepEqual(got, []uint32{2, 3}) {
		t.Fatalf("keyless %v", got)
	}
	tp, _ := o.list(40)
	for i, want := range []int64{10, 14, 14, 16} {
		if got := int64(o.r.u64(tp + 8*uint32(i))); got != want {
			t.Fatalf("timestamp %d: %d, want %d", i, got, want)
		}
	}
	if got := o.headerRows(); !reflect.DeepEqual(got, []string{"0:h=v", "0:seen=1", "1:x=1", "2:part=b", "2:x=1", "3:seen=1"}) {
		t.Fatalf("headers %q", got)
	}
	if got := o.u32s(t, 56); !reflect.DeepEqual(got, []uint32{0, 4, 4, 6}) {
		t.Fatalf("origins %v", got)
	}
	errs := o.errorRows()
	if len(errs) != 3 || errs[0] != "2:bad event" || !strings.HasPrefix(errs[1], "3:panic: ") ||
		errs[2] != "5:output header name: string is not valid UTF-8" {
		t.Fatalf("errors %q", errs)
	}
}

func TestProcessWithoutTransformFailsEveryEvent(t *testing.T) {
	resetRegistry()
	RegisterUDF("f", nil, Int, func([]Scalar) (Scalar, error) { return IntValue(1), nil })
	o := process(t, []Event{{Value: []byte("a")}, {Value: []byte("b")}})
	errs := o.errorRows()
	if len(errs) != 2 || !strings.HasPrefix(errs[0], "0:this plugin registers no transform") || !strings.HasPrefix(errs[1], "1:") {
		t.Fatalf("errors %q", errs)
	}
	if got := o.u32s(t, 56); len(got) != 0 {
		t.Fatalf("origins %v", got)
	}
}

func TestProcessPassesEventsThroughUnchanged(t *testing.T) {
	resetRegistry()
	var seen []Event
	RegisterTransform(func(e Event) ([]Event, error) {
		seen = append(seen, e)
		return []Event{e}, nil
	})
	in := sampleEvents()
	o := process(t, in)
	if !reflect.DeepEqual(seen, in) {
		t.Fatalf("the transform saw %#v\nwant %#v", seen, in)
	}
	got := decodeBatch(memory{buf: o.r.buf, base: o.r.base}, o.batchArgs())
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("output %#v\nwant %#v", got, in)
	}
	if got := o.u32s(t, 56); !reflect.DeepEqual(got, []uint32{0, 1, 2, 3}) {
		t.Fatalf("origins %v", got)
	}
	if o := process(t, nil); len(o.errorRows()) != 0 || len(o.u32s(t, 56)) != 0 {
		t.Fatal("an empty batch must give an empty output")
	}
}
