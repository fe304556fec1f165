package sdk

import (
	"errors"
	"fmt"
)

// TransformFunc turns one input event into zero or more output events. An
// error dead-letters that input event alone.
type TransformFunc func(Event) ([]Event, error)

// UDFFunc computes one result from one row of arguments. The arguments have
// already been checked against the declared parameter types (each is of
// its declared type or null); args is only valid during the call.
type UDFFunc func(args []Scalar) (Scalar, error)

type udf struct {
	name   string
	params []Type
	result Type
	fn     UDFFunc
}

// The registry is filled from package init functions or main, before the
// host calls any export, and is read-only afterwards (wasm is single-threaded).
var (
	initFunc  func(config string) error
	transform TransformFunc
	udfs      []udf
	udfIndex  = map[string]int{}
	// Problems found while registering, reported by init (a plugin cannot
	// fail from a package init function in any other useful way).
	registerErrs []error
)

// OnInit registers the function the host calls once per instance, before
// any batch, with the plugin's `config` from pipeline.json serialised as
// JSON (`null` when absent). An error refuses the plugin at load time.
func OnInit(fn func(config string) error) { initFunc = fn }

// RegisterTransform makes this plugin a `transform`: fn is called once per
// input event. A panic in fn is recovered and fails that event alone.
func RegisterTransform(fn TransformFunc) {
	if transform != nil {
		registerErrs = append(registerErrs, errors.New("RegisterTransform called more than once"))
	}
	transform = fn
}

// RegisterUDF adds a scalar function to this `udf` plugin. Before fn is
// called, the SDK checks the row's arity and types: every argument must be
// of its declared type or null (an int is widened to a float where a float
// is declared). fn's result must be of the declared type or null (again an
// int is widened to float). A panic in fn is recovered and fails that row.
func RegisterUDF(name string, params []Type, result Type, fn UDFFunc) {
	switch {
	case name == "":
		registerErrs = append(registerErrs, errors.New("RegisterUDF: empty function name"))
		return
	case fn == nil:
		registerErrs = append(registerErrs, fmt.Errorf("RegisterUDF(%q): nil function", name))
		return
	}
	for i, p := range params {
		if p > Any {
			registerErrs = append(registerErrs, fmt.Errorf("RegisterUDF(%q): parameter %d has invalid type %v", name, i+1, p))
			return
		}
	}
	if result > Any {
		registerErrs = append(registerErrs, fmt.Errorf("RegisterUDF(%q): invalid result type %v", name, result))
		return
	}
	if _, dup := udfIndex[name]; dup {
		registerErrs = append(registerErrs, fmt.Errorf("RegisterUDF(%q): registered twice", name))
		return
	}
	udfIndex[name] = len(udfs)
	udfs = append(udfs, udf{name: name, params: append([]Type(nil), params...), result: result, fn: fn})
}

// runInit implements the `init` export of every world.
func runInit(config string) (err error) {
	if len(registerErrs) > 0 {
		return errors.Join(registerErrs...)
	}
	if transform == nil && len(udfs) == 0 && joiner == nil {
		return errors.New("the plugin registers nothing: call sdk.RegisterTransform, sdk.RegisterUDF or sdk.RegisterJoiner from init() or main()")
	}
	if initFunc == nil {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in init: %v", p)
		}
	}()
	return initFunc(config)
}

// outcome is what the transform made of one input event: output events,
// or an error.
type outcome struct {
	events []Event
	err    string
	failed bool
}

// runProcess is the transform world's `process` but for the wasm glue:
// it decodes the event-batch lowered at b in m, runs the transform once
// per event, and encodes the transform-output into w (reset first); it
// returns the offset of the return area in w.
func runProcess(m memory, b batchArgs, w *writer) uint32 {
	outs := processBatch(decodeBatch(m, b))
	w.reset()
	return encodeTransformOutput(w, outs)
}

// processBatch runs the transform on each input event: one outcome per
// event, in order. An error or a recovered panic fails that event alone.
func processBatch(events []Event) []outcome {
	out := make([]outcome, len(events))
	if transform == nil {
		for i := range out {
			out[i] = outcome{err: "this plugin registers no transform (sdk.RegisterTransform)", failed: true}
		}
		return out
	}
	for i, e := range events {
		evs, err := runTransform(e)
		if err != nil {
			out[i] = outcome{err: err.Error(), failed: true}
		} else {
			out[i] = outcome{events: evs}
		}
	}
	return out
}

func runTransform(e Event) (evs []Event, err error) {
	defer func() {
		if p := recover(); p != nil {
			evs, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	evs, err = transform(e)
	if err == nil {
		err = checkHeaderNames(evs)
	}
	if err != nil {
		return nil, err
	}
	return evs, nil
}

// checkHeaderNames refuses output header names that are not UTF-8 (a WIT
// string must be).
func checkHeaderNames(evs []Event) error {
	for _, o := range evs {
		for _, h := range o.Headers {
			if err := checkUTF8(h.Name); err != nil {
				return fmt.Errorf("output header name: %w", err)
			}
		}
	}
	return nil
}

// signature is one `function-signature`.
type signature struct {
	name   string
	params []Type
	result Type
}

func functionSignatures() []signature {
	sigs := make([]signature, len(udfs))
	for i, u := range udfs {
		sigs[i] = signature{name: u.name, params: u.params, result: u.result}
	}
	return sigs
}

// scalarResult is one `result<scalar, string>`.
type scalarResult struct {
	value  Scalar
	err    string
	failed bool
}

// callBatch implements the udf world's `call`: one result per row, in
// order, written into *buf (reused from call to call).
func callBatch(name string, rows [][]Scalar, buf *[]scalarResult) []scalarResult {
	out := resize(buf, len(rows))
	idx, ok := udfIndex[name]
	if !ok {
		msg := fmt.Sprintf("unknown function %q", name)
		for i := range out {
			out[i] = scalarResult{err: msg, failed: true}
		}
		return out
	}
	u := &udfs[idx]
	for i, row := range rows {
		v, err := u.call(row)
		if err != nil {
			out[i] = scalarResult{err: err.Error(), failed: true}
		} else {
			out[i] = scalarResult{value: v}
		}
	}
	return out
}

func (u *udf) call(args []Scalar) (v Scalar, err error) {
	if len(args) != len(u.params) {
		return Scalar{}, fmt.Errorf("%s: expected %d argument(s), got %d", u.name, len(u.params), len(args))
	}
	for i, want := range u.params {
		a, ok := conform(args[i], want)
		if !ok {
			return Scalar{}, fmt.Errorf("%s: argument %d: expected %v, got %v", u.name, i+1, want, args[i].kind)
		}
		args[i] = a
	}
	defer func() {
		if p := recover(); p != nil {
			v, err = Scalar{}, fmt.Errorf("%s: panic: %v", u.name, p)
		}
	}()
	v, err = u.fn(args)
	if err != nil {
		return Scalar{}, fmt.Errorf("%s: %w", u.name, err)
	}
	r, ok := conform(v, u.result)
	if !ok || r.kind > Bytes {
		return Scalar{}, fmt.Errorf("%s: returned %v, declared %v", u.name, v.kind, u.result)
	}
	if r.kind == Str {
		if err := checkUTF8(r.str); err != nil {
			return Scalar{}, fmt.Errorf("%s: result: %w", u.name, err)
		}
	}
	return r, nil
}

// conform checks s against a declared type: null always passes, an int is
// widened where a float is declared.
func conform(s Scalar, want Type) (Scalar, bool) {
	switch {
	case s.kind == NullType || want == Any || s.kind == want:
		return s, true
	case s.kind == Int && want == Float:
		return FloatValue(float64(int64(s.num))), true
	}
	return s, false
}
