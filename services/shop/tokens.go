package shop

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/tokens"
)

// tokenLeeway is the clock skew tolerated on a token's exp and nbf.
const tokenLeeway = 30 * time.Second

// tokenVerifier returns the verifier of the access tokens that service name
// accepts where a policy rule requires one: tokens of cfg.TokenIssuer (by
// default [tokens.DevIssuer]) for the service's own SPIFFE ID, signed with a
// key of cfg.TokenJWKSFile (by default token-jwks.json in cfg.CertDir). A
// JWKS file that is not valid, or a TokenJWKSFile that does not exist, fails
// the start. A default one that does not exist leaves the service with a verifier that refuses every token, so calls
// that need one are refused (fail closed); when the policy in force has
// such rules, the service says so at start.
func tokenVerifier(name string, cfg Config, e *policy.Engine, log *slog.Logger) (interceptors.TokenVerifier, error) {
	file := cmp.Or(cfg.TokenJWKSFile, filepath.Join(cfg.CertDir, tokens.JWKSFile))
	v, err := tokens.NewVerifier(tokens.Config{
		Issuer:   cmp.Or(cfg.TokenIssuer, tokens.DevIssuer),
		Audience: WorkloadID(name).String(),
		JWKSFile: file,
		Leeway:   tokenLeeway,
	})
	switch {
	case err == nil:
		return v, nil
	case !errors.Is(err, fs.ErrNotExist), cfg.TokenJWKSFile != "":
		// A file named explicitly must exist: a typo must not quietly
		// leave the service refusing every token.
		return nil, err
	}
	if rules := e.TokenRules(); len(rules) > 0 {
		log.Warn("policy rules require access tokens, but there is no token issuer key set: every call they match is refused",
			slog.String("rules", strings.Join(rules, ",")), slog.String("jwks", file),
			slog.String("fix", "meshctl tokens init --dir "+filepath.Dir(file)))
	}
	return noTokens{}, nil
}

// noTokens is the verifier of a service without a token issuer: it refuses
// every token.
type noTokens struct{}

func (noTokens) Verify(string, *x509.Certificate, time.Time) (tokens.Claims, error) {
	return tokens.Claims{}, errors.New("tokens: this server has no token issuer configured")
}

// TokenIssuer reports, as service name would find it at start-up with the
// policy e, the JWKS file of its token issuer, or "" when there is none (the
// calls whose rules require a token are then refused); an error is what
// would stop the service.
func TokenIssuer(name string, cfg Config, e *policy.Engine) (string, error) {
	cfg = cfg.withDefaults()
	v, err := tokenVerifier(name, cfg, e, slog.New(slog.DiscardHandler))
	if err != nil {
		return "", fmt.Errorf("shop: %s: %w", name, err)
	}
	if _, none := v.(noTokens); none {
		return "", nil
	}
	return cmp.Or(cfg.TokenJWKSFile, filepath.Join(cfg.CertDir, tokens.JWKSFile)), nil
}
