package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
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
				err = fmt.Errorf("env %s=%q: %v: %w", m[1], v, serr, errUsage)
			}
		}
	})
	return err
}
