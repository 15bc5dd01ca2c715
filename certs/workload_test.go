package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

// workloadAPI is a SPIFFE Workload API server, as a SPIRE agent serves it:
// FetchX509SVID streams the current response to every caller and each
// later one as it is set, whatever it holds; without one (before the first
// set, and after withdraw) it answers PermissionDenied, as SPIRE does when
// no registration entry matches the caller. FetchJWTBundles streams the
// JWT bundles likewise once setJWTBundles gave some (and waits until then);
// FetchJWTSVID answers with what setJWTMinter's function makes of each
// request (PermissionDenied without one, and while withdrawn).
type workloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	mu   sync.Mutex
	resp *workload.X509SVIDResponse
	subs map[chan *workload.X509SVIDResponse]struct{}

	jwtBundles *workload.JWTBundlesResponse
	jwtSubs    map[chan *workload.JWTBundlesResponse]struct{}
	mintJWT    func(*workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error)
	noJWT      bool // answer the JWT calls Unimplemented, as an X.509-only Workload API
}

// startWorkloadAPI serves a workloadAPI on a Unix socket in a temporary
// directory and returns it with the socket's address (unix:///path).
func startWorkloadAPI(t *testing.T) (*workloadAPI, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	api := &workloadAPI{subs: map[chan *workload.X509SVIDResponse]struct{}{}, jwtSubs: map[chan *workload.JWTBundlesResponse]struct{}{}}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, api)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return api, "unix://" + path
}

// withdraw drops the current response, as SPIRE does when the workload's
// registration entry is deleted: every open stream ends with
// PermissionDenied, and so do new ones until the next set.
func (w *workloadAPI) withdraw() { w.set(nil) }

// set makes resp the current response and pushes it to every stream; a nil
// resp ends them with PermissionDenied.
func (w *workloadAPI) set(resp *workload.X509SVIDResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resp = resp
	for ch := range w.subs {
		select {
		case <-ch: // drop a response not sent yet: only the newest counts
		default:
		}
		ch <- resp
	}
}

func (w *workloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	// Like SPIRE: only callers that send the security header, which a
	// browser or a proxy tricked into calling the socket would not.
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	ch := make(chan *workload.X509SVIDResponse, 1)
	w.mu.Lock()
	ch <- w.resp
	w.subs[ch] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}()
	for {
		select {
		case resp := <-ch:
			if resp == nil {
				// What SPIRE answers a workload that no registration entry matches.
				return status.Error(codes.PermissionDenied, "no identity issued")
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// setJWTBundles makes resp the current JWT bundles and pushes it to every
// FetchJWTBundles stream.
func (w *workloadAPI) setJWTBundles(resp *workload.JWTBundlesResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.jwtBundles = resp
	for ch := range w.jwtSubs {
		select {
		case <-ch:
		default:
		}
		ch <- resp
	}
}

// setJWTMinter sets what FetchJWTSVID answers.
func (w *workloadAPI) setJWTMinter(mint func(*workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mintJWT = mint
}

// checkHeader refuses a call without the Workload API's security header.
func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

func (w *workloadAPI) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream workload.SpiffeWorkloadAPI_FetchJWTBundlesServer) error {
	if err := checkHeader(stream.Context()); err != nil {
		return err
	}
	ch := make(chan *workload.JWTBundlesResponse, 1)
	w.mu.Lock()
	if w.noJWT {
		w.mu.Unlock()
		return status.Error(codes.Unimplemented, "method FetchJWTBundles not implemented")
	}
	if w.jwtBundles != nil {
		ch <- w.jwtBundles
	}
	w.jwtSubs[ch] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.jwtSubs, ch)
		w.mu.Unlock()
	}()
	for {
		select {
		case resp := <-ch:
			if err := stream.Send(resp); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (w *workloadAPI) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	w.mu.Lock()
	mint, withdrawn, noJWT := w.mintJWT, w.resp == nil, w.noJWT
	w.mu.Unlock()
	switch {
	case noJWT:
		return nil, status.Error(codes.Unimplemented, "method FetchJWTSVID not implemented")
	case mint == nil || withdrawn:
		return nil, status.Error(codes.PermissionDenied, "no identity issued")
	}
	return mint(req)
}

// x509Response is the Workload API message for svid, its trust domain's
// bundle and any federated bundles.
func x509Response(t *testing.T, svid *x509svid.SVID, bundle *testpki.PKI, federated ...*testpki.PKI) *workload.X509SVIDResponse {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	concat := func(certs []*x509.Certificate) []byte {
		var raw []byte
		for _, c := range certs {
			raw = append(raw, c.Raw...)
		}
		return raw
	}
	resp := &workload.X509SVIDResponse{
		Svids: []*workload.X509SVID{{
			SpiffeId:    svid.ID.String(),
			X509Svid:    concat(svid.Certificates),
			X509SvidKey: key,
			Bundle:      concat(bundle.Bundle().X509Authorities()),
		}},
		FederatedBundles: map[string][]byte{},
	}
	for _, f := range federated {
		resp.FederatedBundles[f.TrustDomain().IDString()] = concat(f.Bundle().X509Authorities())
	}
	return resp
}

func TestWorkloadSource(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	partnerPKI := testpki.New(t, "partner.example")
	api, addr := startWorkloadAPI(t)
	first := pki.SVID(t, ordersID)
	api.set(x509Response(t, first, pki, partnerPKI))

	log, logs := newLog()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	src, err := certs.NewWorkloadSource(ctx, addr, log, certs.WithSVIDID(spiffeid.RequireFromString(ordersID)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	if got := serialOf(t, src); got != serial(first) {
		t.Fatalf("serial = %s, want %s", got, serial(first))
	}
	if _, err := src.GetX509BundleForTrustDomain(partner); err != nil {
		t.Errorf("federated bundle: %v", err)
	}

	// A mesh server presenting the source's SVID, over real TLS.
	serverCfg, err := mesh.ServerTLSConfig(mesh.Credentials{SVID: src, Bundles: src}, mesh.AuthorizeMembers(shop))
	if err != nil {
		t.Fatal(err)
	}
	addrTLS, _ := echoServer(t, serverCfg)
	client := mesh.Credentials{SVID: pki.SVID(t, "spiffe://shop.example/user/alice"), Bundles: pki.Bundle()}
	clientCfg, err := mesh.ClientTLSConfig(client, tlsconfig.AuthorizeID(spiffeid.RequireFromString(ordersID)))
	if err != nil {
		t.Fatal(err)
	}
	before := dialEcho(t, addrTLS, clientCfg)
	if got := before.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); got != serial(first) {
		t.Fatalf("handshake before rotation presented serial %s, want %s", got, serial(first))
	}

	// The agent rotates the SVID.
	second := pki.SVID(t, ordersID)
	api.set(x509Response(t, second, pki, partnerPKI))
	deadline := time.After(waitTimeout)
	for serialOf(t, src) != serial(second) {
		select {
		case <-src.Updated():
		case <-deadline:
			t.Fatalf("source still serves %s, want the rotated %s", serialOf(t, src), serial(second))
		}
	}
	logs.waitFor(t, "certs: rotated SVID from the Workload API", 1)

	after := dialEcho(t, addrTLS, clientCfg)
	if got := after.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); got != serial(second) {
		t.Errorf("handshake after rotation presented serial %s, want %s", got, serial(second))
	}
	// The connection made before the rotation still works.
	echo(t, before)

	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := src.GetX509SVID(); !errors.Is(err, certs.ErrClosed) {
		t.Errorf("GetX509SVID after Close: %v", err)
	}
}

// TestWorkloadAPIHeader checks that the test server enforces the security
// header, as SPIRE does, so the source is known to send it.
func TestWorkloadAPIHeader(t *testing.T) {
	t.Parallel()
	_, addr := startWorkloadAPI(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("call without the header: %v, want InvalidArgument", err)
	}
}

func TestNewWorkloadSourceErrors(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")

	t.Run("socket-missing", func(t *testing.T) {
		t.Parallel()
		addr := "unix://" + filepath.Join(t.TempDir(), "agent.sock")
		_, err := certs.NewWorkloadSource(context.Background(), addr, nil, certs.WithStartTimeout(300*time.Millisecond))
		want := "certs: SPIFFE Workload API at " + addr + ": no SVID after 300ms: is the agent running and is there a registration entry for this workload?"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("error:\n got %v\nwant %s ...", err, want)
		}
		if !strings.Contains(err.Error(), "(last error: ") || !strings.Contains(err.Error(), "no such file or directory") {
			t.Errorf("error does not say why: %v", err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
		t.Log(err)
	})

	t.Run("bare-path", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "agent.sock")
		_, err := certs.NewWorkloadSource(context.Background(), path, nil, certs.WithStartTimeout(50*time.Millisecond))
		if want := "certs: SPIFFE Workload API at unix://" + path + ": no SVID after 50ms"; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error:\n got %v\nwant %s ...", err, want)
		}
	})

	t.Run("no-entry", func(t *testing.T) {
		t.Parallel()
		_, addr := startWorkloadAPI(t) // serves nothing: no registration entry
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := certs.NewWorkloadSource(ctx, addr, nil)
		want := "certs: SPIFFE Workload API at " + addr + ": no SVID after "
		if err == nil || !strings.HasPrefix(err.Error(), want) ||
			!strings.Contains(err.Error(), " (context deadline exceeded): is the agent running and is there a registration entry for this workload?") ||
			!strings.HasSuffix(err.Error(), "(last error: rpc error: code = PermissionDenied desc = no identity issued)") {
			t.Errorf("error:\n got %v\nwant %s... (context deadline exceeded): ... (last error: ... no identity issued)", err, want)
		}
		t.Log(err)
	})

	t.Run("other-id", func(t *testing.T) {
		t.Parallel()
		api, addr := startWorkloadAPI(t)
		api.set(x509Response(t, pki.SVID(t, "spiffe://shop.example/ns/shop/sa/gateway"), pki))
		_, err := certs.NewWorkloadSource(context.Background(), addr, nil, certs.WithSVIDID(spiffeid.RequireFromString(ordersID)))
		if want := "certs: SPIFFE Workload API at " + addr + ": no SVID with ID " + ordersID + " among those offered"; err == nil || err.Error() != want {
			t.Errorf("error:\n got %v\nwant %s", err, want)
		}
	})

	t.Run("bad-address", func(t *testing.T) {
		t.Parallel()
		_, err := certs.NewWorkloadSource(context.Background(), "http://agent", nil)
		if want := `certs: SPIFFE Workload API at http://agent: workload endpoint socket URI must have a "tcp" or "unix" scheme`; err == nil || err.Error() != want {
			t.Errorf("error:\n got %v\nwant %s", err, want)
		}
		_, err = certs.NewWorkloadSource(context.Background(), "", nil)
		if want := "certs: SPIFFE Workload API: no socket address (set SPIFFE_ENDPOINT_SOCKET, e.g. unix:///run/spire/sockets/agent.sock)"; err == nil || err.Error() != want {
			t.Errorf("error:\n got %v\nwant %s", err, want)
		}
	})
}

// echoServer serves TLS connections with cfg on loopback, echoing what it
// reads, until the test ends. It returns the address and a func that lists
// the serial numbers of the client certificates it accepted, in order.
func echoServer(t *testing.T, cfg *tls.Config) (string, func() []string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	var serials []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc := conn.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				mu.Lock()
				serials = append(serials, tc.ConnectionState().PeerCertificates[0].SerialNumber.Text(16))
				mu.Unlock()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(serials)
	}
}

// dialEcho connects to an echoServer and checks one round trip, which
// completes both sides' verification.
func dialEcho(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	echo(t, conn)
	return conn
}

func echo(t *testing.T, conn *tls.Conn) {
	t.Helper()
	if err := conn.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

// TestFileSourceHandshakes rotates both sides' SVIDs while a client keeps
// opening connections (bounded): every handshake succeeds, each side sees
// the other's new serial once the swap is made, and a connection opened
// before the rotation keeps working.
func TestFileSourceHandshakes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := devInit(dir, certs.InitOptions{Intermediate: true}); err != nil {
		t.Fatal(err)
	}
	source := func(name string) *certs.FileSource {
		return newFileSource(t, certs.FileSourceConfig{
			CertFile:   filepath.Join(dir, name+".pem"),
			KeyFile:    filepath.Join(dir, name+"-key.pem"),
			BundleFile: filepath.Join(dir, "bundle.pem"),
			Debounce:   20 * time.Millisecond,
		})
	}
	server, client := source("orders"), source("gateway")
	serverCfg, err := mesh.ServerTLSConfig(mesh.Credentials{SVID: server, Bundles: server}, mesh.AuthorizeMembers(shop))
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := mesh.ClientTLSConfig(mesh.Credentials{SVID: client, Bundles: client}, tlsconfig.AuthorizeID(spiffeid.RequireFromString(ordersID)))
	if err != nil {
		t.Fatal(err)
	}
	addr, clientSerials := echoServer(t, serverCfg)
	handshake := func() (serverSerial string, conn *tls.Conn) {
		conn = dialEcho(t, addr, clientCfg)
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), conn
	}
	oldServer, before := handshake()

	rotated, err := certs.Rotate(dir, []string{"orders", "gateway"}, certs.RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	newServer, newClient := rotated[0].Serial, rotated[1].Serial
	deadline := time.Now().Add(waitTimeout)
	for i := 0; ; i++ {
		got, conn := handshake()
		if got != oldServer && got != newServer {
			t.Fatalf("handshake %d: server serial %s is neither the old nor the new one", i, got)
		}
		_ = conn.Close()
		if got == newServer && serialOf(t, client) == newClient {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d handshakes: server serial %s, client serial %s; want %s, %s", i+1, got, serialOf(t, client), newServer, newClient)
		}
		select {
		case <-client.Updated():
		case <-server.Updated():
		case <-time.After(10 * time.Millisecond): // keep handshaking while waiting
		}
	}
	// The client now presents its new SVID too, and the server accepts it.
	handshake()
	if seen := clientSerials(); seen[len(seen)-1] != newClient {
		t.Errorf("server saw client serial %s last, want the new %s", seen[len(seen)-1], newClient)
	}
	echo(t, before)
}
