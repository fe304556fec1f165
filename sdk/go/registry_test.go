package sdk

import (
	"errors"
	"strings"
	"testing"
)

func resetRegistry() {
	initFunc, transform, udfs, udfIndex, registerErrs = nil, nil, nil, map[string]int{}, nil
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

func TestProcessBatchIsolatesFailures(t *testing.T) {
	resetRegistry()
	RegisterTransform(func(e Event) ([]Event, error) {
		switch string(e.Value) {
		case "drop":
			return nil, nil
		case "bad":
			return nil, errors.New("bad event")
		case "panic":
			var m map[string]int
			m["x"] = 1
		case "split":
			return []Event{e, e}, nil
		}
		e.SetHeader("seen", []byte("1"))
		return []Event{e}, nil
	})
	in := []Event{{Value: []byte("keep")}, {Value: []byte("drop")}, {Value: []byte("bad")}, {Value: []byte("panic")}, {Value: []byte("split")}}
	out := processBatch(in)
	if len(out) != 5 {
		t.Fatal(len(out))
	}
	if v, _ := out[0].events[0].HeaderValue("seen"); out[0].failed || string(v) != "1" {
		t.Fatalf("%+v", out[0])
	}
	if out[1].failed || len(out[1].events) != 0 {
		t.Fatalf("%+v", out[1])
	}
	if !out[2].failed || out[2].err != "bad event" {
		t.Fatalf("%+v", out[2])
	}
	if !out[3].failed || !strings.HasPrefix(out[3].err, "panic: ") {
		t.Fatalf("%+v", out[3])
	}
	if len(out[4].events) != 2 {
		t.Fatalf("%+v", out[4])
	}
}
