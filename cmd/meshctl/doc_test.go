package main

import (
	"go/parser"
	"go/token"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// leafCommands returns the command lines of every runnable command, e.g.
// "certs init", and "help".
func leafCommands(cmd command, prefix string) []string {
	if cmd.run != nil {
		return []string{strings.TrimSpace(prefix)}
	}
	var out []string
	for _, sub := range cmd.subs {
		out = append(out, leafCommands(sub, prefix+" "+sub.name)...)
	}
	return out
}

// TestDocsListCommands keeps the package doc and `meshctl help` in step
// with the command tree: each lists every command, and nothing else.
func TestDocsListCommands(t *testing.T) {
	t.Parallel()
	want := append(leafCommands(commands(), ""), "help")
	slices.Sort(want)

	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	docLine := regexp.MustCompile(`(?m)^\tmeshctl ([a-z]+(?: [a-z]+)?)  `)
	usageLine := regexp.MustCompile(`(?m)^  ([a-z]+(?: [a-z]+)?)  `)
	for _, tc := range []struct {
		name, text string
		re         *regexp.Regexp
	}{
		{"package doc", f.Doc.Text(), docLine},
		{"meshctl help", mainUsage[strings.Index(mainUsage, "Commands:"):], usageLine},
	} {
		var got []string
		for _, m := range tc.re.FindAllStringSubmatch(tc.text, -1) {
			got = append(got, strings.TrimSpace(m[1]))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s lists\n %q\nwant the commands\n %q", tc.name, got, want)
		}
	}
}
