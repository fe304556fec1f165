// Package sdk writes streamhost plugins in plain Go.
//
// A plugin is a main package built by `streamhost plugin build DIR`
// (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared) and registers its
// functions from an init function (c-shared builds never run main):
//
//	package main
//
//	import sdk "streamhost.dev/sdk"
//
//	func init() {
//		sdk.RegisterUDF("bucket", []sdk.Type{sdk.Str, sdk.Int}, sdk.Int, bucket)
//	}
//
//	func main() {}
//
// A `transform` plugin calls RegisterTransform with a function of one
// Event (the host sends whole batches by column; the SDK calls the
// function once per event and packs the outputs back into columns); a
// `udf` plugin calls RegisterUDF once per function; a `joiner` calls
// RegisterJoiner with a function of a main event and its Matches. Any may
// call OnInit to read its configuration, and Log to write to the host's
// log. fmt.Println and friends work too: their output goes to the host's
// log as well.
//
// The package implements the component model's canonical ABI for the
// worlds of wit/plugin.wit by hand (there is no wit-bindgen for Go here):
// abi_layout.go has the record layouts, abi_decode.go and abi_encode.go
// move values across the boundary, exports_wasip1.go has the exports, and
// arena_wasip1.go explains how memory is shared with the host and the WASI
// adapter without ever colliding with Go's heap. Everything except the
// wasip1 glue builds natively, so `go test ./...` tests plugin functions
// and the ABI layout on the developer's machine.
package sdk
