// Command connect runs a connect-go service of its own proto behind
// trustmesh and calls it over Connect, gRPC and gRPC-Web: mutual TLS with
// SPIFFE IDs, and every call authorized by policy.yaml, whose rules may
// apply only on some servers (at:). `go run .` prints the calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/certs"
	quotesv1 "github.com/trustmesh/trustmesh/examples/connect/gen/quotes/v1"
	"github.com/trustmesh/trustmesh/examples/connect/gen/quotes/v1/quotesv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
)

var (
	primaryID = spiffeid.RequireFromString("spiffe://example.org/ns/quotes/sa/primary")
	aliceID   = spiffeid.RequireFromString("spiffe://example.org/user/alice")
)

// serve runs the quote service on ln until ctx ends. self is the server's
// own SPIFFE ID, which decides the rules that apply here (at:).
func serve(ctx context.Context, creds mesh.Credentials, self spiffeid.ID, policyFile string, ln net.Listener, log *slog.Logger) error {
	file, err := policy.LoadFile(policyFile)
	if err != nil {
		return err
	}
	rules, err := policy.Compile(file, policy.ForServer(self))
	if err != nil {
		return err
	}
	authz, err := interceptors.NewAuthorizer(rules, interceptors.WithAuditLogger(log))
	if err != nil {
		return err
	}
	srv, err := mesh.NewConnectServer(creds, mesh.WithAuthorizer(authz), mesh.WithLogger(log))
	if err != nil {
		return err
	}
	if err := mesh.Mount(srv, quotesv1connect.NewQuoteServiceHandler, &quoteService{}); err != nil {
		return err
	}
	// Serve first checks that an allow rule covers every method it serves.
	return srv.Serve(ctx, ln)
}

// newClient returns a client of the quote service at addr that accepts only
// a server whose SVID carries server. It speaks Connect, unless opts say
// connect.WithGRPC() or connect.WithGRPCWeb(). Close idle connections of
// the returned *http.Client when done.
func newClient(creds mesh.Credentials, addr string, server spiffeid.ID, opts ...connect.ClientOption) (quotesv1connect.QuoteServiceClient, *http.Client, error) {
	hc, err := mesh.NewHTTPClient(creds, server)
	if err != nil {
		return nil, nil, err
	}
	return quotesv1connect.NewQuoteServiceClient(hc, "https://"+addr, opts...), hc, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
}

// run serves the primary on 127.0.0.1 with policy.yaml and calls it as alice
// over each protocol.
func run(ctx context.Context, w io.Writer, log *slog.Logger) error {
	// A development CA in memory. In production the SVIDs and bundles come
	// from the SPIFFE Workload API: certs.NewWorkloadSource.
	ca, err := certs.NewCA(primaryID.TrustDomain())
	if err != nil {
		return err
	}
	serverSVID, err := ca.Issue(certs.IssueRequest{ID: primaryID})
	if err != nil {
		return err
	}
	aliceSVID, err := ca.Issue(certs.IssueRequest{ID: aliceID})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, mesh.Credentials{SVID: serverSVID, Bundles: ca.Bundle()}, primaryID, "policy.yaml", ln, log)
	}()
	err = call(ctx, ln.Addr().String(), mesh.Credentials{SVID: aliceSVID, Bundles: ca.Bundle()}, w)
	cancel()
	return errors.Join(err, <-served)
}

// call adds a quote and tries to read one as alice, over each protocol.
func call(ctx context.Context, addr string, creds mesh.Credentials, w io.Writer) error {
	protocols := []struct {
		name string
		opts []connect.ClientOption
	}{
		{"Connect", nil},
		{"gRPC", []connect.ClientOption{connect.WithGRPC()}},
		{"gRPC-Web", []connect.ClientOption{connect.WithGRPCWeb()}},
	}
	for _, p := range protocols {
		client, hc, err := newClient(creds, addr, primaryID, p.opts...)
		if err != nil {
			return err
		}
		if added, err := client.AddQuote(ctx, connect.NewRequest(&quotesv1.AddQuoteRequest{Text: "Clear is better than clever."})); err != nil {
			fmt.Fprintf(w, "%s: AddQuote: %v\n", p.name, err)
		} else {
			fmt.Fprintf(w, "%s: AddQuote: count=%d\n", p.name, added.Msg.GetCount())
		}
		_, err = client.GetQuote(ctx, connect.NewRequest(&quotesv1.GetQuoteRequest{}))
		fmt.Fprintf(w, "%s: GetQuote: %v\n", p.name, err)
		hc.CloseIdleConnections()
	}
	return nil
}

// quoteService implements quotes.v1.QuoteService: a collection in memory.
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
