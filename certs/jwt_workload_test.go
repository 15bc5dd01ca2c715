package certs_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metricsdk "go.opentelemetry.io/otel/sdk/metric"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/testpki"
)

const inventoryID = "spiffe://shop.example/ns/shop/sa/inventory"

// jwks is the JWT bundle of ca as SPIRE's agent sends it on
// FetchJWTBundles: a standard JWK Set of the jwt-svid keys, without use.
func jwks(t *testing.T, cas ...*certs.CA) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, ca := range cas {
		for _, k := range ca.SPIFFEBundle().JWTKeys() {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Key, KeyID: k.KeyID})
		}
	}
	out, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// minter answers FetchJWTSVID with a JWT-SVID that ca mints for the request,
// as SPIRE's agent does; mutate (may be nil) changes the request first.
func minter(t *testing.T, ca *certs.CA, mutate func(*certs.JWTRequest)) func(*workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	return func(req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
		id, err := spiffeid.FromString(req.GetSpiffeId())
		if err != nil {
			return nil, err
		}
		jr := certs.JWTRequest{ID: id, Audience: req.GetAudience()}
		if mutate != nil {
			mutate(&jr)
		}
		svid, err := ca.MintJWTSVID(jr)
		if err != nil {
			t.Error(err)
			return nil, err
		}
		return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: req.GetSpiffeId(), Svid: svid.Marshal()}}}, nil
	}
}

// startJWTWorkload serves an X.509-SVID for orders from pki and the JWT
// bundle of jwtCA (and partnerCA's), and returns a source following it.
func startJWTWorkload(t *testing.T, jwtCA *certs.CA, opts ...certs.WorkloadOption) (*workloadAPI, string, *certs.WorkloadSource, *logBuffer) {
	t.Helper()
	pki := testpki.New(t, "shop.example")
	api, addr := startWorkloadAPI(t)
	api.set(x509Response(t, pki.SVID(t, ordersID), pki))
	api.setJWTBundles(&workload.JWTBundlesResponse{Bundles: map[string][]byte{shop.IDString(): jwks(t, jwtCA)}})
	api.setJWTMinter(minter(t, jwtCA, nil))
	log, logs := newLog()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	src, err := certs.NewWorkloadSource(ctx, addr, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return api, addr, src, logs
}

// waitJWTBundle waits until the source's JWT bundle of td satisfies ok.
func waitJWTBundle(t *testing.T, src *certs.WorkloadSource, td spiffeid.TrustDomain, ok func(*identity.Bundle) bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		if b, err := src.BundleForTrustDomain(td); err == nil && ok(b) {
			return
		}
		select {
		case <-src.Updated():
		case <-deadline:
			b, err := src.BundleForTrustDomain(td)
			t.Fatalf("JWT bundle of %s: %v, %v", td.Name(), b, err)
		}
	}
}

// TestWorkloadSourceJWTSVID: the source fetches JWT-SVIDs for an audience
// over the Workload API, verified against the JWT bundles of the
// FetchJWTBundles stream, which it also serves to verify the JWT-SVIDs of
// others, following their rotation.
func TestWorkloadSourceJWTSVID(t *testing.T) {
	t.Parallel()
	jwtCA, err := certs.NewCA(shop)
	if err != nil {
		t.Fatal(err)
	}
	api, _, src, logs := startJWTWorkload(t, jwtCA)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	svid, err := src.FetchJWTSVID(ctx, inventoryID)
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != ordersID || len(svid.Audience) != 1 || svid.Audience[0] != inventoryID || svid.KeyID != jwtCA.JWTKeyID() {
		t.Errorf("JWT-SVID %+v", svid)
	}
	// The source verifies the JWT-SVIDs of others: the inventory server
	// checks the token with its own source.
	if got, err := identity.VerifyJWTSVID(svid.Marshal(), src, inventoryID, time.Time{}); err != nil || got.ID != svid.ID {
		t.Errorf("verify with the source: %v, %v", got, err)
	}
	logs.waitFor(t, "certs: JWT bundles from the Workload API", 1)

	// The agent rotates the JWT-SVID key: tokens of the old one stop
	// verifying once it leaves the bundle.
	next, err := certs.NewCA(shop)
	if err != nil {
		t.Fatal(err)
	}
	api.setJWTBundles(&workload.JWTBundlesResponse{Bundles: map[string][]byte{shop.IDString(): jwks(t, next)}})
	waitJWTBundle(t, src, shop, func(b *identity.Bundle) bool { return b.JWTKeys()[0].KeyID == next.JWTKeyID() })
	_, err = identity.VerifyJWTSVID(svid.Marshal(), src, inventoryID, time.Time{})
	if want := `identity: jwt-svid: no jwt-svid key "` + jwtCA.JWTKeyID() + `" in the bundle of trust domain "shop.example"`; err == nil || err.Error() != want {
		t.Errorf("token of the removed key:\n got: %v\nwant: %s", err, want)
	}
	api.setJWTMinter(minter(t, next, nil))
	if svid, err := src.FetchJWTSVID(ctx, inventoryID); err != nil || svid.KeyID != next.JWTKeyID() {
		t.Errorf("after rotation: %v, %v", svid, err)
	}

	if _, err := src.FetchJWTSVID(ctx, ""); err == nil || !strings.HasSuffix(err.Error(), ": fetch JWT-SVID: no audience") {
		t.Errorf("no audience: %v", err)
	}
	if _, err := src.BundleForTrustDomain(partner); err == nil || !strings.HasSuffix(err.Error(), `: no JWT bundle for trust domain "partner.example"`) {
		t.Errorf("partner: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.FetchJWTSVID(ctx, inventoryID); !errors.Is(err, certs.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	if _, err := src.BundleForTrustDomain(shop); !errors.Is(err, certs.ErrClosed) {
		t.Errorf("bundle after Close: %v", err)
	}
}

// TestWorkloadSourceRefusesBadJWTSVIDs: a JWT-SVID the Workload API answers
// with is returned only if it verifies, for the requested audience and
// SPIFFE ID; otherwise the error says why, and the metric counts it.
func TestWorkloadSourceRefusesBadJWTSVIDs(t *testing.T) {
	t.Parallel()
	jwtCA, err := certs.NewCA(shop)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA(shop) // a key the bundle does not hold
	if err != nil {
		t.Fatal(err)
	}
	reader := metricsdk.NewManualReader()
	api, addr, src, logs := startJWTWorkload(t, jwtCA, certs.WithMeterProvider(metricsdk.NewMeterProvider(metricsdk.WithReader(reader))))
	where := "certs: SPIFFE Workload API at " + addr + ": "
	// longID has 258 bytes: the 256-byte limit falls inside its "é".
	longID := "spiffe://shop.example/ns/shop/sa/" + strings.Repeat("p", 222) + "éx"
	testCases := []struct {
		name    string
		mint    func(*workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error)
		reason  string
		wantErr string
	}{
		{"signed-by-a-key-not-in-the-bundle", minter(t, other, nil), certs.RejectUntrusted,
			`rejected the JWT-SVID for ` + ordersID + `: identity: jwt-svid: no jwt-svid key "` + other.JWTKeyID() + `" in the bundle of trust domain "shop.example"`},
		{"for-another-audience", minter(t, jwtCA, func(r *certs.JWTRequest) { r.Audience = []string{"spiffe://shop.example/ns/shop/sa/payments"} }), certs.RejectUntrusted,
			`rejected the JWT-SVID for ` + ordersID + `: identity: jwt-svid: aud ["spiffe://shop.example/ns/shop/sa/payments"] does not contain "` + inventoryID + `"`},
		{"expired", minter(t, jwtCA, func(r *certs.JWTRequest) { r.Now = time.Now().Add(-time.Hour) }), certs.RejectUntrusted,
			`rejected the JWT-SVID for ` + ordersID + `: identity: jwt-svid: expired at `},
		{"sub-is-another-workload", minter(t, jwtCA, func(r *certs.JWTRequest) {
			r.ID = spiffeid.RequireFromString("spiffe://shop.example/ns/shop/sa/payments")
		}), certs.RejectIDMismatch,
			`rejected the JWT-SVID for ` + ordersID + `: its sub is spiffe://shop.example/ns/shop/sa/payments`},
		{"not-offered", func(*workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
			return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: "spiffe://shop.example/ns/shop/sa/payments", Svid: "x.y.z"}}}, nil
		}, certs.RejectIDNotOffered, `no JWT-SVID for ` + ordersID + ` in the response (it offered "spiffe://shop.example/ns/shop/sa/payments")`},
		// An offered ID is cut to 256 bytes for the error, before the rune
		// that crosses the limit, not in the middle of it.
		{"not-offered-long-id", func(*workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
			return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: longID, Svid: "x.y.z"}}}, nil
		}, certs.RejectIDNotOffered, `no JWT-SVID for ` + ordersID + ` in the response (it offered "` + longID[:255] + `...")`},
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	want := map[string]int64{}
	for _, tc := range testCases {
		api.setJWTMinter(tc.mint)
		svid, err := src.FetchJWTSVID(ctx, inventoryID)
		if err == nil || !strings.HasPrefix(err.Error(), where+tc.wantErr) {
			t.Errorf("%s: FetchJWTSVID = %v, %v\nwant error: %s%s", tc.name, svid, err, where, tc.wantErr)
		}
		want[tc.reason]++
	}
	if n := logs.count("certs: rejected a JWT-SVID from the Workload API"); n != len(testCases) {
		t.Errorf("%d rejection log lines, want %d", n, len(testCases))
	}
	got := rejectedCounts(t, reader)
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("%s = %d, want %d (all: %v)", reason, got[reason], n, got)
		}
	}
}

// TestWorkloadSourceJWTBundleUpdates: a JWT bundles response with a bundle
// that does not parse is refused whole, and the last good bundles stay; a
// key that says it is for X.509-SVIDs never verifies a JWT; a trust domain
// whose bundle has no keys trusts no JWT-SVID.
func TestWorkloadSourceJWTBundleUpdates(t *testing.T) {
	t.Parallel()
	jwtCA, err := certs.NewCA(shop)
	if err != nil {
		t.Fatal(err)
	}
	reader := metricsdk.NewManualReader()
	api, _, src, logs := startJWTWorkload(t, jwtCA, certs.WithMeterProvider(metricsdk.NewMeterProvider(metricsdk.WithReader(reader))))
	waitJWTBundle(t, src, shop, func(b *identity.Bundle) bool { return len(b.JWTKeys()) == 1 })
	tok, err := jwtCA.MintJWTSVID(certs.JWTRequest{ID: spiffeid.RequireFromString(ordersID), Audience: []string{inventoryID}})
	if err != nil {
		t.Fatal(err)
	}

	api.setJWTBundles(&workload.JWTBundlesResponse{Bundles: map[string][]byte{shop.IDString(): jwks(t, jwtCA), partner.IDString(): []byte(`{"keys":`)}})
	logs.waitFor(t, "certs: rejected JWT bundles from the Workload API; keeping the previous ones", 1)
	if got := rejectedCounts(t, reader)[certs.RejectMalformed]; got != 1 {
		t.Errorf("%s = %d, want 1", certs.RejectMalformed, got)
	}
	if _, err := identity.VerifyJWTSVID(tok.Marshal(), src, inventoryID, time.Time{}); err != nil {
		t.Errorf("the last good bundle no longer verifies: %v", err)
	}

	// The key as an x509-svid entry, and an empty partner bundle.
	k := jwtCA.SPIFFEBundle().JWTKeys()[0]
	asX509, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Key, KeyID: k.KeyID, Use: "x509-svid"}}})
	if err != nil {
		t.Fatal(err)
	}
	api.setJWTBundles(&workload.JWTBundlesResponse{Bundles: map[string][]byte{shop.IDString(): asX509, partner.IDString(): []byte(`{"keys":[]}`)}})
	waitJWTBundle(t, src, shop, func(b *identity.Bundle) bool { return len(b.JWTKeys()) == 0 })
	_, err = identity.VerifyJWTSVID(tok.Marshal(), src, inventoryID, time.Time{})
	if want := `identity: jwt-svid: the bundle of trust domain "shop.example" has no jwt-svid keys: it trusts no JWT-SVID`; err == nil || err.Error() != want {
		t.Errorf("key of use x509-svid:\n got: %v\nwant: %s", err, want)
	}
	if b, err := src.BundleForTrustDomain(partner); err != nil || len(b.Keys()) != 0 {
		t.Errorf("empty partner bundle: %v, %v", b, err)
	}
}

// TestWorkloadSourceWithoutJWT: a Workload API without the JWT methods
// leaves the X.509 side alone, and every JWT-SVID is refused; so is every
// fetch while the identity is withdrawn.
func TestWorkloadSourceWithoutJWT(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	api, addr := startWorkloadAPI(t)
	api.mu.Lock()
	api.noJWT = true
	api.mu.Unlock()
	api.set(x509Response(t, pki.SVID(t, ordersID), pki))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	src, err := certs.NewWorkloadSource(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	where := "certs: SPIFFE Workload API at " + addr
	if _, err := src.FetchJWTSVID(ctx, inventoryID); err == nil || err.Error() != where+": fetch JWT-SVID for "+ordersID+": method FetchJWTSVID not implemented" {
		t.Errorf("FetchJWTSVID: %v", err)
	}
	if _, err := src.BundleForTrustDomain(shop); err == nil || err.Error() != where+" serves no JWT bundles (FetchJWTBundles: method FetchJWTBundles not implemented)" {
		t.Errorf("BundleForTrustDomain: %v", err)
	}
	if _, err := src.GetX509SVID(); err != nil {
		t.Errorf("GetX509SVID: %v", err)
	}

	api.withdraw()
	waitServing(t, src, false)
	if _, err := src.FetchJWTSVID(ctx, inventoryID); !errors.Is(err, certs.ErrWithdrawn) {
		t.Errorf("withdrawn: %v, want ErrWithdrawn", err)
	}
}
