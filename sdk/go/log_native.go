//go:build !wasip1

package sdk

import (
	"fmt"
	"os"
	"strings"
)

func hostLog(level Level, msg string, fields [][2]string) {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", levelNames[level], msg)
	for _, f := range fields {
		fmt.Fprintf(&b, " %s=%q", f[0], f[1])
	}
	fmt.Fprintln(os.Stderr, b.String())
}

var levelNames = [...]string{"trace", "debug", "info", "warn", "error"}
