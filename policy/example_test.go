package policy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/policy"
)

const examplePolicy = `version: 1
rules:
  - name: frontend-reads
    effect: allow
    from: ["spiffe://example.org/ns/web/sa/frontend"]
    to: ["/tasks.v1.TaskService/ListTasks"]
  - name: people-write-at-primary
    effect: allow
    from: ["spiffe://example.org/user/*"]
    to: ["/tasks.v1.TaskService/*"]
    at: ["spiffe://example.org/ns/tasks/sa/primary"]
  - name: no-interns
    effect: deny
    from: ["spiffe://example.org/user/intern"]
    to: ["/tasks.v1.TaskService/PurgeTasks"]
`

var (
	exampleFrontend = spiffeid.RequireFromString("spiffe://example.org/ns/web/sa/frontend")
	exampleAlice    = spiffeid.RequireFromString("spiffe://example.org/user/alice")
	exampleIntern   = spiffeid.RequireFromString("spiffe://example.org/user/intern")
	examplePrimary  = spiffeid.RequireFromString("spiffe://example.org/ns/tasks/sa/primary")
)

// Parse reads a policy file strictly; each rule remembers where it was
// declared. An error names the file, the line and the rule.
func ExampleParse() {
	p, err := policy.Parse("policy.yaml", []byte(examplePolicy))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range p.Rules {
		fmt.Println(r.Source, r.Name, r.Effect, r.From, r.To)
	}

	_, err = policy.Parse("bad.yaml", []byte("version: 1\nrules:\n  - name: typo\n    efect: allow\n"))
	fmt.Println(err)
	// Output:
	// policy.yaml:3 frontend-reads allow [spiffe://example.org/ns/web/sa/frontend] [/tasks.v1.TaskService/ListTasks]
	// policy.yaml:7 people-write-at-primary allow [spiffe://example.org/user/*] [/tasks.v1.TaskService/*]
	// policy.yaml:12 no-interns deny [spiffe://example.org/user/intern] [/tasks.v1.TaskService/PurgeTasks]
	// bad.yaml:4: rule typo: unknown field "efect" (want name, effect, from, to, at, subject, dry_run or require_token)
}

// Compile checks a policy once and compiles it for one server: rules with
// an at: list apply only on the servers it names (ForServer).
func ExampleCompile() {
	p, err := policy.Parse("policy.yaml", []byte(examplePolicy))
	if err != nil {
		fmt.Println(err)
		return
	}
	atPrimary, err := policy.Compile(p, policy.ForServer(examplePrimary))
	if err != nil {
		fmt.Println(err)
		return
	}
	elsewhere, err := policy.Compile(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("primary:", atPrimary.Decide("/tasks.v1.TaskService/AddTask", exampleAlice).Outcome)
	fmt.Println("elsewhere:", elsewhere.Decide("/tasks.v1.TaskService/AddTask", exampleAlice).Outcome)

	_, err = policy.Compile(policy.Policy{Source: "code", Rules: []policy.Rule{{
		Name: "glob", Effect: policy.Allow, From: []string{"spiffe://example.org/svc*"}, To: []string{"*"}, Source: "code",
	}}})
	fmt.Println(err)
	// Output:
	// primary: allow
	// elsewhere: deny
	// code: rule glob: caller "spiffe://example.org/svc*": wildcards must be a whole path segment (* or a trailing **)
}

// Decide returns the outcome and the rule that decided: any matching deny
// rule wins, then any matching allow rule, else the call is denied by
// default.
func ExampleEngine_Decide() {
	p, err := policy.Parse("policy.yaml", []byte(examplePolicy))
	if err != nil {
		fmt.Println(err)
		return
	}
	rules, err := policy.Compile(p, policy.ForServer(examplePrimary))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range []struct {
		caller spiffeid.ID
		method string
	}{
		{exampleFrontend, "/tasks.v1.TaskService/ListTasks"},
		{exampleFrontend, "/tasks.v1.TaskService/PurgeTasks"},
		{exampleAlice, "/tasks.v1.TaskService/PurgeTasks"},
		{exampleIntern, "/tasks.v1.TaskService/PurgeTasks"},
	} {
		d := rules.Decide(c.method, c.caller)
		fmt.Printf("%s %s: %s (%s)\n", c.caller.Path(), c.method, d.Outcome, d.Rule)
	}
	// Output:
	// /ns/web/sa/frontend /tasks.v1.TaskService/ListTasks: allow (frontend-reads)
	// /ns/web/sa/frontend /tasks.v1.TaskService/PurgeTasks: deny (default-deny)
	// /user/alice /tasks.v1.TaskService/PurgeTasks: allow (people-write-at-primary)
	// /user/intern /tasks.v1.TaskService/PurgeTasks: deny (no-interns)
}

// A Watcher reloads the policy file when it changes; a file that does not
// parse is rejected and the last good policy stays in force. Give it to
// interceptors.NewAuthorizer like a compiled engine.
func ExampleNewWatcher() {
	dir, err := os.MkdirTemp("", "policy")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte(examplePolicy), 0o644); err != nil {
		fmt.Println(err)
		return
	}

	reloaded := make(chan error, 1)
	w, err := policy.NewWatcher(context.Background(), file,
		policy.WithCompileOptions(policy.ForServer(examplePrimary)),
		policy.WithOnUpdate(func(_ *policy.Engine, err error) { reloaded <- err }))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	fmt.Println("before:", w.Engine().Decide("/tasks.v1.TaskService/PurgeTasks", exampleFrontend).Outcome)

	// Replace the file as an editor would (write, then rename).
	replace := func(contents string) error {
		if err := os.WriteFile(file+".tmp", []byte(contents), 0o644); err != nil {
			return err
		}
		return os.Rename(file+".tmp", file)
	}
	if err := replace(examplePolicy + `  - name: frontend-purges
    effect: allow
    from: ["spiffe://example.org/ns/web/sa/frontend"]
    to: ["/tasks.v1.TaskService/PurgeTasks"]
`); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("reload:", <-reloaded)
	fmt.Println("after:", w.Engine().Decide("/tasks.v1.TaskService/PurgeTasks", exampleFrontend).Outcome)

	if err := replace("version: 2\n"); err != nil {
		fmt.Println(err)
		return
	}
	err = <-reloaded
	fmt.Println("reload:", strings.TrimPrefix(err.Error(), dir+string(filepath.Separator)))
	fmt.Println("still:", w.Engine().Decide("/tasks.v1.TaskService/PurgeTasks", exampleFrontend).Outcome)
	// Output:
	// before: deny
	// reload: <nil>
	// after: allow
	// reload: policy.yaml:1: unsupported version 2 (want 1)
	// still: allow
}
