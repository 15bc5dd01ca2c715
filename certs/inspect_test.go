package certs_test

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testpki"
)

func TestInspect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res, err := devInit(dir, certs.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bundle := res.CA.Bundle()
	gateway := filepath.Join(dir, "gateway.pem")

	foreign := testpki.New(t, "shop.example")
	foreignFile := writeCert(t, foreign.SVID(t, "spiffe://shop.example/ns/shop/sa/gateway").Certificates[0].Raw)
	noURI, _ := foreign.Leaf(t, testpki.NoURISAN)
	noURIFile := writeCert(t, noURI.Raw)

	testCases := []struct {
		name       string
		file       string
		bundle     bool
		wantID     string
		wantIDErr  string
		wantVerify string // "" means it verifies; a prefix of the error otherwise
		wantLines  []string
	}{
		{
			name:   "good",
			file:   gateway,
			bundle: true,
			wantID: "spiffe://shop.example/ns/shop/sa/gateway",
			wantLines: []string{
				"file:             " + gateway,
				"spiffe id:        spiffe://shop.example/ns/shop/sa/gateway",
				"uri sans:         spiffe://shop.example/ns/shop/sa/gateway",
				"dns sans:         gateway, localhost",
				"ip sans:          127.0.0.1",
				"ca:               no",
				"key:              ECDSA P-256",
				"key usage:        digitalSignature",
				"ext key usage:    serverAuth, clientAuth",
				"chain:            1 certificate(s) in file",
				"chains to bundle: yes (trust domain shop.example)",
			},
		},
		{
			name:   "no bundle",
			file:   gateway,
			wantID: "spiffe://shop.example/ns/shop/sa/gateway",
			wantLines: []string{
				"chains to bundle: not checked (no bundle)",
			},
		},
		{
			name:       "other CA",
			file:       foreignFile,
			bundle:     true,
			wantID:     "spiffe://shop.example/ns/shop/sa/gateway",
			wantVerify: "x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority",
			wantLines: []string{
				"chains to bundle: no: x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority",
			},
		},
		{
			name:       "no URI SAN",
			file:       noURIFile,
			bundle:     true,
			wantIDErr:  "certificate contains no URI SAN",
			wantVerify: "x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN",
			wantLines: []string{
				"spiffe id:        none: certificate contains no URI SAN",
				"uri sans:         none",
				"dns sans:         none",
				"chains to bundle: no: x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN",
			},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := bundle
			if !tc.bundle {
				b = nil
			}
			r, err := certs.Inspect(tc.file, b)
			if err != nil {
				t.Fatal(err)
			}
			if got := idString(r.ID); got != tc.wantID {
				t.Errorf("ID = %q, want %q", got, tc.wantID)
			}
			if got := errString(r.IDErr); got != tc.wantIDErr {
				t.Errorf("IDErr = %q, want %q", got, tc.wantIDErr)
			}
			if got := errString(r.VerifyErr); !strings.HasPrefix(got, tc.wantVerify) || (got == "") != (tc.wantVerify == "") {
				t.Errorf("VerifyErr = %q, want prefix %q", got, tc.wantVerify)
			}
			if got, want := r.Verified(), tc.bundle && tc.wantVerify == ""; got != want {
				t.Errorf("Verified() = %v, want %v", got, want)
			}
			out := r.String()
			lines := strings.Split(out, "\n")
			for _, want := range tc.wantLines {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
					t.Errorf("report has no line starting with %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestInspectErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name string
		file string
		want string
	}{
		{"missing", missing, "certs: inspect: open " + missing + ": no such file or directory"},
		{"not PEM", notPEM, "certs: inspect: " + notPEM + ": no PEM CERTIFICATE block found"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := certs.Inspect(tc.file, nil)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Inspect error:\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}

func writeCert(t *testing.T, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "leaf.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func idString(id spiffeid.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
