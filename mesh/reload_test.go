package mesh_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/internal/testsync"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

// TestReloadThatUncoversAServedMethodIsRejected: while a server serves, a
// policy reload that would leave one of its methods without an allow rule
// is rejected by the toolkit (not only in the sample), and the policy in
// force stays; a reload that keeps them covered is applied. Both stacks.
func TestReloadThatUncoversAServedMethodIsRejected(t *testing.T) {
	t.Parallel()
	const covering = `version: 1
rules:
  - name: friend-greets
    effect: allow
    from: ["` + friendID + `"]
    to: ["/greet.v1.GreetService/*", "/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*"]
`
	const uncovering = `version: 1
rules:
  - name: friend-checks-health
    effect: allow
    from: ["` + friendID + `"]
    to: ["/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*"]
`
	const stillCovering = `version: 1
rules:
  - name: anyone-greets
    effect: allow
    from: ["spiffe://example.org/**"]
    to: ["/greet.v1.GreetService/*", "/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*"]
`
	for _, st := range greetStacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			wp := watchPolicy(t, covering)
			pki := testpki.New(t, "example.org")
			addr := st.serve(t, mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}, mesh.WithAuthorizer(wp.authz))
			greet := st.client(t, addr, mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()})
			if err := greet(context.Background()); err != nil {
				t.Fatalf("before the reload: %v", err)
			}

			want := wp.path + ": mesh: the reloaded policy leaves 2 served method(s) with no allow rule: /greet.v1.GreetService/Count, /greet.v1.GreetService/Greet"
			if err := wp.reload(t, uncovering); err == nil || err.Error() != want {
				t.Fatalf("reload that uncovers Greet: %v, want %s", err, want)
			}
			if err := greet(context.Background()); err != nil {
				t.Fatalf("after the rejected reload the old policy must stay: %v", err)
			}

			if err := wp.reload(t, stillCovering); err != nil {
				t.Fatalf("a covering reload was rejected: %v", err)
			}
			if rule := wp.watcher.Engine().Decide("/greet.v1.GreetService/Greet", pki.SVID(t, friendID).ID).Rule; rule != "anyone-greets" {
				t.Errorf("rule in force %q, want anyone-greets", rule)
			}
		})
	}
}

// TestReloadedUnusedDenyRule: a reload that brings a deny rule matching no
// served method (a typo: the broader allow rule lets its caller through)
// is rejected, as it stops Serve at start, and the policy in force stays;
// with WithCoverageWarnings it is applied and warned of. Before, only the
// policy a server started with was checked, and then only warned of. Both
// stacks.
func TestReloadedUnusedDenyRule(t *testing.T) {
	t.Parallel()
	const allowAll = `    to: ["/greet.v1.GreetService/*", "/grpc.health.v1.Health/*", "/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*"]
`
	const clean = `version: 1
rules:
  - name: app-greets
    effect: allow
    from: ["spiffe://example.org/**"]
` + allowAll
	const typo = `version: 1
rules:
  - name: no-friend-typo
    effect: deny
    from: ["` + friendID + `"]
    to: ["/greet.v1.GreetServices/Greet"]
  - name: app-greets
    effect: allow
    from: ["spiffe://example.org/**"]
` + allowAll
	const wantErr = "mesh: the reloaded policy's deny rule(s) no-friend-typo match no method this server serves, so they refuse nothing here (a typo in their methods? a rule meant for other servers says so with at:; WithCoverageWarnings only logs this)"
	const wantLog = `mesh: a policy being reloaded: its deny rules match no method this server serves, so they refuse nothing here (a typo in their methods? a rule meant for another server says so with at:)" rules=[no-friend-typo]`
	for _, st := range greetStacks {
		for _, warnOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/warn-only=%v", st.name, warnOnly), func(t *testing.T) {
				t.Parallel()
				wp := watchPolicy(t, clean)
				var logs testsync.Buffer
				pki := testpki.New(t, "example.org")
				opts := []mesh.ServerOption{mesh.WithAuthorizer(wp.authz), mesh.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))}
				if warnOnly {
					opts = append(opts, mesh.WithCoverageWarnings())
				}
				addr := st.serve(t, mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}, opts...)
				greet := st.client(t, addr, mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()})
				if err := greet(context.Background()); err != nil {
					t.Fatalf("before the reload: %v", err)
				}
				if strings.Contains(logs.String(), "match no method") {
					t.Fatalf("a warning before the reload:\n%s", logs.String())
				}
				err := wp.reload(t, typo)
				if !warnOnly {
					if err == nil || !strings.Contains(err.Error(), wantErr) {
						t.Fatalf("reload = %v, want an error containing\n %s", err, wantErr)
					}
					if rules := wp.watcher.Engine().Rules(); rules != 1 {
						t.Errorf("after the rejected reload %d rules in force, want the old policy's 1", rules)
					}
					return
				}
				if err != nil {
					t.Fatalf("reload: %v", err)
				}
				if got := logs.String(); !strings.Contains(got, wantLog+"\n") {
					t.Errorf("log lacks\n %s\nin:\n%s", wantLog, got)
				}
				if err := greet(context.Background()); err != nil { // the typo'd rule refuses nothing
					t.Errorf("after the reload: %v", err)
				}
			})
		}
	}
}

// watchedPolicy is a policy file under a policy.Watcher and the
// authorizer that reads it.
type watchedPolicy struct {
	path    string
	watcher *policy.Watcher
	authz   *interceptors.Authorizer
	updates chan error
}

// watchPolicy writes contents to a fresh policy file and watches it.
func watchPolicy(t *testing.T, contents string) *watchedPolicy {
	t.Helper()
	wp := &watchedPolicy{path: filepath.Join(t.TempDir(), "policy.yaml"), updates: make(chan error, 10)}
	if err := os.WriteFile(wp.path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var err error
	wp.watcher, err = policy.NewWatcher(ctx, wp.path, policy.WithDebounce(20*time.Millisecond),
		policy.WithOnUpdate(func(_ *policy.Engine, err error) { wp.updates <- err }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wp.watcher.Close() })
	if wp.authz, err = interceptors.NewAuthorizer(wp.watcher); err != nil {
		t.Fatal(err)
	}
	return wp
}

// reload replaces the file's contents (atomically, as an editor's save or
// a ConfigMap update does) and returns the outcome of the reload.
func (wp *watchedPolicy) reload(t *testing.T, contents string) error {
	t.Helper()
	tmp := wp.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, wp.path); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-wp.updates:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no reload attempt within 10s")
		return nil
	}
}
