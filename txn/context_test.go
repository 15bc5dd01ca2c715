package txn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/trustmesh/trustmesh/txn"
)

func TestContext(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	tok := m.mint(t)
	ctx := context.Background()
	if got, ok := txn.FromContext(ctx); ok || got != nil {
		t.Errorf("FromContext of an empty context = %v, %v", got, ok)
	}
	if raw, ok := txn.RawFromContext(ctx); ok || raw != "" {
		t.Errorf("RawFromContext of an empty context = %q, %v", raw, ok)
	}
	ctx = txn.NewContext(ctx, tok)
	if got, ok := txn.FromContext(ctx); !ok || got != tok {
		t.Errorf("FromContext = %v, %v; want the token", got, ok)
	}
	if raw, ok := txn.RawFromContext(ctx); !ok || raw != tok.Raw() {
		t.Errorf("RawFromContext = %q, %v; want the compact token", raw, ok)
	}
	// Nothing but a minted or verified token goes in.
	for _, zero := range []*txn.Token{nil, {}} {
		if got, ok := txn.FromContext(txn.NewContext(context.Background(), zero)); ok {
			t.Errorf("FromContext after NewContext(%#v) = %v, true", zero, got)
		}
	}
}

func TestFromHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		values  []string
		want    string
		wantErr string
	}{
		{"none", nil, "", ""},
		{"one", []string{"a.b.c"}, "a.b.c", ""},
		{"one-with-spaces", []string{"  a.b.c "}, "a.b.c", ""},
		{"empty", []string{" "}, "", "txn: malformed token: empty txn-token header"},
		{"two", []string{"a.b.c", "d.e.f"}, "", "txn: malformed token: 2 txn-token headers (want exactly one token)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := txn.FromHeader(tc.values)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, txn.ErrMalformed) {
					t.Errorf("FromHeader = %q, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("FromHeader = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestTokenNeverPrintsItself: printing or logging a Token shows who and
// what it is for, never the compact token, a bearer credential.
func TestTokenNeverPrintsItself(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	tok := m.mint(t)
	signature := tok.Raw()[strings.LastIndex(tok.Raw(), ".")+1:]
	want := fmt.Sprintf("txn %s for %s by %s via %s", tok.ID(), aliceID, gatewayID, method)
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		got := fmt.Sprintf(format, tok)
		if got != want {
			t.Errorf("Sprintf(%q) = %q, want %q", format, got, want)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("call", "txn", tok)
	logged := buf.String()
	if strings.Contains(logged, signature) || strings.Contains(logged, tok.Raw()[:40]) {
		t.Errorf("the log line holds the token: %s", logged)
	}
	for _, field := range []string{`"subject":"` + aliceID + `"`, `"txn":"` + tok.ID() + `"`, `"minter":"` + gatewayID + `"`, `"method":"` + method + `"`} {
		if !strings.Contains(logged, field) {
			t.Errorf("the log line lacks %s: %s", field, logged)
		}
	}
	if got := (*txn.Token)(nil).String(); got != "<no transaction token>" {
		t.Errorf("String of nil = %q", got)
	}
	if len(tok.Digest()) != 64 {
		t.Errorf("Digest = %q, want 64 hex digits", tok.Digest())
	}
}
