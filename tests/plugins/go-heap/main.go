// go-heap: a transform that grows its Go heap on demand, to prove the Go
// SDK's memory layout survives a large heap (see sdk/go/README.md).
//
// Commands (an event whose value is one of these JSON objects):
//
//	{"grow_mb": N}  allocate N MiB more of live 1 MiB slices filled with a
//	                pseudo-random pattern (plus as much garbage, to make the
//	                GC run), print a line with fmt.Println (WASI fd_write
//	                through the adapter) and answer {"retained_mb", "checksum"}
//	{"check": true} recompute the checksum of everything retained; an error
//	                if it changed
//	{"release": true} drop everything retained
//	{"fatal": true} panic in a goroutine: a fatal error the SDK cannot
//	                recover, which kills the instance
//
// Any other event is data: it is answered with {"len": L, "fnv": "<hex>"},
// the FNV-1a 64 hash of its value, with its key and headers kept and a
// header "go-heap" added.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"runtime"

	sdk "streamhost.dev/sdk"
)

const chunk = 1 << 20

var (
	retained [][]byte
	expected uint64 // checksum of retained, updated as it grows
	seed     uint64 = 0x9E3779B97F4A7C15
)

func init() {
	sdk.RegisterTransform(handle)
}

func main() {}

type command struct {
	GrowMB  int  `json:"grow_mb"`
	Check   bool `json:"check"`
	Release bool `json:"release"`
	Fatal   bool `json:"fatal"`
}

func handle(e sdk.Event) ([]sdk.Event, error) {
	var cmd command
	if json.Unmarshal(e.Value, &cmd) != nil || (cmd.GrowMB == 0 && !cmd.Check && !cmd.Release && !cmd.Fatal) {
		return []sdk.Event{echo(e)}, nil
	}
	switch {
	case cmd.GrowMB > 0:
		grow(cmd.GrowMB)
		fmt.Println("go-heap: retained", len(retained), "MiB, checksum", expected)
	case cmd.Check:
		if got := checksumAll(); got != expected {
			return nil, fmt.Errorf("retained memory corrupted: checksum %d, expected %d", got, expected)
		}
		fmt.Println("go-heap: checked", len(retained), "MiB")
	case cmd.Release:
		retained, expected = nil, 0
		runtime.GC()
	case cmd.Fatal:
		done := make(chan bool)
		go func() {
			defer close(done)
			panic("go-heap: fatal panic in a goroutine")
		}()
		<-done
	}
	e.Value = []byte(fmt.Sprintf(`{"retained_mb":%d,"checksum":"%d"}`, len(retained), expected))
	return []sdk.Event{e}, nil
}

func echo(e sdk.Event) sdk.Event {
	h := fnv.New64a()
	h.Write(e.Value)
	e.Value = []byte(fmt.Sprintf(`{"len":%d,"fnv":"%016x"}`, len(e.Value), h.Sum64()))
	e.SetHeader("go-heap", []byte("1"))
	return e
}

func grow(mb int) {
	var garbage [][]byte
	for i := 0; i < mb; i++ {
		b := make([]byte, chunk)
		fill(b)
		retained = append(retained, b)
		expected = mix(expected, checksum(b))
		// As much short-lived garbage, dropped every 16 MiB: the GC runs
		// and reuses memory between the retained slices.
		garbage = append(garbage, make([]byte, chunk))
		if len(garbage) == 16 {
			garbage = nil
		}
	}
}

// fill writes a xorshift64 stream, 8 bytes at a time.
func fill(b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		binary.LittleEndian.PutUint64(b[i:], seed)
	}
}

func checksum(b []byte) uint64 {
	var s uint64
	for i := 0; i+8 <= len(b); i += 8 {
		s = mix(s, binary.LittleEndian.Uint64(b[i:]))
	}
	return s
}

func mix(s, v uint64) uint64 { return (s ^ v) * 0x100000001B3 }

func checksumAll() uint64 {
	var s uint64
	for _, b := range retained {
		s = mix(s, checksum(b))
	}
	return s
}
