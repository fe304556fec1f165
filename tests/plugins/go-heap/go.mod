module streamhost.dev/tests/go-heap

go 1.24

require streamhost.dev/sdk v0.0.0

replace streamhost.dev/sdk => ../../../sdk/go
