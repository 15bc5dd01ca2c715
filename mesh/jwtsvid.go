package mesh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/interceptors"
)

// JWTSource fetches JWT-SVIDs of the workload for an audience:
// certs.WorkloadSource (from the SPIFFE Workload API) and the development
// CA's certs.DevJWTSource are sources.
type JWTSource interface {
	FetchJWTSVID(ctx context.Context, audience string) (*identity.JWTSVID, error)
}

// frontProxyConfig is what [WithFrontProxies] was given.
type frontProxyConfig struct {
	bundles identity.BundleSource
	ids     []spiffeid.ID
}

// WithFrontProxies names the mTLS peers that are front proxies (an L7 load
// balancer that terminates its callers' TLS and presents its own SVID): on
// a connection from one of them, the server takes the caller of each call
// from the JWT-SVID it carries (authorization: Bearer), verified against
// bundles (a certs.WorkloadSource, or a development CA's bundle) for the
// server's own SPIFFE ID as audience, and the policy decides on the
// JWT-SVID's subject; a call through a proxy without a valid JWT-SVID is
// refused with Unauthenticated. On a connection from any other peer a
// JWT-SVID changes nothing. See [interceptors.WithFrontProxies]. It needs
// [WithAuthorizer]. By default there are no front proxies.
func WithFrontProxies(bundles identity.BundleSource, proxies ...spiffeid.ID) ServerOption {
	return serverOption(func(c *serverConfig) {
		if bundles == nil || len(proxies) == 0 {
			c.errs = append(c.errs, errors.New("mesh: WithFrontProxies: need the JWT bundles and at least one front proxy SPIFFE ID"))
			return
		}
		c.frontProxies = &frontProxyConfig{bundles: bundles, ids: proxies}
	})
}

// withFrontProxies returns a with the front proxies of the configuration,
// for the audience of the server's SVID; a itself without any.
func (c *serverConfig) withFrontProxies(a *interceptors.Authorizer, creds Credentials) (*interceptors.Authorizer, error) {
	if c.frontProxies == nil {
		return a, nil
	}
	if a == nil {
		return nil, errors.New("mesh: WithFrontProxies needs WithAuthorizer: without authorization no caller is decided on")
	}
	if creds.SVID == nil {
		return nil, errors.New("mesh: WithFrontProxies: no SVID source in the credentials")
	}
	self, err := creds.SVID.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("mesh: WithFrontProxies: read own SVID for the audience: %w", err)
	}
	a, err = a.WithFrontProxies(interceptors.FrontProxies{IDs: c.frontProxies.ids, Bundles: c.frontProxies.bundles, Audience: self.ID})
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	return a, nil
}

// WithJWTSVID makes a client send a JWT-SVID with every call
// ("authorization: Bearer TOKEN", JWT-SVID 5.2 and 5.3), fetched from src
// for audience (required: the SPIFFE ID of the server behind the front
// proxy that the call crosses, as that server's [WithFrontProxies]
// expects). A token is reused until half its lifetime has passed, then
// fetched again; a call for which no token can be had fails
// (Unauthenticated, as grpc-go fails a call whose per-RPC credentials
// fail) rather than go without. By default a client sends no JWT-SVID.
func WithJWTSVID(src JWTSource, audience string) ClientOption {
	return clientOption(func(c *clientConfig) {
		if src == nil || audience == "" {
			c.errs = append(c.errs, errors.New("mesh: WithJWTSVID: need a JWT-SVID source and the audience"))
			return
		}
		c.jwt = &jwtCredentials{src: src, audience: audience}
	})
}

// jwtCredentials attaches a JWT-SVID to calls: a grpc-go PerRPCCredentials
// and, through connectInterceptor, a connect-go interceptor.
type jwtCredentials struct {
	src      JWTSource
	audience string

	mu      sync.Mutex
	cur     string
	renewAt time.Time
}

// token returns the current JWT-SVID, fetching a new one when it is past
// half its lifetime.
func (j *jwtCredentials) token(ctx context.Context) (string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := time.Now()
	if j.cur != "" && now.Before(j.renewAt) {
		return j.cur, nil
	}
	svid, err := j.src.FetchJWTSVID(ctx, j.audience)
	if err != nil {
		return "", fmt.Errorf("mesh: JWT-SVID for %q: %w", j.audience, err)
	}
	if !now.Before(svid.Expiry) {
		return "", fmt.Errorf("mesh: JWT-SVID for %q: the source gave one that expired at %s", j.audience, svid.Expiry.UTC().Format(time.RFC3339))
	}
	issued := svid.IssuedAt
	if issued.IsZero() || issued.After(now) {
		issued = now
	}
	j.cur, j.renewAt = svid.Marshal(), issued.Add(svid.Expiry.Sub(issued)/2)
	return j.cur, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (j *jwtCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := j.token(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a
// bearer token goes over TLS only.
func (*jwtCredentials) RequireTransportSecurity() bool { return true }

// connectInterceptor adds the JWT-SVID to each connect-go call.
func (j *jwtCredentials) connectInterceptor() connect.Interceptor { return jwtInterceptor{j} }

type jwtInterceptor struct{ j *jwtCredentials }

func (i jwtInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			tok, err := i.j.token(ctx)
			if err != nil {
				return nil, connect.NewError(connect.CodeUnauthenticated, err)
			}
			req.Header().Add("Authorization", "Bearer "+tok)
		}
		return next(ctx, req)
	}
}

func (i jwtInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		tok, err := i.j.token(ctx)
		if err != nil {
			return &failedConn{StreamingClientConn: conn, err: connect.NewError(connect.CodeUnauthenticated, err)}
		}
		conn.RequestHeader().Add("Authorization", "Bearer "+tok)
		return conn
	}
}

func (jwtInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// failedConn is a streaming call that cannot start: sending and receiving
// return err, and nothing is sent (connect-go starts the request at the
// first Send or CloseRequest, so there is nothing to close).
type failedConn struct {
	connect.StreamingClientConn
	err error
}

func (c *failedConn) Send(any) error       { return c.err }
func (c *failedConn) Receive(any) error    { return c.err }
func (c *failedConn) CloseRequest() error  { return c.err }
func (c *failedConn) CloseResponse() error { return nil }
