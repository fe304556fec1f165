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

	// header { name: string, value: list<u8> }
	headerSize     = 16
	headerAlign    = 4
	headerNameOff  = 0
	headerValueOff = 8

	// event { key: option<list<u8>>, value: list<u8>, timestamp: s64, headers: list<header> }
	//   key:       option tag u8 @0, list @4       (12 bytes, align 4)
	//   value:     @12                             (8 bytes)
	//   timestamp: @24 (20 rounded up to 8)         (8 bytes)
	//   headers:   @32                             (8 bytes)
	eventSize         = 40
	eventAlign        = 8
	eventKeyTagOff    = 0
	eventKeyListOff   = 4
	eventValueOff     = 12
	eventTimestampOff = 24
	eventHeadersOff   = 32

	// result<list<event>, string>: tag u8 @0, payload (8 bytes, align 4) @4.
	outcomeSize       = 12
	outcomeAlign      = 4
	outcomePayloadOff = 4

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
)
