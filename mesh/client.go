package mesh

import (
	"connectrpc.com/connect"
	"fmt"
	"github.com/trustmesh/trustmesh/interceptors"
	"net/http"
	"time"

	"crypto/x509"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
)

// ClientOption configures a client built by [DialGRPC] or [NewHTTPClient].
type ClientOption func(*clientConfig)

type clientConfig struct {
	dialOptions []grpc.DialOption
	telemetry   *Telemetry
}

// WithDialOptions appends grpc-go dial options (stats handlers, interceptors,
// ...) to a client built by [DialGRPC]. Options that replace the transport
// credentials must not be passed. By default there are none.
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(c *clientConfig) { c.dialOptions = append(c.dialOptions, opts...) }
}

// DialGRPC returns a grpc-go client connection to target (host:port) that
// presents the workload's SVID and accepts the server only if its SVID
// carries exactly the SPIFFE ID server. The connection is established lazily
// and shared by every call: make one per downstream and reuse it.
func DialGRPC(target string, creds Credentials, server spiffeid.ID, opts ...ClientOption) (*grpc.ClientConn, error) {
	if server.IsZero() {
		return nil, fmt.Errorf("mesh: dial %s: no expected server SPIFFE ID", target)
	}
	tlsCfg, err := ClientTLSConfig(creds, authorizeServer(server))
	if err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", target, err)
	}
	var cfg clientConfig
	for _, o := range opts {
		o(&cfg)
	}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(newTransportCredentials(tlsCfg, nil))}
	if cfg.telemetry != nil {
		self, err := creds.SVID.GetX509SVID()
		if err != nil {
			return nil, fmt.Errorf("mesh: dial %s: read own SVID: %w", target, err)
		}
		dopts = append(dopts, cfg.telemetry.grpcClientHandler(),
			grpc.WithChainUnaryInterceptor(interceptors.UnaryClientChain(self.ID)),
			grpc.WithChainStreamInterceptor(interceptors.StreamClientChain(self.ID)))
	}
	dopts = append(dopts, cfg.dialOptions...)
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", target, err)
	}
	return conn, nil
}

// ConnectClientOptions returns the connect-go client options that match
// opts: with [WithClientTelemetry], the caller-chain and otelconnect
// interceptors. Pass them to generated NewXClient constructors along with
// the client from [NewHTTPClient].
func ConnectClientOptions(creds Credentials, opts ...ClientOption) ([]connect.ClientOption, error) {
	var cfg clientConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.telemetry == nil {
		return nil, nil
	}
	self, err := creds.SVID.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("mesh: read own SVID: %w", err)
	}
	otelInt, err := cfg.telemetry.connectInterceptor()
	if err != nil {
		return nil, fmt.Errorf("mesh: telemetry: %w", err)
	}
	return []connect.ClientOption{connect.WithInterceptors(interceptors.ConnectClientChain(self.ID), otelInt)}, nil
}

// NewHTTPClient returns an HTTP/2 client for connect-go clients of a mesh
// server: it presents the workload's SVID and accepts the server only if its
// SVID carries exactly the SPIFFE ID server. It keeps one connection per
// server address and reuses it.
func NewHTTPClient(creds Credentials, server spiffeid.ID) (*http.Client, error) {
	if server.IsZero() {
		return nil, fmt.Errorf("mesh: http client: no expected server SPIFFE ID")
	}
	tlsCfg, err := ClientTLSConfig(creds, authorizeServer(server))
	if err != nil {
		return nil, fmt.Errorf("mesh: http client for %s: %w", server, err)
	}
	t := &http.Transport{
		TLSClientConfig:     tlsCfg,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
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
