// sample-joiner-go: turns an impression and the clicks a window join matched
// to it into one training sample.
//
// The same plugin as plugins/sample-joiner-rust and -python (the host's tests
// check that all three give the same samples). Output (a JSON object, keys
// sorted): request_id, user_id, item_id, the impression's feature fields (by
// default every other field; config {"features": [...]} picks them), then
// label (1 if any click matched, else 0), clicks (how many) and dwell_ms (the
// sum of the clicks' integer dwell_ms, saturating). The sample keeps the
// impression's time, key and headers. An impression that is not a JSON
// object, or lacks one of the three ids, fails alone (dead-lettered).
//
// Config (optional): {"clicks_input": "clicks", "features": ["device", ...]}.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"

	sdk "streamhost.dev/sdk"
)

var ids = []string{"request_id", "user_id", "item_id"}

var (
	clicksInput = "clicks"
	features    []string // nil: every field
)

func init() {
	sdk.OnInit(configure)
	sdk.RegisterJoiner(join)
}

// c-shared builds need a main package; main itself is never run.
func main() {}

func configure(config string) error {
	var c map[string]json.RawMessage
	if config != "" && config != "null" {
		if err := json.Unmarshal([]byte(config), &c); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	var unknown []string
	for k := range c {
		if k != "clicks_input" && k != "features" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown config keys: %q", unknown)
	}
	if raw, ok := c["clicks_input"]; ok {
		if err := json.Unmarshal(raw, &clicksInput); err != nil {
			return fmt.Errorf("config clicks_input: %w", err)
		}
	}
	if raw, ok := c["features"]; ok {
		if err := json.Unmarshal(raw, &features); err != nil {
			return fmt.Errorf("config features: %w", err)
		}
	}
	return nil
}

func join(main sdk.Event, matches *sdk.Matches) ([]sdk.Event, error) {
	known := false
	for _, in := range matches.Inputs() {
		known = known || in == clicksInput
	}
	if !known {
		return nil, fmt.Errorf("no input named %q among this join's inputs %q (config clicks_input)", clicksInput, matches.Inputs())
	}
	var clicks []any
	for _, c := range matches.Get(clicksInput) {
		v, _ := parse(c.Value) // an unreadable click counts, without dwell
		clicks = append(clicks, v)
	}
	impression, err := parse(main.Value)
	if err != nil {
		return nil, fmt.Errorf("the impression is not JSON: %w", err)
	}
	record, err := sample(impression, clicks, features)
	if err != nil {
		return nil, err
	}
	value, err := encode(record)
	if err != nil {
		return nil, err
	}
	main.Value = value
	return []sdk.Event{main}, nil
}

// sample is the training sample of a parsed impression given its parsed
// clicks.
func sample(impression any, clicks []any, features []string) (map[string]any, error) {
	imp, ok := impression.(map[string]any)
	if !ok {
		return nil, errors.New("the impression is not a JSON object")
	}
	out := map[string]any{}
	for _, k := range ids {
		if v, ok := imp[k]; !ok || v == nil {
			return nil, fmt.Errorf("the impression has no %s", k)
		}
		out[k] = imp[k]
	}
	keys := features
	if keys == nil {
		for k := range imp {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if v, ok := imp[k]; ok {
			if _, taken := out[k]; !taken {
				out[k] = v
			}
		}
	}
	var dwell int64
	for _, c := range clicks {
		obj, _ := c.(map[string]any)
		if d, ok := obj["dwell_ms"].(json.Number); ok {
			if n, err := strconv.ParseInt(string(d), 10, 64); err == nil {
				dwell = saturatingAdd(dwell, n)
			}
		}
	}
	label := 0
	if len(clicks) > 0 {
		label = 1
	}
	out["label"], out["clicks"], out["dwell_ms"] = label, len(clicks), dwell
	return out, nil
}

func saturatingAdd(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}

// parse reads JSON keeping numbers as written (json.Number).
func parse(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// encode writes compact JSON with sorted keys (as serde_json writes a map),
// without HTML escaping.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
