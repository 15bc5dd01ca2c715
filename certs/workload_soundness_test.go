package certs_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/attribute"
	metricsdk "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/proto"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

const gatewayID = "spiffe://shop.example/ns/shop/sa/gateway"

// The log lines of a WorkloadSource that these tests assert.
const (
	msgRejected        = "certs: rejected an update from the Workload API; still serving the previous SVID"
	msgRejectedWithout = "certs: rejected an update from the Workload API; the SVID stays withdrawn"
	msgWithdrawn       = "certs: the Workload API withdrew the SVID; no longer presenting it"
	msgReissued        = "certs: the Workload API issued an SVID again; presenting it"
)

// ordersLeaf signs a leaf for ordersID after mutate, with the checks of
// certs.CA.Issue skipped, so that it can carry a defect.
func ordersLeaf(t *testing.T, pki *testpki.PKI, mutate func(*x509.Certificate)) *x509svid.SVID {
	t.Helper()
	id := spiffeid.RequireFromString(ordersID)
	cert, key := pki.Leaf(t, func(c *x509.Certificate) {
		c.URIs = []*url.URL{id.URL()}
		if mutate != nil {
			mutate(c)
		}
	})
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

// TestWorkloadSourceRejectsUnsoundUpdates sends a source, after a good
// response, each kind of unsound one: the source keeps presenting the good
// SVID (and verifying peers with the good bundle) over real TLS, logs one
// error line naming the defect, counts it in trustmesh.svid.rejected, and
// adopts the next good response. The same response as the first one makes
// NewWorkloadSource fail with the same error.
func TestWorkloadSourceRejectsUnsoundUpdates(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	otherCA := testpki.New(t, "shop.example") // same trust domain, another key
	partnerPKI := testpki.New(t, "partner.example")
	caName := pki.Bundle().X509Authorities()[0].Subject.CommonName

	// Each case edits a good response (one orders SVID, pki's bundle,
	// partner.example federated) and returns the error it must be refused
	// with, after "certs: SPIFFE Workload API at ADDR: ".
	testCases := []struct {
		name   string
		id     string // for certs.WithSVIDID; none if empty
		edit   func(t *testing.T, resp *workload.X509SVIDResponse) string
		reason string
	}{
		{
			name: "invalid-signature",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				der := resp.Svids[0].X509Svid
				der[len(der)-1] ^= 0xff // the last byte of the ECDSA signature
				return `identity: server certificate "` + ordersID + `": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "` + caName + `")`
			},
			reason: certs.RejectUntrusted,
		},
		{
			name: "not-chained-to-bundle",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				setSVID(t, resp.Svids[0], otherCA.SVID(t, ordersID))
				return `identity: server certificate "` + ordersID + `": x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "` + caName + `")`
			},
			reason: certs.RejectUntrusted,
		},
		{
			name: "expired",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				svid := ordersLeaf(t, pki, testpki.Expired)
				setSVID(t, resp.Svids[0], svid)
				leaf := svid.Certificates[0]
				return "SVID expired at " + rfc3339(leaf.NotAfter) + " (valid from " + rfc3339(leaf.NotBefore) + " to " + rfc3339(leaf.NotAfter) + ")"
			},
			reason: certs.RejectNotValidNow,
		},
		{
			name: "not-yet-valid",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				svid := ordersLeaf(t, pki, testpki.NotYetValid)
				setSVID(t, resp.Svids[0], svid)
				leaf := svid.Certificates[0]
				return "SVID is not valid until " + rfc3339(leaf.NotBefore) + " (valid from " + rfc3339(leaf.NotBefore) + " to " + rfc3339(leaf.NotAfter) + ")"
			},
			reason: certs.RejectNotValidNow,
		},
		{
			name: "spiffe-id-differs-from-uri-san",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.Svids[0].SpiffeId = gatewayID
				return `X.509-SVID 1 ("` + gatewayID + `"): spiffe_id differs from the certificate's URI SAN "` + ordersID + `"`
			},
			reason: certs.RejectIDMismatch,
		},
		{
			name: "spiffe-id-differs-from-uri-san-of-picked-svid",
			id:   ordersID,
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				setSVID(t, resp.Svids[0], pki.SVID(t, gatewayID))
				resp.Svids[0].SpiffeId = ordersID
				return `X.509-SVID 1 ("` + ordersID + `"): spiffe_id differs from the certificate's URI SAN "` + gatewayID + `"`
			},
			reason: certs.RejectIDMismatch,
		},
		{
			name: "picked-id-not-offered",
			id:   ordersID,
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				setSVID(t, resp.Svids[0], pki.SVID(t, gatewayID))
				return "no SVID with ID " + ordersID + " among those offered"
			},
			reason: certs.RejectIDNotOffered,
		},
		{
			name: "key-does-not-match-certificate",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.Svids[0].X509SvidKey = pkcs8(t, pki.SVID(t, ordersID))
				return `X.509-SVID 1 ("` + ordersID + `"): x509svid: private key validation failed: leaf certificate does not match private key`
			},
			reason: certs.RejectMalformed,
		},
		{
			name: "leaf-is-ca",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				setSVID(t, resp.Svids[0], ordersLeaf(t, pki, testpki.LeafIsCA))
				return `X.509-SVID 1 ("` + ordersID + `"): x509svid: certificate validation failed: leaf certificate must not have CA flag set to true`
			},
			reason: certs.RejectMalformed,
		},
		{
			name: "no-client-auth",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				setSVID(t, resp.Svids[0], ordersLeaf(t, pki, testpki.NoClientAuth))
				return `identity: client certificate "` + ordersID + `": leaf lacks the clientAuth extended key usage`
			},
			reason: certs.RejectUntrusted,
		},
		{
			name: "no-server-auth",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				setSVID(t, resp.Svids[0], ordersLeaf(t, pki, testpki.NoServerAuth))
				return `identity: server certificate "` + ordersID + `": leaf lacks the serverAuth extended key usage`
			},
			reason: certs.RejectUntrusted,
		},
		{
			name: "bundle-empty",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.Svids[0].Bundle = nil
				return `X.509-SVID 1 ("` + ordersID + `"): mandatory field bundle is empty`
			},
			reason: certs.RejectMissingField,
		},
		{
			name: "bundle-malformed",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.Svids[0].Bundle = []byte("not DER")
				return `X.509-SVID 1 ("` + ordersID + `"): bundle: x509: malformed certificate`
			},
			reason: certs.RejectMalformed,
		},
		{
			name: "spiffe-id-empty",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.Svids[0].SpiffeId = ""
				return "X.509-SVID 1: mandatory field spiffe_id is empty"
			},
			reason: certs.RejectMissingField,
		},
		{
			name: "x509-svid-empty",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.Svids[0].X509Svid = nil
				return `X.509-SVID 1 ("` + ordersID + `"): mandatory field x509_svid is empty`
			},
			reason: certs.RejectMissingField,
		},
		{
			name: "x509-svid-key-empty",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.Svids[0].X509SvidKey = nil
				return `X.509-SVID 1 ("` + ordersID + `"): mandatory field x509_svid_key is empty`
			},
			reason: certs.RejectMissingField,
		},
		{
			name: "no-svid",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.Svids = nil
				return "response holds no X.509-SVID"
			},
			reason: certs.RejectMissingField,
		},
		{
			name: "federated-bundle-empty",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.FederatedBundles["spiffe://partner.example"] = nil
				return `federated bundle "spiffe://partner.example" is empty`
			},
			reason: certs.RejectMissingField,
		},
		{
			name: "federated-bundle-repeats-own-trust-domain",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.FederatedBundles["spiffe://shop.example"] = otherCA.Bundle().X509Authorities()[0].Raw
				return `federated bundle "spiffe://shop.example" repeats the trust domain of X.509-SVID 1 ("` + ordersID + `")`
			},
			reason: certs.RejectMalformed,
		},
		{
			name: "federated-trust-domain-invalid",
			edit: func(t *testing.T, resp *workload.X509SVIDResponse) string {
				resp.FederatedBundles["Partner.example"] = resp.FederatedBundles["spiffe://partner.example"]
				return `federated bundle "Partner.example": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`
			},
			reason: certs.RejectMalformed,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []certs.WorkloadOption
			if tc.id != "" {
				opts = append(opts, certs.WithSVIDID(spiffeid.RequireFromString(tc.id)))
			}
			bad := x509Response(t, pki.SVID(t, ordersID), pki, partnerPKI)
			wantErr := tc.edit(t, bad)

			t.Run("at-start", func(t *testing.T) {
				t.Parallel()
				api, addr := startWorkloadAPI(t)
				api.set(bad)
				reader := metricsdk.NewManualReader()
				_, err := certs.NewWorkloadSource(context.Background(), addr, nil,
					append(opts, certs.WithStartTimeout(waitTimeout), certs.WithMeterProvider(metricsdk.NewMeterProvider(metricsdk.WithReader(reader))))...)
				if want := "certs: SPIFFE Workload API at " + addr + ": " + wantErr; err == nil || err.Error() != want {
					t.Errorf("error:\n got %v\nwant %s", err, want)
				}
				if got := rejectedCounts(t, reader); len(got) != 1 || got[tc.reason] != 1 {
					t.Errorf("%s = %v, want %s: 1", certs.RejectedMetric, got, tc.reason)
				}
			})

			t.Run("update", func(t *testing.T) {
				t.Parallel()
				api, addr := startWorkloadAPI(t)
				good := pki.SVID(t, ordersID)
				api.set(x509Response(t, good, pki, partnerPKI))
				log, logs := newLog()
				reader := metricsdk.NewManualReader()
				src, err := certs.NewWorkloadSource(context.Background(), addr, log,
					append(opts, certs.WithMeterProvider(metricsdk.NewMeterProvider(metricsdk.WithReader(reader))))...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = src.Close() })
				serverCfg, err := mesh.ServerTLSConfig(mesh.Credentials{SVID: src, Bundles: src}, mesh.AuthorizeMembers(shop))
				if err != nil {
					t.Fatal(err)
				}
				tlsAddr, _ := echoServer(t, serverCfg)
				clientCfg := aliceClientConfig(t, pki)

				api.set(proto.Clone(bad).(*workload.X509SVIDResponse))
				logs.waitFor(t, msgRejected, 1)
				want := logLine(slog.LevelError, msgRejected, "source", addr,
					"error", "certs: SPIFFE Workload API at "+addr+": "+wantErr, "serving_serial", serial(good))
				if got := logLines(logs, msgRejected); len(got) != 1 || got[0] != want {
					t.Errorf("log lines:\n got %q\nwant %q", got, want)
				}
				if got := serialOf(t, src); got != serial(good) {
					t.Errorf("after the rejected update the source serves %s, want the good %s", got, serial(good))
				}
				// A new handshake presents the good SVID and verifies the
				// client against the good bundle.
				conn := dialEcho(t, tlsAddr, clientCfg)
				if got := peerSerial(conn); got != serial(good) {
					t.Errorf("handshake presented %s, want the good %s", got, serial(good))
				}
				if got := rejectedCounts(t, reader); len(got) != 1 || got[tc.reason] != 1 {
					t.Errorf("%s = %v, want %s: 1", certs.RejectedMetric, got, tc.reason)
				}

				// The next good response is adopted.
				next := pki.SVID(t, ordersID)
				api.set(x509Response(t, next, pki, partnerPKI))
				waitSerial(t, src, serial(next))
				if n := logs.count(msgRejected); n != 1 {
					t.Errorf("log has %d of %q, want 1", n, msgRejected)
				}
			})
		})
	}
}

// TestWorkloadSourceWithdrawn withdraws the identity (the stream answers
// PermissionDenied, as SPIRE does once the workload's registration entry is
// deleted): the source stops presenting its SVID, so new handshakes fail on
// both sides, Serving turns false and the expiry gauge goes quiet; an
// unsound re-issue leaves it withdrawn; a sound one brings it back.
func TestWorkloadSourceWithdrawn(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	api, addr := startWorkloadAPI(t)
	first := pki.SVID(t, ordersID)
	api.set(x509Response(t, first, pki))
	log, logs := newLog()
	reader := metricsdk.NewManualReader()
	src, err := certs.NewWorkloadSource(context.Background(), addr, log,
		certs.WithSVIDID(spiffeid.RequireFromString(ordersID)),
		certs.WithMeterProvider(metricsdk.NewMeterProvider(metricsdk.WithReader(reader))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	if !src.Serving() {
		t.Fatal("Serving() = false after the start")
	}

	// orders (the source) as a server, and as a client of another server.
	serverCfg, err := mesh.ServerTLSConfig(mesh.Credentials{SVID: src, Bundles: src}, mesh.AuthorizeMembers(shop))
	if err != nil {
		t.Fatal(err)
	}
	ordersAddr, _ := echoServer(t, serverCfg)
	aliceCfg := aliceClientConfig(t, pki)
	before := dialEcho(t, ordersAddr, aliceCfg)
	gatewayCfg, err := mesh.ServerTLSConfig(mesh.Credentials{SVID: pki.SVID(t, gatewayID), Bundles: pki.Bundle()}, mesh.AuthorizeMembers(shop))
	if err != nil {
		t.Fatal(err)
	}
	gatewayAddr, gatewaySaw := echoServer(t, gatewayCfg)
	ordersClientCfg, err := mesh.ClientTLSConfig(mesh.Credentials{SVID: src, Bundles: src}, tlsconfig.AuthorizeID(spiffeid.RequireFromString(gatewayID)))
	if err != nil {
		t.Fatal(err)
	}
	dialEcho(t, gatewayAddr, ordersClientCfg)

	api.withdraw()
	waitServing(t, src, false)
	wantErr := "certs: identity withdrawn by the Workload API: " + addr +
		" answered PermissionDenied (no identity issued); no SVID is presented until it issues one again"
	svid, err := src.GetX509SVID()
	if err == nil || err.Error() != wantErr || !errors.Is(err, certs.ErrWithdrawn) {
		t.Errorf("GetX509SVID after withdrawal: %v, %v\nwant the error %s (errors.Is ErrWithdrawn)", svid, err, wantErr)
	}
	logs.waitFor(t, msgWithdrawn, 1)
	want := logLine(slog.LevelError, msgWithdrawn, "source", addr, "spiffe_id", ordersID, "serial", serial(first),
		"not_after", rfc3339(first.Certificates[0].NotAfter),
		"error", "rpc error: code = PermissionDenied desc = no identity issued")
	if got := logLines(logs, msgWithdrawn); len(got) != 1 || got[0] != want {
		t.Errorf("log lines:\n got %q\nwant %q", got, want)
	}
	if points := collectExpiry(t, reader); len(points) != 0 {
		t.Errorf("%s while withdrawn: %d points, want none", certs.ExpiryMetric, len(points))
	}

	// New handshakes fail closed on both sides: as a server it has no
	// certificate to present, as a client none to send.
	if conn, err := tls.Dial("tcp", ordersAddr, aliceCfg); err == nil {
		_ = conn.Close()
		t.Error("a client completed a handshake with the withdrawn server")
	}
	seen := len(gatewaySaw())
	if conn, err := tls.Dial("tcp", gatewayAddr, ordersClientCfg); err == nil {
		_ = conn.SetDeadline(time.Now().Add(waitTimeout))
		_, err = conn.Write([]byte("ping")) // the client sends no certificate: the server refuses it
		if err == nil {
			_, err = conn.Read(make([]byte, 4))
		}
		_ = conn.Close()
		if err == nil {
			t.Error("the withdrawn client completed a round trip")
		}
	}
	if got := gatewaySaw(); len(got) != seen {
		t.Errorf("the server accepted client certificates %v after the withdrawal", got[seen:])
	}
	// A connection made before the withdrawal is not closed by the source.
	echo(t, before)

	// A re-issue that is not sound leaves the identity withdrawn.
	expired := ordersLeaf(t, pki, testpki.Expired)
	api.set(x509Response(t, expired, pki))
	logs.waitFor(t, msgRejectedWithout, 1)
	leaf := expired.Certificates[0]
	want = logLine(slog.LevelError, msgRejectedWithout, "source", addr,
		"error", "certs: SPIFFE Workload API at "+addr+": SVID expired at "+rfc3339(leaf.NotAfter)+
			" (valid from "+rfc3339(leaf.NotBefore)+" to "+rfc3339(leaf.NotAfter)+")")
	if got := logLines(logs, msgRejectedWithout); len(got) != 1 || got[0] != want {
		t.Errorf("log lines:\n got %q\nwant %q", got, want)
	}
	if src.Serving() {
		t.Error("Serving() = true after an unsound re-issue")
	}
	if _, err := src.GetX509SVID(); !errors.Is(err, certs.ErrWithdrawn) {
		t.Errorf("GetX509SVID after an unsound re-issue: %v, want ErrWithdrawn", err)
	}

	// The agent issues a sound SVID again: the source presents it.
	api.withdraw()
	second := pki.SVID(t, ordersID)
	api.set(x509Response(t, second, pki))
	waitServing(t, src, true)
	if got := serialOf(t, src); got != serial(second) {
		t.Errorf("after the re-issue the source serves %s, want %s", got, serial(second))
	}
	logs.waitFor(t, msgReissued, 1)
	if got := peerSerial(dialEcho(t, ordersAddr, aliceCfg)); got != serial(second) {
		t.Errorf("handshake after the re-issue presented %s, want %s", got, serial(second))
	}
	dialEcho(t, gatewayAddr, ordersClientCfg)
	if got := gatewaySaw(); got[len(got)-1] != serial(second) {
		t.Errorf("the server saw client serial %s last, want %s", got[len(got)-1], serial(second))
	}
	if points := collectExpiry(t, reader); len(points) != 1 {
		t.Errorf("%s after the re-issue: %d points, want 1", certs.ExpiryMetric, len(points))
	}
	if n := logs.count(msgWithdrawn); n != 1 {
		t.Errorf("log has %d of %q, want 1 (the retries while withdrawn are not errors)", n, msgWithdrawn)
	}

	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if src.Serving() {
		t.Error("Serving() = true after Close")
	}
}

// setSVID puts svid (certificates and key) into entry, with its ID.
func setSVID(t *testing.T, entry *workload.X509SVID, svid *x509svid.SVID) {
	t.Helper()
	var der []byte
	for _, c := range svid.Certificates {
		der = append(der, c.Raw...)
	}
	entry.SpiffeId = svid.ID.String()
	entry.X509Svid = der
	entry.X509SvidKey = pkcs8(t, svid)
}

func pkcs8(t *testing.T, svid *x509svid.SVID) []byte {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func peerSerial(conn *tls.Conn) string {
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// aliceClientConfig is a mesh client configuration for a person of pki's
// trust domain that expects the orders server.
func aliceClientConfig(t *testing.T, pki *testpki.PKI) *tls.Config {
	t.Helper()
	alice := mesh.Credentials{SVID: pki.SVID(t, "spiffe://shop.example/user/alice"), Bundles: pki.Bundle()}
	cfg, err := mesh.ClientTLSConfig(alice, tlsconfig.AuthorizeID(spiffeid.RequireFromString(ordersID)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitSerial waits until src serves the SVID with serial want.
func waitSerial(t *testing.T, src *certs.WorkloadSource, want string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for serialOf(t, src) != want {
		select {
		case <-src.Updated():
		case <-deadline:
			t.Fatalf("source still serves %s, want %s", serialOf(t, src), want)
		}
	}
}

// waitServing waits until src.Serving() is want, following ServingChanged.
func waitServing(t *testing.T, src *certs.WorkloadSource, want bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for src.Serving() != want {
		select {
		case <-src.ServingChanged():
		case <-deadline:
			t.Fatalf("Serving() is still %v", !want)
		}
	}
}

// logLine is the line slog's text handler writes for a record, without its
// time.
func logLine(level slog.Level, msg string, attrs ...any) string {
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	slog.New(h).Log(context.Background(), level, msg, attrs...)
	return strings.TrimSuffix(buf.String(), "\n")
}

// logLines returns the lines of logs whose message is msg, without their
// time, in order.
func logLines(logs *logBuffer, msg string) []string {
	var lines []string
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, `msg="`+msg+`"`) {
			continue
		}
		_, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ") // drop time=...
		lines = append(lines, rest)
	}
	return lines
}

// rejectedCounts reads the trustmesh.svid.rejected counter by reason.
func rejectedCounts(t *testing.T, reader *metricsdk.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != certs.RejectedMetric {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic {
				t.Fatalf("%s is a %T, want a monotonic int64 sum", m.Name, m.Data)
			}
			for _, p := range sum.DataPoints {
				reason, _ := p.Attributes.Value(attribute.Key("reason"))
				counts[reason.AsString()] += p.Value
			}
		}
	}
	return counts
}
