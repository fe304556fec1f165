package sdk

import (
	"errors"
	"fmt"
)

// Matches are the matches of one main event of a window join, by other
// input (in the step's input order), each input's in time order.
type Matches struct {
	inputs []string
	groups [][]Event
}

// NewMatches groups matches by input: groups[i] are those of inputs[i]
// (missing groups are empty, extra ones ignored). For native tests of a
// joiner function.
func NewMatches(inputs []string, groups [][]Event) *Matches {
	g := make([][]Event, len(inputs))
	copy(g, groups)
	return &Matches{inputs: inputs, groups: g}
}

// Get returns the matches from input, in time order; none for an input
// without matches or not joined by this step.
func (m *Matches) Get(input string) []Event {
	for i, name := range m.inputs {
		if name == input {
			return m.groups[i]
		}
	}
	return nil
}

// Inputs returns the names of the other inputs, in the step's order (every
// one, with or without matches).
func (m *Matches) Inputs() []string { return m.inputs }

// Len returns the number of matches over every input.
func (m *Matches) Len() int {
	n := 0
	for _, g := range m.groups {
		n += len(g)
	}
	return n
}

// JoinerFunc joins one main event with its matches into zero or more output
// events (a training sample, say). An error dead-letters that main event
// alone.
type JoinerFunc func(main Event, matches *Matches) ([]Event, error)

var joiner JoinerFunc

// RegisterJoiner makes this plugin a `joiner` (the output of a window-join
// step whose `joiner` is `{"type": "plugin", ...}`): fn is called once per
// main event whose window closed. A panic in fn is recovered and fails that
// main event alone.
func RegisterJoiner(fn JoinerFunc) {
	if joiner != nil {
		registerErrs = append(registerErrs, errors.New("RegisterJoiner called more than once"))
	}
	joiner = fn
}

// runJoin is the joiner world's `join` but for the wasm glue: it decodes
// the parameters stored at ptr in m, runs the joiner once per main event,
// and encodes the transform-output into w (reset first, origins being the
// main events' indices); it returns the offset of the return area in w.
func runJoin(m memory, ptr uint32, w *writer) uint32 {
	outs := joinBatch(decodeJoinArgs(m, ptr))
	w.reset()
	return encodeTransformOutput(w, outs)
}

// joinBatch runs the joiner on each main event with its matches: one
// outcome per main event, in order. Matches naming a main event or an input
// out of range are ignored (the host never sends them).
func joinBatch(a joinArgs) []outcome {
	out := make([]outcome, len(a.mains))
	if joiner == nil {
		for i := range out {
			out[i] = outcome{err: "this plugin registers no joiner (sdk.RegisterJoiner)", failed: true}
		}
		return out
	}
	groups := make([][][]Event, len(a.mains))
	for j, e := range a.matches {
		if j >= len(a.matchMains) || j >= len(a.matchInputs) {
			break
		}
		i, k := int(a.matchMains[j]), int(a.matchInputs[j])
		if i >= len(a.mains) || k >= len(a.inputs) {
			continue
		}
		if groups[i] == nil {
			groups[i] = make([][]Event, len(a.inputs))
		}
		groups[i][k] = append(groups[i][k], e)
	}
	for i, main := range a.mains {
		g := groups[i]
		if g == nil {
			g = make([][]Event, len(a.inputs))
		}
		evs, err := runJoiner(main, &Matches{inputs: a.inputs, groups: g})
		if err != nil {
			out[i] = outcome{err: err.Error(), failed: true}
		} else {
			out[i] = outcome{events: evs}
		}
	}
	return out
}

func runJoiner(main Event, matches *Matches) (evs []Event, err error) {
	defer func() {
		if p := recover(); p != nil {
			evs, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	evs, err = joiner(main, matches)
	if err == nil {
		err = checkHeaderNames(evs)
	}
	if err != nil {
		return nil, err
	}
	return evs, nil
}
