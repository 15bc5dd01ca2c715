package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/version"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/telemetry/otelenv"
)

// checkServeConfig is `shop serve NAME --check-config`: everything serve
// would read before it listens is read and checked (the flags and
// environment were parsed by the caller; here the SVID and bundle, the
// policy file merged with the protos' rules, the OTEL_* variables), then the
// effective configuration is printed as "key: value" lines on stdout. The
// first problem is returned as an error; nothing is served.
func checkServeConfig(ctx context.Context, stdout io.Writer, name, listen string, cfg shop.Config) error {
	_, port, err := net.SplitHostPort(listen)
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port with a port from 0 to 65535: %w", listen, errUsage)
	}
	id := shop.WorkloadID(name)
	lines := [][2]string{
		{"service", name},
		{"spiffe-id", id.String()},
		{"version", version.Version},
		{"listen", listen},
	}
	add := func(k, v string) { lines = append(lines, [2]string{k, v}) }
	for _, s := range shop.Services {
		add(s+"-addr", cfg.Addrs[s])
	}

	// Identity.
	if socket := cmp.Or(cfg.SPIFFESocket, os.Getenv(certs.EndpointSocketEnv)); socket != "" {
		add("identity", "SPIFFE Workload API at "+socket+" (not contacted by --check-config)")
	} else {
		// The service's own credential source: it checks the key against
		// the certificate, the SVID rules, the validity and the bundles
		// (federation directory included), as at start-up.
		creds, closeCreds, err := shop.OpenCredentials(ctx, cfg, name)
		if err != nil {
			return err
		}
		defer func() { _ = closeCreds() }()
		svid, err := creds.SVID.GetX509SVID()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		certFile := filepath.Join(cfg.CertDir, name+".pem")
		if svid.ID != id {
			return fmt.Errorf("%s: %s carries %s, want %s", name, certFile, svid.ID, id)
		}
		leaf := svid.Certificates[0]
		add("cert-dir", cfg.CertDir)
		add("svid", fmt.Sprintf("%s (valid until %s; DNS %s)", certFile, leaf.NotAfter.UTC().Format(time.RFC3339), strings.Join(leaf.DNSNames, ",")))
		add("bundle", filepath.Join(cfg.CertDir, certs.BundleFile))
		if cfg.FederationDir != "" {
			add("federation-dir", cfg.FederationDir)
		}
	}

	// Policy: the file merged with the rules of the protos this service
	// serves, compiled for this server, every served method covered.
	engine, err := shop.CompilePolicy(name, cfg)
	if err != nil {
		return err
	}
	methods, err := shop.Methods(name)
	if err != nil {
		return err
	}
	var uncovered []string
	for _, m := range methods {
		if !engine.Covers(m) {
			uncovered = append(uncovered, m)
		}
	}
	coverage := "every served method has an allow rule"
	if len(uncovered) > 0 {
		if !cfg.AllowUncovered {
			return fmt.Errorf("%s: policy %s: no allow rule covers %d served method(s): %s", name, cfg.PolicyFile,
				len(uncovered), strings.Join(uncovered, ", "))
		}
		coverage = "uncovered (allowed by --allow-uncovered): " + strings.Join(uncovered, ", ")
	}
	if unused := engine.UnusedDenies(methods); len(unused) > 0 {
		if !cfg.AllowUncovered {
			return fmt.Errorf("%s: policy %s: deny rule(s) %s match no method this server serves, so they refuse nothing here (a typo in their to:? a rule meant for other servers says so with at:)",
				name, cfg.PolicyFile, strings.Join(unused, ", "))
		}
		coverage += "; deny rules matching no served method (allowed by --allow-uncovered): " + strings.Join(unused, ", ")
	}
	add("policy", fmt.Sprintf("%s (%d rules for this server with the protos'; %s)", cfg.PolicyFile, engine.Rules(), coverage))
	jwks, err := shop.TokenIssuer(name, cfg, engine)
	if err != nil {
		return err
	}
	if jwks == "" {
		jwks = "none (calls whose rules require a token are refused)"
	}
	add("token-jwks", jwks)
	add("allow-uncovered", fmt.Sprint(cfg.AllowUncovered))
	add("audit-allows", fmt.Sprint(cfg.AuditAllows))
	add("payment-limit", cmpDefault(cfg.PaymentLimit != 0, fmt.Sprint(cfg.PaymentLimit)))
	add("step-interval", cmpDefault(cfg.StepInterval != 0, cfg.StepInterval.String()))

	// Telemetry: the same Setup serve runs, so a bad OTEL_* value fails here.
	p, err := otelenv.Setup(ctx, name, version.Version, otelenv.WithoutGlobal())
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = p.Shutdown(sctx)
	add("traces", p.TraceExporter+otelEndpoint())

	fmt.Fprintf(stdout, "shop serve %s: configuration OK\n", name)
	for _, l := range lines {
		fmt.Fprintf(stdout, "%s: %s\n", l[0], l[1])
	}
	return nil
}

func cmpDefault(set bool, v string) string {
	if set {
		return v
	}
	return "service default"
}

func otelEndpoint() string {
	ep := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if ep == "" {
		return ""
	}
	return " to " + ep + " (" + cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf") + ")"
}
