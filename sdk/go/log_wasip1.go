//go:build wasip1

package sdk

import (
	"runtime"
	"unsafe"
)

// host.log: (level: enum as i32, message: string, fields: list<tuple<string, string>>).
//
//go:wasmimport streamhost:plugin/host@0.2.0 log
func importHostLog(level uint32, msgPtr unsafe.Pointer, msgLen uint32, fieldsPtr unsafe.Pointer, fieldsLen uint32)

func hostLog(level Level, msg string, fields [][2]string) {
	// Each tuple<string, string> is (ptr, len, ptr, len) of u32.
	flat := make([]uint32, 0, 4*len(fields))
	for _, f := range fields {
		flat = append(flat, stringAddr(f[0]), uint32(len(f[0])), stringAddr(f[1]), uint32(len(f[1])))
	}
	var fieldsPtr unsafe.Pointer
	if len(flat) > 0 {
		fieldsPtr = unsafe.Pointer(&flat[0])
	}
	importHostLog(uint32(level), unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)), fieldsPtr, uint32(len(fields)))
	runtime.KeepAlive(fields) // the strings flat points into
	runtime.KeepAlive(flat)
}

func stringAddr(s string) uint32 {
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s))))
}
