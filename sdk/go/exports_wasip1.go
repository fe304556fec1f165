//go:build wasip1

package sdk

import (
	"unsafe"
)

// The component's exports, in the core-module names wit-component expects
// for world-level functions (`init`, `process`, ...) and their post-return
// functions (`cabi_post_<name>`). Every world's exports are always present;
// wit-component keeps only those of the plugin's world (see
// host/src/build/go.rs).
//
// Each export copies its arguments out of the argument arena first, runs
// plugin code, and encodes the results into the reused `results` buffer,
// returning the address of the return area. The cabi_post_* functions run
// with may_leave cleared (see arena_wasip1.go), so they only reset integers.

var (
	results writer
	// Reused by every `call`; see rowBuffers.
	callRows    rowBuffers
	callResults []scalarResult
)

//go:wasmexport init
func exportInit(configPtr, configLen uint32) uint32 {
	config := argMemory().copyString(configPtr, configLen)
	err := runInit(config)
	results.reset()
	return publish(encodeInitResult(&results, err))
}

//go:wasmexport cabi_post_init
//go:nosplit
func postInit(uint32) { resetArgs() }

// process(batch: event-batch) -> transform-output. The event-batch record
// flattens to its 7 lists, (ptr, len) each: 14 parameters, within the
// canonical ABI's 16 flat parameters. The transform-output is returned
// through a return area (abi_layout.go).
//
//go:wasmexport process
func exportProcess(
	valuesPtr, valuesLen, valueEndsPtr, valueEndsLen uint32,
	keysPtr, keysLen, keyEndsPtr, keyEndsLen uint32,
	keylessPtr, keylessLen, timestampsPtr, timestampsLen uint32,
	headersPtr, headersLen uint32,
) uint32 {
	b := batchArgs{
		values:     column{data: listArg{valuesPtr, valuesLen}, ends: listArg{valueEndsPtr, valueEndsLen}},
		keys:       column{data: listArg{keysPtr, keysLen}, ends: listArg{keyEndsPtr, keyEndsLen}},
		keyless:    listArg{keylessPtr, keylessLen},
		timestamps: listArg{timestampsPtr, timestampsLen},
		headers:    listArg{headersPtr, headersLen},
	}
	return publish(runProcess(argMemory(), b, &results))
}

//go:wasmexport cabi_post_process
//go:nosplit
func postProcess(uint32) { resetArgs() }

//go:wasmexport functions
func exportFunctions() uint32 {
	results.reset()
	return publish(encodeSignatures(&results, functionSignatures()))
}

//go:wasmexport cabi_post_functions
//go:nosplit
func postFunctions(uint32) { resetArgs() }

//go:wasmexport call
func exportCall(namePtr, nameLen, rowsPtr, rowsLen uint32) uint32 {
	m := argMemory()
	name := m.copyString(namePtr, nameLen)
	rows := decodeRows(m, rowsPtr, rowsLen, &callRows)
	outs := callBatch(name, rows, &callResults)
	results.reset()
	return publish(encodeScalarResults(&results, outs))
}

//go:wasmexport cabi_post_call
//go:nosplit
func postCall(uint32) { resetArgs() }

// join(inputs, mains, matches, match-mains, match-inputs) -> transform-output.
// Its parameters flatten to 34 i32s, past the canonical ABI's 16: the host
// stores them as a tuple in the argument arena and passes its address
// (abi_layout.go's joinArgs*).
//
//go:wasmexport join
func exportJoin(argsPtr uint32) uint32 {
	return publish(runJoin(argMemory(), argsPtr, &results))
}

//go:wasmexport cabi_post_join
//go:nosplit
func postJoin(uint32) { resetArgs() }

// publish turns the results buffer's relative pointers into addresses and
// returns the address of the return area at offset ret. The buffer stays
// referenced by `results` until the next call, after the host has lifted it.
func publish(ret uint32) uint32 {
	base := uintptr(unsafe.Pointer(&results.buf[0]))
	if base%8 != 0 {
		// Go's allocator places objects of 256 bytes or more (the writer's
		// minimum) at 8-aligned addresses; records need 8.
		panic("streamhost sdk: results buffer is not 8-aligned")
	}
	results.relocate(uint32(base))
	return uint32(base) + ret
}
