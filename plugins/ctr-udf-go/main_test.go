package main

import (
	"testing"

	sdk "streamhost.dev/sdk"
)

func TestFunctions(t *testing.T) {
	if v, err := ctrBucket([]sdk.Scalar{sdk.IntValue(9), sdk.IntValue(900)}); err != nil {
		t.Fatal(err)
	} else if f, _ := v.Float(); f != 10.0/1000.0 {
		t.Fatalf("ctr %v", f)
	}
	if _, err := ctrBucket([]sdk.Scalar{sdk.IntValue(2), sdk.IntValue(1)}); err == nil {
		t.Fatal("clicks > impressions accepted")
	}
	a, _ := hashBucket([]sdk.Scalar{sdk.StrValue("user-1"), sdk.IntValue(16)})
	b, _ := hashBucket([]sdk.Scalar{sdk.StrValue("user-1"), sdk.IntValue(16)})
	x, _ := a.Int()
	y, _ := b.Int()
	if x < 0 || x >= 16 || x != y {
		t.Fatalf("bucket %v %v", a, b)
	}
	for in, want := range map[string]string{" iPhone ": "mobile", "iPad": "tablet", "Googlebot": "bot", "Windows PC": "desktop", "toaster": "other"} {
		v, _ := normalizeDevice([]sdk.Scalar{sdk.StrValue(in)})
		if s, _ := v.Str(); s != want {
			t.Errorf("%q -> %q, want %q", in, s, want)
		}
	}
}
