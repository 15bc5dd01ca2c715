package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/trustmesh/trustmesh/internal/version"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // the command line is wrong
)

const mainUsage = `meshctl manages trustmesh development certificates, authorization policies and access tokens.

Usage:
  meshctl <command> [subcommand] [flags] [arguments]

Commands:
  certs init      write a development CA and SVIDs (default: the sample mesh's)
  certs issue     issue one SVID from the development CA
  certs inspect   explain a certificate and check it against a trust bundle
  certs rotate    re-issue SVIDs in place from the development CA
  policy lint     check a policy file and report methods no rule allows
  policy explain  show the decision for one caller and method, and the rule
  policy diff     show which callers gain or lose access to each method
  policy test     run a table of expected decisions against a policy (policy as code)
  proto export    write trustmesh/v1/access.proto under a directory, for your buf workspace
  tokens init     write a development token issuer's key (and its JWKS)
  tokens issue    mint a development access token bound to a certificate
  txn inspect     decode a transaction token and verify it against a trust bundle
  version         print the meshctl version
  help            show this help

Run 'meshctl <command> [subcommand] --help' for details.
`

// command is one node of the command tree: a leaf runs, a group dispatches
// to its subcommands.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, name string, args []string, stdout io.Writer) error
	subs  []command
}

// commands is the command tree; built by a function so it holds no state.
func commands() command {
	return command{
		name:  "meshctl",
		usage: mainUsage,
		subs: []command{
			{
				name:  "certs",
				usage: certsUsage,
				subs: []command{
					{name: "init", run: certsInit},
					{name: "issue", run: certsIssue},
					{name: "inspect", run: certsInspect},
					{name: "rotate", run: certsRotate},
				},
			},
			{
				name:  "policy",
				usage: policyUsage,
				subs: []command{
					{name: "lint", run: policyLint},
					{name: "explain", run: policyExplain},
					{name: "diff", run: policyDiff},
					{name: "test", run: policyTest},
				},
			},
			{
				name:  "proto",
				usage: protoUsage,
				subs:  []command{{name: "export", run: protoExport}},
			},
			{
				name:  "tokens",
				usage: tokensUsage,
				subs: []command{
					{name: "init", run: tokensInit},
					{name: "issue", run: tokensIssue},
				},
			},
			txnCommand(),
			{name: "version", run: printVersion},
		},
	}
}

// run executes meshctl with args (without the program name) and returns the
// process exit code. Output goes to stdout; a failure is reported on stderr
// as one line starting with "meshctl: ".
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, commands(), "meshctl", args, stdout)
	var uerr usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "meshctl: %s\n", uerr.msg)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "meshctl: %s\n", oneLine(err.Error()))
		return exitFailure
	}
}

// dispatch runs the subcommand of cmd named by args[0]; path is the command
// line so far, e.g. "meshctl certs".
func dispatch(ctx context.Context, cmd command, path string, args []string, stdout io.Writer) error {
	if cmd.run != nil {
		return cmd.run(ctx, path, args, stdout)
	}
	if len(args) == 0 {
		return usageErrorf("%smissing command (see '%s --help')", where(path), path)
	}
	switch name := args[0]; name {
	case "help", "-h", "-help", "--help":
		// "meshctl help certs init" is "meshctl certs init --help".
		if name == "help" && len(args) > 1 {
			return dispatch(ctx, cmd, path, slices.Concat(args[1:], []string{"--help"}), stdout)
		}
		_, err := io.WriteString(stdout, cmd.usage)
		return err
	default:
		for _, sub := range cmd.subs {
			if sub.name == name {
				return dispatch(ctx, sub, path+" "+name, args[1:], stdout)
			}
		}
		return usageErrorf("%sunknown command %q (see '%s --help')", where(path), name, path)
	}
}

// printVersion prints the version stamped into the build.
func printVersion(_ context.Context, path string, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet(path, flag.ContinueOnError)
	if err := parseNoArgs(flags, path, "Usage: meshctl version\n\nPrints the meshctl version.\n", args, stdout); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "meshctl %s\n", version.Version)
	return err
}

// usageError is a mistake on the command line; run exits 2 for it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp reports that --help was handled and the command should stop.
var errHelp = errors.New("help requested")

// parseFlags parses args with fs, allowing flags after positional
// arguments, and returns the positional arguments. On --help it prints
// usage and the flag defaults to stdout and returns errHelp; a bad flag is a
// usageError naming the command.
func parseFlags(fs *flag.FlagSet, path, usage string, args []string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, usage)
			fmt.Fprintln(stdout, "\nFlags:")
			fs.PrintDefaults()
			return nil, errHelp
		}
		if err != nil {
			return nil, usageErrorf("%s%v (see '%s --help')", where(path), err, path)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// Parse stops at the first non-flag, or after "--" (which it
		// consumes): everything after "--" is positional.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// where turns a command path such as "meshctl certs init" into the prefix
// of its messages, "certs init: " (nothing for meshctl itself, since every
// message already starts with "meshctl: ").
func where(path string) string {
	if sub, ok := strings.CutPrefix(path, "meshctl "); ok {
		return sub + ": "
	}
	return ""
}

// oneLine keeps an error message on a single line.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}
