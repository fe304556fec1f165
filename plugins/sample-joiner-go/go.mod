module streamhost.dev/plugins/sample-joiner-go

go 1.24

require streamhost.dev/sdk v0.0.0

// The SDK is resolved from this repository (builds are offline). A plugin
// outside the repository gets it vendored by `streamhost plugin new --lang go`
// (./.streamhost/sdk/go; see docs/plugin-authoring.md).
replace streamhost.dev/sdk => ../../sdk/go
