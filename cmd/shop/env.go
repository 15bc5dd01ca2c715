package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

var envName = regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)

// applyEnv sets every flag whose help names an environment variable
// "(env NAME)" from that variable when it is set and not empty. A malformed
// value is an error naming the variable: nothing is silently ignored.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		m := envName.FindStringSubmatch(f.Usage)
		if m == nil || err != nil {
			return
		}
		if v := os.Getenv(m[1]); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("env %s=%q (flag --%s, e.g. %s): %v: %w", m[1], v, f.Name, example(f), serr, errUsage)
			}
		}
	})
	return err
}

// example shows a value of the right form for f: its default, or for an
// empty default a word on the kind of value.
func example(f *flag.Flag) string {
	if f.DefValue != "" {
		return strconv.Quote(f.DefValue)
	}
	return "a " + strings.TrimPrefix(fmt.Sprintf("%T", f.Value), "*flag.") + " value"
}
