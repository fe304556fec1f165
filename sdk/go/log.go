package sdk

// Log writes one structured line to the host's log, tagged with the
// plugin's name. kv are key/value pairs shown next to the message (an odd
// trailing key gets an empty value). Natively (tests) the line goes to
// stderr.
func Log(level Level, msg string, kv ...string) {
	fields := make([][2]string, 0, (len(kv)+1)/2)
	for i := 0; i < len(kv); i += 2 {
		f := [2]string{validUTF8(kv[i]), ""}
		if i+1 < len(kv) {
			f[1] = validUTF8(kv[i+1])
		}
		fields = append(fields, f)
	}
	hostLog(level, validUTF8(msg), fields)
}

// Debug logs at debug level; see Log.
func Debug(msg string, kv ...string) { Log(LevelDebug, msg, kv...) }

// Info logs at info level; see Log.
func Info(msg string, kv ...string) { Log(LevelInfo, msg, kv...) }

// Warn logs at warn level; see Log.
func Warn(msg string, kv ...string) { Log(LevelWarn, msg, kv...) }
