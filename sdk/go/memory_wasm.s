//go:build wasip1

#include "textflag.h"

// func wasmMemorySize() int32: the linear memory's size in 64 KiB pages.
TEXT ·wasmMemorySize(SB), NOSPLIT, $0-4
	Get SP
	CurrentMemory
	I32Store ret+0(FP)
	RET

// func wasmMemoryGrow(pages int32) int32: memory.grow; the old size in
// pages, or -1 when the instance's memory limit refuses.
TEXT ·wasmMemoryGrow(SB), NOSPLIT, $0-12
	Get SP
	I32Load pages+0(FP)
	GrowMemory
	I32Store ret+8(FP)
	RET
