package gateway_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
)

// The storefront's callers in these tests.
const (
	aliceID = "spiffe://shop.example/user/alice"
	bobID   = "spiffe://shop.example/user/bob"
)

// serveAs serves h over HTTP/2 with TLS on loopback, behind the mesh's real
// identity middleware, and returns the server's URL and an HTTP client that
// presents an SVID for caller (so handlers see identity.FromContext as in
// the mesh; mTLS verification itself is tested in the mesh package).
func serveAs(t *testing.T, h http.Handler, caller string) (string, *http.Client) {
	t.Helper()
	pki := testpki.New(t, "shop.example")
	svid := pki.SVID(t, caller)
	hs := httptest.NewUnstartedServer(interceptors.HTTPIdentity(h))
	hs.EnableHTTP2 = true
	hs.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	client := hs.Client()
	cert := tls.Certificate{PrivateKey: svid.PrivateKey}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	return hs.URL, client
}
