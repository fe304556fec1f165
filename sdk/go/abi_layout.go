package sdk

// Canonical ABI layout (wasm32) of the WIT types in wit/plugin.wit. Sizes
// and offsets follow the component model's rules: a record's fields are
// laid out in order, each at its own alignment; a variant/option/result is
// a discriminant (u8 for fewer than 256 cases) followed by the payload at
// the payload's largest alignment; string and list<T> are (ptr u32, len u32)
// and an enum of fewer than 256 cases is a u8.
const (
	// string, list<T>: (ptr: u32, len: u32).
	listSize  = 8
	listAlign = 4

	// byte-column { data: list<u8>, ends: list<u32> }
	byteColumnSize    = 16
	byteColumnDataOff = 0
	byteColumnEndsOff = 8

	// event-batch { values: byte-column, keys: byte-column, keyless: list<u32>,
	//               timestamps: list<s64>, headers: list<batch-header> }
	// Every field is 4-aligned (a list's (ptr, len) is, whatever its
	// elements), so the fields follow each other with no padding. Flattened,
	// the record is its 7 lists' 14 i32s: within MAX_FLAT_PARAMS (16), so
	// `process` receives them as parameters.
	batchSize          = 56
	batchAlign         = 4
	batchValuesOff     = 0
	batchKeysOff       = 16
	batchKeylessOff    = 32
	batchTimestampsOff = 40
	batchHeadersOff    = 48

	// batch-header { event: u32, name: string, value: list<u8> }
	batchHeaderSize     = 20
	batchHeaderAlign    = 4
	batchHeaderEventOff = 0
	batchHeaderNameOff  = 4
	batchHeaderValueOff = 12

	// event-error { event: u32, message: string }
	eventErrorSize       = 12
	eventErrorAlign      = 4
	eventErrorEventOff   = 0
	eventErrorMessageOff = 4

	// transform-output { events: event-batch, origins: list<u32>, errors: list<event-error> }
	// More than one flat result, so `process` returns the address of a
	// return area holding the record.
	outputSize       = 72
	outputAlign      = 4
	outputEventsOff  = 0
	outputOriginsOff = 56
	outputErrorsOff  = 64

	// Element sizes and alignments of list<u32> and list<s64>.
	u32Size  = 4
	u32Align = 4
	s64Size  = 8
	s64Align = 8

	// scalar: variant of 6 cases, tag u8 @0, payload @8 (largest payload
	// alignment is s64/f64's 8; largest payload size 8).
	scalarSize       = 16
	scalarAlign      = 8
	scalarPayloadOff = 8

	// result<scalar, string>: tag u8 @0, payload @8 (scalar's alignment 8).
	scalarResultSize       = 24
	scalarResultAlign      = 8
	scalarResultPayloadOff = 8

	// function-signature { name: string, params: list<scalar-type>, result: scalar-type }
	signatureSize      = 20 // 17 rounded up to the record's alignment 4
	signatureAlign     = 4
	signatureNameOff   = 0
	signatureParamsOff = 8
	signatureResultOff = 16

	// result<_, string>: tag u8 @0, string @4.
	initResultSize       = 12
	initResultAlign      = 4
	initResultPayloadOff = 4

	// The return area of an export returning a list: (ptr, len).
	retListSize  = 8
	retListAlign = 4

	// tuple<string, string>, the element of host.log's `fields`.
	fieldSize = 16

	// join's parameters (inputs: list<string>, mains: event-batch, matches:
	// event-batch, match-mains: list<u32>, match-inputs: list<u32>) flatten
	// to 2 + 14 + 14 + 2 + 2 = 34 i32s, more than MAX_FLAT_PARAMS (16): the
	// host stores them as a tuple in memory (allocated through
	// cabi_realloc) and passes its address alone. Every field is 4-aligned.
	joinArgsInputsOff      = 0
	joinArgsMainsOff       = 8
	joinArgsMatchesOff     = 64
	joinArgsMatchMainsOff  = 120
	joinArgsMatchInputsOff = 128
	joinArgsSize           = 136
)
