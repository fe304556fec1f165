package main

import (
	"strings"
	"testing"

	sdk "streamhost.dev/sdk"
)

func TestSamples(t *testing.T) {
	inputs := []string{"clicks", "likes"}
	imp := sdk.Event{Key: []byte("k"), Value: []byte(`{"request_id":"r1","user_id":"u1","item_id":"i1","device":"ios","position":1}`), Timestamp: 1001}
	clicks := []sdk.Event{{Value: []byte(`{"dwell_ms":100}`)}, {Value: []byte(`{"dwell_ms":50}`)}, {Value: []byte(`not json`)}}
	out, err := join(imp, sdk.NewMatches(inputs, [][]sdk.Event{clicks}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"clicks":3,"device":"ios","dwell_ms":150,"item_id":"i1","label":1,"position":1,"request_id":"r1","user_id":"u1"}`
	if got := string(out[0].Value); got != want || out[0].Timestamp != 1001 || string(out[0].Key) != "k" {
		t.Fatalf("got %s", got)
	}
	none, err := join(imp, sdk.NewMatches(inputs, nil))
	if err != nil || !strings.Contains(string(none[0].Value), `"label":0`) {
		t.Fatalf("%v %s", err, none[0].Value)
	}
	if _, err := join(sdk.Event{Value: []byte(`{"user_id":"u"}`)}, sdk.NewMatches(inputs, nil)); err == nil || !strings.Contains(err.Error(), "request_id") {
		t.Fatalf("missing ids: %v", err)
	}
	if _, err := join(imp, sdk.NewMatches([]string{"views"}, nil)); err == nil || !strings.Contains(err.Error(), "clicks_input") {
		t.Fatalf("unknown input: %v", err)
	}
}

func TestConfig(t *testing.T) {
	defer func() { clicksInput, features = "clicks", nil }()
	if err := configure(`{"features":["device"],"clicks_input":"c"}`); err != nil {
		t.Fatal(err)
	}
	imp := sdk.Event{Value: []byte(`{"request_id":"r","user_id":"u","item_id":"i","device":"tv","position":2}`)}
	out, err := join(imp, sdk.NewMatches([]string{"c"}, nil))
	if err != nil || string(out[0].Value) != `{"clicks":0,"device":"tv","dwell_ms":0,"item_id":"i","label":0,"request_id":"r","user_id":"u"}` {
		t.Fatalf("%v %s", err, out[0].Value)
	}
	if err := configure(`{"nope":1}`); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown key: %v", err)
	}
}
