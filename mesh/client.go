package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
)

// GRPCClientOption configures a client connection built by [DialGRPC].
// Options that only make sense on grpc-go ([WithDialOptions]) are
// GRPCClientOptions only, so passing one to [ConnectClientOptions] does not
// compile instead of being ignored.
type GRPCClientOption interface {
	applyToGRPCClient(*clientConfig)
}

// ConnectClientOption configures the connect-go client options built by
// [ConnectClientOptions].
type ConnectClientOption interface {
	applyToConnectClient(*clientConfig)
}

// ClientOption configures a client of either stack: it is both a
// [GRPCClientOption] and a [ConnectClientOption].
type ClientOption interface {
	GRPCClientOption
	ConnectClientOption
}

type clientOption func(*clientConfig)

func (o clientOption) applyToGRPCClient(c *clientConfig)    { o(c) }
func (o clientOption) applyToConnectClient(c *clientConfig) { o(c) }

// WithClientOptions composes options of both stacks into one, for a list
// built once and given to clients of either kind. By default it is empty.
func WithClientOptions(opts ...ClientOption) ClientOption {
	return clientOption(func(c *clientConfig) {
		for _, o := range opts {
			if o == nil {
				c.errs = append(c.errs, errors.New("mesh: WithClientOptions: nil option"))
				continue
			}
			o.applyToGRPCClient(c) // every ClientOption is a clientOption: the same function as applyToConnectClient
		}
	})
}

type grpcClientOption func(*clientConfig)

func (o grpcClientOption) applyToGRPCClient(c *clientConfig) { o(c) }

type clientConfig struct {
	dialOptions []grpc.DialOption
	telemetry   *Telemetry
	jwt         *jwtCredentials // WithJWTSVID (jwtsvid.go); nil: none
	errs        []error
}

func newGRPCClientConfig(opts []GRPCClientOption) (*clientConfig, error) {
	var c clientConfig
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("mesh: nil client option")
		}
		o.applyToGRPCClient(&c)
	}
	return &c, errors.Join(c.errs...)
}

func newConnectClientConfig(opts []ConnectClientOption) (*clientConfig, error) {
	var c clientConfig
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("mesh: nil client option")
		}
		o.applyToConnectClient(&c)
	}
	return &c, errors.Join(c.errs...)
}

// WithDialOptions adds grpc-go dial options (stats handlers, interceptors,
// keepalive, ...) to a client built by [DialGRPC]. They are applied before
// the mesh's own, so they can never replace its mTLS: a transport
// credentials or credentials bundle option among them makes DialGRPC fail.
// By default there are none.
func WithDialOptions(opts ...grpc.DialOption) GRPCClientOption {
	return grpcClientOption(func(c *clientConfig) { c.dialOptions = append(c.dialOptions, opts...) })
}

// DialGRPC returns a grpc-go client connection to target (host:port) that
// presents the workload's SVID and accepts the server only if its SVID
// carries exactly the SPIFFE ID server. The connection is established lazily
// and shared by every call: make one per downstream and reuse it. Calls made
// in the context of a served call forward its transaction token unchanged. It is
// closed, and redialled on the next call, when the server's certificate
// expires (see the package documentation).
func DialGRPC(target string, creds Credentials, server spiffeid.ID, opts ...GRPCClientOption) (*grpc.ClientConn, error) {
	if server.IsZero() {
		return nil, fmt.Errorf("mesh: dial %s: no expected server SPIFFE ID", target)
	}
	cfg, err := newGRPCClientConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", target, err)
	}
	if err := checkDialOptions(cfg.dialOptions); err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", target, err)
	}
	sv := &serverVerify{bundles: creds.Bundles, authorize: authorizeServer(server)}
	tlsCfg, err := ClientTLSConfig(creds, sv.authorize)
	if err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", target, err)
	}
	// The caller's options go first and the mesh's credentials last, so
	// that the mesh's mTLS is what the connection uses in any case.
	dopts := append(cfg.dialOptions[:len(cfg.dialOptions):len(cfg.dialOptions)],
		grpc.WithTransportCredentials(newClientCredentials(tlsCfg, sv)),
		// The transaction token of the call being served goes on, unchanged.
		grpc.WithChainUnaryInterceptor(interceptors.UnaryClientTxn()),
		grpc.WithChainStreamInterceptor(interceptors.StreamClientTxn()))
	if cfg.jwt != nil { // WithJWTSVID: a JWT-SVID on every call
		dopts = append(dopts, grpc.WithPerRPCCredentials(cfg.jwt))
	}
	if cfg.telemetry != nil {
		self, err := creds.SVID.GetX509SVID()
		if err != nil {
			return nil, fmt.Errorf("mesh: dial %s: read own SVID: %w", target, err)
		}
		in, err := cfg.telemetry.instrumentation(false)
		if err != nil {
			return nil, fmt.Errorf("mesh: dial %s: %w", target, err)
		}
		// The caller chain first (it changes the baggage), then the span,
		// which sends the trace context and baggage.
		dopts = append(dopts,
			grpc.WithChainUnaryInterceptor(interceptors.UnaryClientChain(self.ID), in.UnaryClientInterceptor()),
			grpc.WithChainStreamInterceptor(interceptors.StreamClientChain(self.ID), in.StreamClientInterceptor()))
	}
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", target, err)
	}
	return conn, nil
}

// errDialCreds says that WithDialOptions tried to set the credentials.
var errDialCreds = errors.New("WithDialOptions: transport credentials are the mesh's mTLS; remove grpc.WithTransportCredentials / grpc.WithCredentialsBundle (or grpc.WithInsecure) from the dial options")

// checkDialOptions fails when opts set transport credentials (a credentials
// bundle, insecure credentials, ...). grpc-go offers no way to inspect a
// DialOption, so it builds an idle probe client with marker credentials
// followed by opts: the marker is asked for its Info only when no option
// replaced it.
func checkDialOptions(opts []grpc.DialOption) error {
	if len(opts) == 0 {
		return nil
	}
	marker := &markerCredentials{}
	probe, err := grpc.NewClient("passthrough:///trustmesh-dial-option-check",
		append([]grpc.DialOption{grpc.WithTransportCredentials(marker)}, opts...)...)
	if err != nil {
		return fmt.Errorf("WithDialOptions: %w", err)
	}
	_ = probe.Close()
	if !marker.asked {
		return errDialCreds
	}
	return nil
}

// markerCredentials are never used for a connection: they only record
// whether grpc-go consulted them (a client for their Info, a server to
// handshake).
type markerCredentials struct {
	asked     bool
	handshake chan struct{} // closed at the first ServerHandshake, if not nil
	once      sync.Once
}

func (m *markerCredentials) Info() credentials.ProtocolInfo {
	m.asked = true
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (*markerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("mesh: probe credentials do not connect")
}

func (m *markerCredentials) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if m.handshake != nil {
		m.once.Do(func() { close(m.handshake) })
	}
	return nil, nil, errors.New("mesh: probe credentials do not connect")
}

func (m *markerCredentials) Clone() credentials.TransportCredentials { return m }

func (*markerCredentials) OverrideServerName(string) error { return nil }

// ConnectClientOptions returns the connect-go client options that match
// opts: the transaction token of the call being served (see
// interceptors.WithTransactionTokens) is forwarded unchanged on every call
// made in its context, the client asks for no compression (connect-go's clients accept
// gzip by default, which makes servers compress every large response; add
// connect.WithAcceptCompression or connect.WithSendGzip after these options
// where it pays) and, with [WithClientTelemetry], the caller-chain and
// tracing interceptors. Pass them to generated NewXClient constructors
// along with the client from [NewHTTPClient].
func ConnectClientOptions(creds Credentials, opts ...ConnectClientOption) ([]connect.ClientOption, error) {
	cfg, err := newConnectClientConfig(opts)
	if err != nil {
		return nil, err
	}
	own := []connect.ClientOption{
		connect.WithAcceptCompression("gzip", nil, nil),
		connect.WithInterceptors(interceptors.ConnectClientTxn()), // the served call's transaction token goes on
	}
	if cfg.jwt != nil { // WithJWTSVID: a JWT-SVID on every call
		own = append(own, connect.WithInterceptors(cfg.jwt.connectInterceptor()))
	}
	if cfg.telemetry == nil {
		return own, nil
	}
	self, err := creds.SVID.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("mesh: read own SVID: %w", err)
	}
	in, err := cfg.telemetry.instrumentation(false)
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	return append(own, connect.WithInterceptors(interceptors.ConnectClientChain(self.ID), in.ConnectInterceptor())), nil
}

// NewHTTPClient returns an HTTP/2 client for connect-go clients of a mesh
// server: it presents the workload's SVID and accepts the server only if its
// SVID carries exactly the SPIFFE ID server. It keeps one connection per
// server address and reuses it, and closes a connection when the server's
// certificate expires (the next call dials again).
func NewHTTPClient(creds Credentials, server spiffeid.ID) (*http.Client, error) {
	if server.IsZero() {
		return nil, fmt.Errorf("mesh: http client: no expected server SPIFFE ID")
	}
	sv := &serverVerify{bundles: creds.Bundles, authorize: authorizeServer(server)}
	tlsCfg, err := ClientTLSConfig(creds, sv.authorize)
	if err != nil {
		return nil, fmt.Errorf("mesh: http client for %s: %w", server, err)
	}
	tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		ForceAttemptHTTP2: true,
		IdleConnTimeout:   90 * time.Second,
		// The TLS handshake is done here rather than by the transport, so
		// that each connection is closed when the server's certificate
		// expires (the transport then dials again for the next call).
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			tc := tls.Client(raw, tlsCfg)
			if err := tc.HandshakeContext(hctx); err != nil {
				_ = raw.Close()
				return nil, err
			}
			_, chains, err := verifyChain(tc.ConnectionState().PeerCertificates, sv.bundles, identity.Server, sv.authorize)
			if err != nil { // VerifyConnection passed a moment ago: only a concurrent bundle change gets here
				_ = tc.Close()
				return nil, err
			}
			time.AfterFunc(time.Until(chainsExpiry(chains)), func() { _ = tc.Close() })
			return tc, nil
		},
	}
	return &http.Client{Transport: t}, nil
}

// authorizeServer accepts exactly the SPIFFE ID want, and says both IDs when
// it refuses.
func authorizeServer(want spiffeid.ID) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if id != want {
			return fmt.Errorf("want %q", want)
		}
		return nil
	}
}
