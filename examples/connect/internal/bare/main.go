// Command bare is the connect example written with connect-go and go-spiffe
// alone, without trustmesh: the same in-memory CA, server (mutual TLS,
// authorization by SPIFFE ID per procedure, health and reflection) and
// calls, printing the same lines. It exists to compare binary sizes (see
// BENCHMARKS.md); it is not linked into the example. What it lacks next to
// trustmesh: X.509-SVID checks beyond go-spiffe's, a policy file, at: rules,
// dry-run, audit events, coverage checks, rate limits, connections that end
// with their certificates, and telemetry.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	quotesv1 "github.com/trustmesh/trustmesh/examples/connect/gen/quotes/v1"
	"github.com/trustmesh/trustmesh/examples/connect/gen/quotes/v1/quotesv1connect"
)

var (
	td        = spiffeid.RequireTrustDomainFromString("example.org")
	primaryID = spiffeid.RequireFromString("spiffe://example.org/ns/quotes/sa/primary")
	aliceID   = spiffeid.RequireFromString("spiffe://example.org/user/alice")
)

// allowed says who may call each procedure on the primary.
var allowed = map[string]func(spiffeid.ID) bool{
	quotesv1connect.QuoteServiceGetQuoteProcedure:                    func(id spiffeid.ID) bool { return id.Path() == "/ns/web/sa/frontend" },
	quotesv1connect.QuoteServiceAddQuoteProcedure:                    segments("/user/", 1),
	"/grpc.health.v1.Health/Check":                                   segments("/ns/ops/", -1),
	"/grpc.health.v1.Health/Watch":                                   segments("/ns/ops/", -1),
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      segments("/ns/ops/", -1),
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": segments("/ns/ops/", -1),
}

// segments matches IDs of td whose path is prefix and then n segments (n < 0:
// one or more).
func segments(prefix string, n int) func(spiffeid.ID) bool {
	return func(id spiffeid.ID) bool {
		rest, ok := strings.CutPrefix(id.Path(), prefix)
		return ok && id.MemberOf(td) && rest != "" && (n < 0 || strings.Count(rest, "/") == n-1)
	}
}

// authorize refuses a request whose caller may not call its procedure.
func authorize(next http.Handler) http.Handler {
	errw := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id spiffeid.ID
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			id, _ = x509svid.IDFromCert(r.TLS.PeerCertificates[0])
		}
		if allow, ok := allowed[r.URL.Path]; !ok || id.IsZero() || !allow(id) {
			_ = errw.Write(w, r, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s may not call %s", id, r.URL.Path)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func serve(ctx context.Context, svid *x509svid.SVID, bundle *x509bundle.Bundle, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle(quotesv1connect.NewQuoteServiceHandler(&quoteService{}))
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(quotesv1connect.QuoteServiceName)))
	reflector := grpcreflect.NewStaticReflector(quotesv1connect.QuoteServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	cfg := tlsconfig.MTLSServerConfig(svid, bundle, tlsconfig.AuthorizeMemberOf(td))
	cfg.MinVersion = tls.VersionTLS13
	srv := &http.Server{Handler: authorize(mux), TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func newClient(svid *x509svid.SVID, bundle *x509bundle.Bundle, addr string, opts ...connect.ClientOption) (quotesv1connect.QuoteServiceClient, *http.Client) {
	cfg := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(primaryID))
	cfg.MinVersion = tls.VersionTLS13
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	return quotesv1connect.NewQuoteServiceClient(hc, "https://"+addr, opts...), hc
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	root, rootKey, err := issue(td.ID(), nil, nil)
	if err != nil {
		return err
	}
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{root})
	serverSVID, err := svid(primaryID, root, rootKey)
	if err != nil {
		return err
	}
	aliceSVID, err := svid(aliceID, root, rootKey)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(ctx, serverSVID, bundle, ln) }()
	for _, p := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"Connect", nil},
		{"gRPC", []connect.ClientOption{connect.WithGRPC()}},
		{"gRPC-Web", []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		client, hc := newClient(aliceSVID, bundle, ln.Addr().String(), p.opts...)
		if added, err := client.AddQuote(ctx, connect.NewRequest(&quotesv1.AddQuoteRequest{Text: "Clear is better than clever."})); err != nil {
			fmt.Fprintf(w, "%s: AddQuote: %v\n", p.name, err)
		} else {
			fmt.Fprintf(w, "%s: AddQuote: count=%d\n", p.name, added.Msg.GetCount())
		}
		_, err = client.GetQuote(ctx, connect.NewRequest(&quotesv1.GetQuoteRequest{}))
		fmt.Fprintf(w, "%s: GetQuote: %v\n", p.name, err)
		hc.CloseIdleConnections()
	}
	cancel()
	return <-served
}

// issue makes a certificate for id with a fresh P-256 key: a self-signed CA
// when parent is nil, else an X.509-SVID signed by parent.
func issue(id spiffeid.ID, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		URIs:         []*url.URL{id.URL()},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	signer := key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage, tmpl.ExtKeyUsage = x509.KeyUsageCertSign, nil
		parent = tmpl
	} else {
		signer = parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func svid(id spiffeid.ID, root *x509.Certificate, rootKey *ecdsa.PrivateKey) (*x509svid.SVID, error) {
	cert, key, err := issue(id, root, rootKey)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil
}

// quoteService is the example's quote service, unchanged.
type quoteService struct {
	mu    sync.Mutex
	texts []string
}

func (s *quoteService) GetQuote(_ context.Context, req *connect.Request[quotesv1.GetQuoteRequest]) (*connect.Response[quotesv1.GetQuoteResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.texts) == 0 {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no quotes yet"))
	}
	text := s.texts[int(req.Msg.GetIndex())%len(s.texts)]
	return connect.NewResponse(&quotesv1.GetQuoteResponse{Text: text}), nil
}

func (s *quoteService) AddQuote(_ context.Context, req *connect.Request[quotesv1.AddQuoteRequest]) (*connect.Response[quotesv1.AddQuoteResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(req.Msg.GetText()) > 200 || len(s.texts) == 100 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("at most 100 quotes of at most 200 bytes"))
	}
	s.texts = append(s.texts, req.Msg.GetText())
	return connect.NewResponse(&quotesv1.AddQuoteResponse{Count: uint32(len(s.texts))}), nil
}
