//go:build wasip1

// Memory used across the component boundary, and why it never collides
// with Go's heap.
//
// The collision. Go's runtime allocates pages with runtime.sbrk
// (runtime/mem_wasm.go, Go 1.21 to 1.27):
//
//	if bl+n > blocMax {
//		grow := (bl + n - blocMax) / physPageSize
//		growMemory(grow)
//		blocMax = bl + n
//	}
//
// blocMax is set once from memory.size (os_wasm.go: osinit) and afterwards
// only by sbrk itself: the runtime assumes nobody else ever runs
// memory.grow. If anything else grows memory (the wasi_snapshot_preview1
// adapter allocating its state with `realloc-via-memory-grow`, or a
// cabi_realloc that grows memory), memory.grow appends the new pages
// after that foreign region, but sbrk still hands out [bl, bl+n) counted
// from its stale blocMax: the foreign pages become Go heap. Go overwrites
// them, and since it assumes freshly grown pages are zero it also reads
// the foreign bytes as pointers. Raising the initial memory only delays
// the moment Go's heap reaches them.
//
// The fix: only the Go runtime's page allocator ever decides where memory
// goes. Three kinds of memory cross the boundary, and none is obtained by
// a foreign memory.grow:
//
//  1. The adapter's permanent allocations (its 64 KiB shadow stack and its
//     64 KiB State, each allocated once) come from cabi_realloc_adapter, a
//     bump allocator over adapterRegion, a static array in Go's data
//     segment, below the heap. wit-component links the adapter's
//     `cabi_realloc` import to the main module's `cabi_realloc_adapter`
//     export when there is one (and we do not ask for
//     realloc-via-memory-grow), so the adapter never grows memory.
//
//  2. Export arguments, which the host lowers by calling
//     cabi_export_realloc (and cabi_realloc) before the export runs, go to
//     the argument arena: spans of pages taken from the Go runtime's own
//     break (runtime.bloc/blocMax, the variables sbrk maintains), exactly as
//     sbrk would take them, so the runtime's accounting stays exact and its
//     heap simply continues above the spans. The arena is reset by each
//     export's cabi_post_* function and reused; it grows (doubling) only
//     when a call's arguments do not fit, so it is unbounded yet settles at
//     about twice the largest call. Everything is copied out of it into Go
//     values before plugin code runs.
//
//  3. Results are encoded into a Go heap buffer (see exports_wasip1.go)
//     that stays referenced until the next call (Go's GC does not move heap
//     objects), so the host can lift them before cabi_post_* runs.
//
// Why the argument allocator does not call Go's allocator: the canonical
// ABI runs realloc (and post-return) with the instance's may_leave flag
// cleared, so any import call traps with "cannot leave component
// instance" — and Go's allocator may call clock_time_get (nanotime) when
// it starts or assists a GC, or reschedule goroutines from a stack-growth
// check. Every function below that runs during lowering or post-return is
// therefore //go:nosplit (no stack-growth check, hence no preemption), calls
// nothing but other nosplit code, and writes only integers (no write
// barriers). The linker verifies the nosplit chain fits the guaranteed stack.
//
// Reaching runtime.bloc/blocMax needs //go:linkname to runtime internals, so
// the build passes -ldflags=-checklinkname=0 (host/src/build/go.rs). Their
// meaning is checked when the plugin starts (breakInvariantHolds); a Go
// release that changed it makes the plugin refuse to load rather than
// corrupt memory.

package sdk

import (
	"unsafe"
)

//go:linkname runtimeBloc runtime.bloc
var runtimeBloc uintptr

//go:linkname runtimeBlocMax runtime.blocMax
var runtimeBlocMax uintptr

func wasmMemorySize() int32
func wasmMemoryGrow(pages int32) int32

const pageSize = 64 << 10

// badPointer is returned when an allocation cannot be satisfied: it is
// beyond any memory, so the host refuses it ("realloc return: beyond end of
// memory") and the adapter traps on its first store, instead of anything
// being written over live memory.
const badPointer = 0xFFFF_FFF8

//go:nosplit
func alignUp(p, align uintptr) uintptr { return (p + align - 1) &^ (align - 1) }

// ---- 1. The adapter's permanent allocations --------------------------------

// The reactor adapter of wasmtime 48 allocates two 64 KiB blocks; the rest
// is slack for alignment and for adapter versions that need a little more.
const adapterRegionSize = 4 * pageSize

var (
	adapterRegion [adapterRegionSize]byte
	adapterUsed   uintptr
)

//go:wasmexport cabi_realloc_adapter
//go:nosplit
func cabiReallocAdapter(oldPtr, oldSize, align, newSize uint32) uint32 {
	if oldPtr != 0 || oldSize != 0 || align == 0 || align&(align-1) != 0 {
		return badPointer // the adapter only ever makes fresh allocations
	}
	start := uintptr(unsafe.Pointer(&adapterRegion))
	p := alignUp(start+adapterUsed, uintptr(align))
	if p+uintptr(newSize) > start+adapterRegionSize {
		return badPointer
	}
	adapterUsed = p + uintptr(newSize) - start
	return uint32(p)
}

// ---- 2. The argument arena -------------------------------------------------

type span struct{ base, end uintptr }

const minArgSpan = 1 << 20

var (
	// Spans in increasing address order (the break only grows). 40 doubling
	// spans exceed any 32-bit memory.
	argSpans [40]span
	argCount int
	argCur   int     // the span being filled
	argNext  uintptr // next free byte in argSpans[argCur]
	argCap   uintptr // total bytes in all spans
	// breakUsable is set at start-up once the runtime's break variables are
	// known to mean what this file assumes.
	breakUsable bool
)

func init() {
	if !breakInvariantHolds() {
		panic("streamhost sdk: the Go runtime's memory break (runtime.bloc/blocMax) does not match " +
			"linear memory; this Go release is not supported (see sdk/go/README.md)")
	}
	breakUsable = true
}

// breakInvariantHolds: when nothing but sbrk grows memory, blocMax is
// exactly the memory size and bloc a page-aligned address below it.
func breakInvariantHolds() bool {
	size := uintptr(wasmMemorySize()) * pageSize
	return runtimeBloc != 0 && runtimeBloc%pageSize == 0 && runtimeBloc <= runtimeBlocMax && runtimeBlocMax == size
}

// breakAlloc takes n bytes (a multiple of pageSize) at the runtime's break,
// the way runtime.sbrk does; 0 when memory cannot grow.
//
//go:nosplit
func breakAlloc(n uintptr) uintptr {
	p := alignUp(runtimeBloc, pageSize) // sbrk keeps it aligned; be sure
	if p+n > runtimeBlocMax {
		grow := alignUp(p+n-runtimeBlocMax, pageSize) / pageSize
		old := wasmMemoryGrow(int32(grow))
		if old < 0 {
			return 0
		}
		if uintptr(old)*pageSize != runtimeBlocMax {
			// Something else grew memory: the invariant is gone, and the
			// runtime itself is no longer safe. Refuse rather than overlap.
			breakUsable = false
			return 0
		}
		runtimeBlocMax = uintptr(old+int32(grow)) * pageSize // the real end of memory
	}
	runtimeBloc = p + n
	return p
}

//go:wasmexport cabi_export_realloc
//go:nosplit
func cabiExportRealloc(oldPtr, oldSize, align, newSize uint32) uint32 {
	return argRealloc(oldPtr, oldSize, align, newSize)
}

// cabi_realloc is the general-purpose name; the same arena serves it.
//
//go:wasmexport cabi_realloc
//go:nosplit
func cabiRealloc(oldPtr, oldSize, align, newSize uint32) uint32 {
	return argRealloc(oldPtr, oldSize, align, newSize)
}

// argRealloc serves only fresh allocations: canonical lowering never
// resizes one (it always passes old_ptr = 0, old_len = 0).
//
//go:nosplit
func argRealloc(oldPtr, oldSize, align, newSize uint32) uint32 {
	if oldPtr != 0 || oldSize != 0 || align == 0 || align&(align-1) != 0 {
		return badPointer
	}
	p := argAlloc(uintptr(newSize), uintptr(align))
	if p == 0 {
		return badPointer
	}
	return uint32(p)
}

//go:nosplit
func argAlloc(size, align uintptr) uintptr {
	for argCur < argCount {
		p := alignUp(argNext, align)
		if p+size <= argSpans[argCur].end {
			argNext = p + size
			return p
		}
		if argCur+1 == argCount {
			break
		}
		argCur++
		argNext = argSpans[argCur].base
	}
	if !breakUsable {
		return 0
	}
	want := size + align
	if want < argCap {
		want = argCap // double the arena
	}
	if want < minArgSpan {
		want = minArgSpan
	}
	want = alignUp(want, pageSize)
	b := breakAlloc(want)
	if b == 0 {
		return 0
	}
	argCap += want
	if argCount > 0 && argSpans[argCount-1].end == b {
		// Contiguous with the last span (the runtime took no pages since):
		// extend it, keep filling from argNext.
		argSpans[argCount-1].end = b + want
	} else {
		if argCount == len(argSpans) {
			return 0
		}
		argSpans[argCount] = span{b, b + want}
		argCount++
		argCur = argCount - 1
		argNext = b
	}
	p := alignUp(argNext, align)
	argNext = p + size
	return p
}

// resetArgs makes the whole arena free again; run from cabi_post_*, after
// the export copied its arguments out.
//
//go:nosplit
func resetArgs() {
	argCur = 0
	if argCount > 0 {
		argNext = argSpans[0].base
	}
}

// argMemory is a view of the whole arena for decoding the current call's
// arguments.
func argMemory() memory {
	if argCount == 0 {
		return memory{}
	}
	lo, hi := argSpans[0].base, argSpans[argCount-1].end
	return memory{buf: unsafe.Slice((*byte)(unsafe.Pointer(lo)), hi-lo), base: uint32(lo)}
}
