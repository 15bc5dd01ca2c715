package shop

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/metric"

	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/txn"
)

// servedServices lists the protobuf services each sample service serves;
// their access options (proto/trustmesh/v1) are merged with the policy file.
var servedServices = map[string][]string{
	Gateway:   {"shop.gateway.v1.StorefrontService", "shop.gateway.v2.StorefrontService"},
	Orders:    {"shop.orders.v1.OrderService"},
	Inventory: {"shop.inventory.v1.InventoryService"},
	Payments:  {"shop.payments.v1.PaymentService"},
}

// authorization is one service's policy: the rules declared in its protos
// merged with the hot-reloaded policy file. (The mesh server rejects a
// reload that would leave a served method uncovered, or with
// AllowUncovered only logs it.)
type authorization struct {
	authorizer *interceptors.Authorizer
	watcher    *policy.Watcher
}

// newAuthorization builds service name's authorizer over creds: the
// gateway, the edge, mints a transaction token for every call it lets in
// (for its caller; a token a caller sends it is ignored, never trusted),
// and the other services verify the token each call carries against the
// trust bundles, trusting the minters the policy's txn_issuers name.
func newAuthorization(ctx context.Context, name string, cfg Config, creds mesh.Credentials, log *slog.Logger, meters metric.MeterProvider) (*authorization, error) {
	base, err := policy.FromServiceNames(servedServices[name]...)
	if err != nil {
		return nil, fmt.Errorf("shop: %s: %w", name, err)
	}
	az := &authorization{}
	w, err := policy.NewWatcher(ctx, cfg.PolicyFile,
		policy.WithBase(base),
		policy.WithCompileOptions(policy.ForServer(WorkloadID(name))),
		policy.WithLogger(log),
		policy.WithMeterProvider(meters))
	if err != nil {
		return nil, fmt.Errorf("shop: %s: %w", name, err)
	}
	tv, err := tokenVerifier(name, cfg, w.Engine(), log)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("shop: %s: %w", name, err)
	}
	txnOpt, err := transactionTokens(name, creds)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("shop: %s: %w", name, err)
	}
	a, err := interceptors.NewAuthorizer(w,
		interceptors.WithAuditLogger(log),
		interceptors.WithAuditAllows(cfg.AuditAllows),
		interceptors.WithTokenVerifier(tv),
		txnOpt)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("shop: %s: %w", name, err)
	}
	az.authorizer, az.watcher = a, w
	return az, nil
}

func (az *authorization) close() error { return az.watcher.Close() }

// transactionTokens is the part service name plays with transaction tokens:
// the gateway mints them with its own SVID (read on every mint, so it
// follows rotations), every other service verifies them. The gateway does
// not verify: a token a person sends it would otherwise be kept and
// forwarded in place of the one it mints for that person.
func transactionTokens(name string, creds mesh.Credentials) (interceptors.AuthorizerOption, error) {
	if name != Gateway {
		return interceptors.WithTransactionTokens(creds.Bundles, TrustDomain), nil
	}
	m, err := txn.NewMinter(creds.SVID, TrustDomain)
	if err != nil {
		return nil, err
	}
	return interceptors.WithTxnMinter(m), nil
}

// Methods returns every method service name serves: those of its protobuf
// services, and health and reflection as its stack serves them.
func Methods(name string) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	out, err := mesh.ServiceMethods(servedServices[name]...)
	if err != nil {
		return nil, fmt.Errorf("shop: %s: %w", name, err)
	}
	if name == Orders || name == Inventory { // the grpc-go services
		return append(out, mesh.GRPCStandardMethods()...), nil
	}
	return append(out, mesh.ConnectStandardMethods()...), nil
}

// CompilePolicy compiles the policy service name starts with: cfg's policy
// file merged with the rules declared in its protos, for its own SPIFFE ID.
// Its errors are those the service would stop with.
func CompilePolicy(name string, cfg Config) (*policy.Engine, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	base, err := policy.FromServiceNames(servedServices[name]...)
	if err != nil {
		return nil, fmt.Errorf("shop: %s: %w", name, err)
	}
	file, err := policy.LoadFile(cfg.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("shop: %s: %w", name, err)
	}
	e, err := policy.Compile(policy.Merge(file, base), policy.ForServer(WorkloadID(name)))
	if err != nil {
		return nil, fmt.Errorf("shop: %s: %w", name, err)
	}
	return e, nil
}
