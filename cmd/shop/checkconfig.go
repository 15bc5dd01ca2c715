package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/version"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/services/shop"
	"github.com/trustmesh/trustmesh/telemetry"
)

// checkServeConfig is `shop serve NAME --check-config`: everything serve
// would read before it listens is read and checked (the flags and
// environment were parsed by the caller; here the SVID and bundle, the
// policy file merged with the protos' rules, the OTEL_* variables), then the
// effective configuration is printed as "key: value" lines on stdout. The
// first problem is returned as an error; nothing is served.
func checkServeConfig(ctx context.Context, stdout io.Writer, name, listen string, cfg shop.Config) error {
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port: %w", listen, errUsage)
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
		creds, err := shop.LoadCredentials(cfg.CertDir, name)
		if err != nil {
			return err
		}
		svid, err := creds.SVID.GetX509SVID()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		certFile := filepath.Join(cfg.CertDir, name+".pem")
		if svid.ID != id {
			return fmt.Errorf("%s: %s carries %s, want %s", name, certFile, svid.ID, id)
		}
		if _, _, err := x509svid.Verify(svid.Certificates, creds.Bundles); err != nil {
			return fmt.Errorf("%s: %s does not verify against %s: %w", name, certFile,
				filepath.Join(cfg.CertDir, certs.BundleFile), err)
		}
		leaf := svid.Certificates[0]
		if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			return fmt.Errorf("%s: %s is valid only from %s to %s (renew it with `meshctl certs rotate --dir %s %s`)",
				name, certFile, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), cfg.CertDir, name)
		}
		add("cert-dir", cfg.CertDir)
		add("svid", fmt.Sprintf("%s (valid until %s; DNS %s)", certFile, leaf.NotAfter.UTC().Format(time.RFC3339), strings.Join(leaf.DNSNames, ",")))
		add("bundle", filepath.Join(cfg.CertDir, certs.BundleFile))
	}

	// Policy: the file merged with the rules of the protos this service
	// serves, compiled for this server, every served method covered.
	served := servedBy(name)
	base, err := policy.FromServiceNames(served...)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	file, err := policy.LoadFile(cfg.PolicyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	engine, err := policy.Compile(policy.Merge(base, file), policy.ForServer(id))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var uncovered []string
	for _, m := range servedMethods(served) {
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
	add("policy", fmt.Sprintf("%s (%d rules for this server with the protos'; %s)", cfg.PolicyFile, engine.Rules(), coverage))
	add("allow-uncovered", fmt.Sprint(cfg.AllowUncovered))
	add("audit-allows", fmt.Sprint(cfg.AuditAllows))
	add("payment-limit", cmpDefault(cfg.PaymentLimit != 0, fmt.Sprint(cfg.PaymentLimit)))
	add("step-interval", cmpDefault(cfg.StepInterval != 0, cfg.StepInterval.String()))

	// Telemetry: the same Setup serve runs, so a bad OTEL_* value fails here.
	p, err := telemetry.Setup(ctx, name, version.Version, telemetry.WithoutGlobal())
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

// servedBy lists the protobuf services sample service name serves: those of
// the registered shop.NAME.vN packages.
func servedBy(name string) []string {
	var out []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		pkg := string(fd.Package())
		if !strings.HasPrefix(pkg, "shop."+name+".v") {
			return true
		}
		for i := range fd.Services().Len() {
			out = append(out, string(fd.Services().Get(i).FullName()))
		}
		return true
	})
	slices.Sort(out)
	return out
}

// servedMethods lists the /pkg.Service/Method names of services, plus health
// and reflection, which every sample service serves.
func servedMethods(services []string) []string {
	out := []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"}
	for _, s := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(s))
		if err != nil {
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		for i := range sd.Methods().Len() {
			out = append(out, "/"+s+"/"+string(sd.Methods().Get(i).Name()))
		}
	}
	return out
}
