package interceptors_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/txn"
)

// swappable is an SVID source whose SVID a test replaces.
type swappable struct{ p atomic.Pointer[x509svid.SVID] }

func (s *swappable) GetX509SVID() (*x509svid.SVID, error) { return s.p.Load(), nil }

// TestMintFailureIsUnavailable: when the edge cannot mint (its SVID has
// expired), the call is refused as Unavailable with a generic message; the
// cause is the server's, and goes to its log, not to the caller.
func TestMintFailureIsUnavailable(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "example.org")
	src := &swappable{}
	src.p.Store(pki.SVID(t, "spiffe://example.org/ns/app/sa/edge"))
	minter, err := txn.NewMinter(src, pki.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	src.p.Store(pki.SVID(t, "spiffe://example.org/ns/app/sa/edge", testpki.WithNow(time.Now().Add(-48*time.Hour))))
	e, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "users", Effect: policy.Allow, From: []string{"spiffe://example.org/user/*"}, To: []string{"/app.v1.Svc/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := interceptors.NewAuthorizer(e, interceptors.WithTxnMinter(minter))
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.TapHandle()(callerContext(spiffeid.RequireFromString("spiffe://example.org/user/alice").String()), &tap.Info{FullMethodName: "/app.v1.Svc/Do"})
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "transaction token unavailable" {
		t.Errorf("mint failure: %v, want Unavailable transaction token unavailable", err)
	}
}
