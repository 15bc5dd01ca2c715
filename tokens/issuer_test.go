package tokens_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/tokens"
)

func TestInitDev(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := tokens.InitDev(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || first.KeyID == "" {
		t.Fatalf("first InitDev = %+v, want a created key", first)
	}
	fi, err := os.Stat(first.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %v, want 0600", first.KeyFile, perm)
	}

	// Again: the key is kept.
	again, err := tokens.InitDev(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.KeyID != first.KeyID {
		t.Errorf("second InitDev = %+v, want the key %s kept", again, first.KeyID)
	}

	// A token from the kept key verifies against the JWKS.
	leaf := newLeaf(t, aliceID)
	raw, err := newIssuer(t, again.KeyFile).Issue(leaf, audience, 15*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, tokens.Config{Issuer: tokens.DevIssuer, Audience: audience, JWKSFile: again.JWKSFile})
	if _, err := v.Verify(raw, leaf, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	// --force: a new key; the old tokens no longer verify.
	forced, err := tokens.InitDev(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if !forced.Created || forced.KeyID == first.KeyID {
		t.Errorf("forced InitDev = %+v, want a new key", forced)
	}
	v = newVerifier(t, tokens.Config{Issuer: tokens.DevIssuer, Audience: audience, JWKSFile: forced.JWKSFile})
	if _, err := v.Verify(raw, leaf, now); errString(err) != `tokens: no issuer key with kid "`+first.KeyID+`"` {
		t.Errorf("Verify of a token from the replaced key: %v", err)
	}
}

func TestInitDevBadKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/"+tokens.KeyFile, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := tokens.InitDev(dir, false)
	if want := "tokens: key file " + dir + "/token-key.pem: no PEM block (--force replaces it)"; errString(err) != want {
		t.Errorf("InitDev error = %v, want %s", err, want)
	}
}

func TestIssue(t *testing.T) {
	t.Parallel()
	key := devKey(t)
	iss := newIssuer(t, key.KeyFile)
	leaf := newLeaf(t, aliceID)
	raw, err := iss.Issue(leaf, audience, 15*time.Minute, now.Add(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// The header says what the token is: an access token (RFC 9068).
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(header, &h); err != nil {
		t.Fatal(err)
	}
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] != iss.KeyID() {
		t.Errorf("header = %s, want typ at+jwt, alg ES256 and kid %s", header, iss.KeyID())
	}
	v := newVerifier(t, tokens.Config{Issuer: tokens.DevIssuer, Audience: audience, JWKSFile: key.JWKSFile})
	c, err := v.Verify(raw, leaf, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := tokens.Claims{Issuer: tokens.DevIssuer, Subject: aliceID, Audience: []string{audience},
		Expiry: now.Add(15 * time.Minute), NotBefore: now, IssuedAt: now, ID: c.ID, Thumbprint: tokens.Thumbprint(leaf)}
	if c.ID == "" || !c.Expiry.Equal(want.Expiry) || !c.NotBefore.Equal(now) || !c.IssuedAt.Equal(now) ||
		c.Issuer != want.Issuer || c.Subject != want.Subject || len(c.Audience) != 1 || c.Audience[0] != audience || c.Thumbprint != want.Thumbprint {
		t.Errorf("claims = %+v\nwant %+v", c, want)
	}
	if _, err := v.Verify(raw, leaf, now.Add(16*time.Minute)); errString(err) != "tokens: token expired at 2030-06-01T10:15:00Z" {
		t.Errorf("Verify after the ttl: %v", err)
	}

	for name, tc := range map[string]struct {
		leaf bool
		aud  string
		ttl  time.Duration
		want string
	}{
		"no certificate": {false, audience, time.Minute, "tokens: issue: no certificate to bind the token to"},
		"no audience":    {true, "", time.Minute, "tokens: issue: no audience"},
		"zero ttl":       {true, audience, 0, "tokens: issue: ttl 0s must be positive"},
	} {
		l := leaf
		if !tc.leaf {
			l = nil
		}
		if _, err := iss.Issue(l, tc.aud, tc.ttl, now); errString(err) != tc.want {
			t.Errorf("%s: Issue error = %v, want %s", name, err, tc.want)
		}
	}
}

func TestNewIssuerErrors(t *testing.T) {
	t.Parallel()
	if _, err := tokens.NewIssuer("", "x"); errString(err) != "tokens: issuer needs a name" {
		t.Errorf("no name: %v", err)
	}
	key := devKey(t)
	if _, err := tokens.NewIssuer(tokens.DevIssuer, key.JWKSFile); errString(err) != "tokens: key file "+key.JWKSFile+": no PEM block" {
		t.Errorf("JWKS as the key: %v", err)
	}
}
