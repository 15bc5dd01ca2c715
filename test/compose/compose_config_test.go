package compose

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// load loads compose.yaml as docker compose does, with the given profiles
// and no variables from the environment (the defaults in the file apply).
func load(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "compose.yaml")}},
		Environment: types.Mapping{},
	}, loader.WithProfiles(profiles), func(o *loader.Options) { o.SetProjectName("trustmesh", true) })
	if err != nil {
		t.Fatalf("compose-go: load compose.yaml: %v", err)
	}
	return p
}

func env(s types.ServiceConfig, key string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return ""
}

// TestComposeFileHardening checks what every container of the mesh must
// have: the scratch image built here, a numeric non-root user, a read-only
// root, no capabilities, no-new-privileges, certificates mounted read-only
// (written only by the certs and tokens jobs), and the start order.
func TestComposeFileHardening(t *testing.T) {
	t.Parallel()
	p := load(t)
	want := append([]string{"certs", "tokens", "traces"}, services...)
	if got := p.ServiceNames(); !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("services = %v, want %v (jaeger only with its profile)", got, want)
	}
	for _, name := range want {
		s := p.Services[name]
		if s.Image != "trustmesh:dev" || s.Build == nil || s.PullPolicy != types.PullPolicyNever {
			t.Errorf("%s: image %q build %v pull_policy %q: want trustmesh:dev built here, never pulled", name, s.Image, s.Build != nil, s.PullPolicy)
		}
		if s.User != "65532:65532" {
			t.Errorf("%s: user = %q, want 65532:65532 by default", name, s.User)
		}
		if !s.ReadOnly || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") || !slices.Equal(s.CapDrop, []string{"ALL"}) {
			t.Errorf("%s: read_only %v, security_opt %v, cap_drop %v: want read-only, no-new-privileges, no capabilities", name, s.ReadOnly, s.SecurityOpt, s.CapDrop)
		}
		for _, v := range s.Volumes {
			if v.Target == "/certs" && v.Source != filepath.Join(repoRoot(t), "certs", "dev") {
				t.Errorf("%s: /certs mounted from %s, want ./certs/dev", name, v.Source)
			}
			if v.Target == "/certs" && v.ReadOnly == (name == "certs" || name == "tokens") {
				t.Errorf("%s: /certs read_only = %v", name, v.ReadOnly)
			}
		}
	}
	if got := p.Services["certs"].Command; !slices.Equal(got[:5], []string{"meshctl", "certs", "init", "--dir", "/certs"}) {
		t.Errorf("certs: command = %v, want meshctl certs init --dir /certs ...", got)
	}
	wantDeps := map[string][]string{
		"gateway":   {"certs", "tokens", "traces", "orders", "inventory"},
		"orders":    {"certs", "traces", "inventory", "payments"},
		"inventory": {"certs", "traces"},
		"payments":  {"certs", "traces"},
	}
	for _, name := range services {
		s := p.Services[name]
		var deps []string
		for d, dep := range s.DependsOn {
			deps = append(deps, d)
			want := types.ServiceConditionHealthy
			switch d {
			case "certs", "tokens":
				want = types.ServiceConditionCompletedSuccessfully
			case "traces":
				want = types.ServiceConditionStarted
			}
			if dep.Condition != want {
				t.Errorf("%s depends on %s with %q, want %q", name, d, dep.Condition, want)
			}
		}
		if !slices.Equal(sorted(deps), sorted(wantDeps[name])) {
			t.Errorf("%s depends on %v, want %v", name, deps, wantDeps[name])
		}
		if s.HealthCheck == nil || s.HealthCheck.Disable || !slices.Equal(s.HealthCheck.Test, types.HealthCheckTest{"CMD", "shop", "healthcheck"}) {
			t.Errorf("%s: healthcheck = %+v, want CMD shop healthcheck", name, s.HealthCheck)
		}
	}
}

// TestComposeFileMatchesCheckConfig runs, for each service, the command
// compose runs with the environment compose gives it, plus
// --check-config, against a PKI made by the certs job's own command: the
// flags parse, the certificates and the policy the image carries load, the
// listen port is the one the health check dials, every downstream address
// is a compose service, and each SVID carries its compose DNS name.
func TestComposeFileMatchesCheckConfig(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p := load(t)
	bin := binaries(t)
	certDir := t.TempDir()

	initCmd := slices.Clone(p.Services["certs"].Command)
	initCmd[4] = certDir // --dir /certs
	if out, err := run(t, time.Minute, nil, root, filepath.Join(bin, initCmd[0]), initCmd[1:]...); err != nil {
		t.Fatalf("%v: %v\n%s", initCmd, err, out)
	}

	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"FROM scratch", "COPY services/policy.yaml /etc/shop/policy.yaml", "SHOP_POLICY=/etc/shop/policy.yaml",
		"SHOP_CERT_DIR=/certs", "USER 65532:65532", `CMD ["shop", "healthcheck"]`, "COPY bin/shop bin/meshctl /usr/local/bin/"} {
		if !strings.Contains(string(dockerfile), line) {
			t.Errorf("Dockerfile lacks %q", line)
		}
	}
	// Container paths to host paths: the image's policy, the mounted certs.
	hostPath := map[string]string{"/etc/shop/policy.yaml": filepath.Join(root, "services", "policy.yaml"), "/certs": certDir}

	for _, name := range services {
		t.Run(name, func(t *testing.T) {
			s := p.Services[name]
			if want := []string{"shop", "serve", name}; !slices.Equal(s.Command, want) {
				t.Fatalf("command = %v, want %v", s.Command, want)
			}
			environ := []string{"SHOP_POLICY=" + hostPath["/etc/shop/policy.yaml"]}
			for k, v := range s.Environment {
				if v == nil {
					continue
				}
				if h, ok := hostPath[*v]; ok {
					environ = append(environ, k+"="+h)
					continue
				}
				environ = append(environ, k+"="+*v)
			}
			args := append(slices.Clone(s.Command[1:]), "--check-config")
			out, err := run(t, time.Minute, environ, t.TempDir(), filepath.Join(bin, "shop"), args...)
			if err != nil {
				t.Fatalf("shop %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			cfg := map[string]string{}
			for _, l := range strings.Split(out, "\n") {
				if k, v, ok := strings.Cut(l, ": "); ok {
					cfg[k] = v
				}
			}
			if cfg["spiffe-id"] != "spiffe://shop.example/ns/shop/sa/"+name {
				t.Errorf("spiffe-id = %q", cfg["spiffe-id"])
			}
			_, ownPort, _ := net.SplitHostPort(cfg[name+"-addr"])
			if cfg["listen"] != ":"+ownPort {
				t.Errorf("listen = %q, want :%s (the port of %s-addr %s)", cfg["listen"], ownPort, name, cfg[name+"-addr"])
			}
			if hc := env(s, "SHOP_HEALTHCHECK_ADDR"); hc != "127.0.0.1:"+ownPort || env(s, "SHOP_HEALTHCHECK_NAME") != name {
				t.Errorf("health check dials %s as %q, want 127.0.0.1:%s as %s", hc, env(s, "SHOP_HEALTHCHECK_NAME"), ownPort, name)
			}
			for _, other := range services {
				host, _, _ := net.SplitHostPort(cfg[other+"-addr"])
				if _, ok := p.Services[host]; !ok || host != other {
					t.Errorf("%s-addr = %q: want the compose service %s", other, cfg[other+"-addr"], other)
				}
			}
			if !strings.Contains(cfg["svid"], "DNS "+name+",") && !strings.Contains(cfg["svid"], ","+name+",") {
				t.Errorf("svid %q lacks the compose DNS name %s", cfg["svid"], name)
			}
			if !strings.Contains(cfg["policy"], "every served method has an allow rule") {
				t.Errorf("policy: %s", cfg["policy"])
			}
			if want := "otlp to http://traces:4317 (grpc)"; cfg["traces"] != want {
				t.Errorf("traces = %q, want %q", cfg["traces"], want)
			}
		})
	}
}

// TestComposeFilePortsMatchReadme checks the published ports against the
// README: the gateway on 8443 (loopback only), Jaeger's UI on 16686 behind
// its profile.
func TestComposeFilePortsMatchReadme(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	p := load(t, "jaeger")
	published := map[string][]types.ServicePortConfig{}
	for name, s := range p.Services {
		if len(s.Ports) > 0 {
			published[name] = s.Ports
		}
	}
	if len(published) != 2 {
		t.Errorf("services publishing ports: %v, want gateway and jaeger only", published)
	}
	for name, want := range map[string]types.ServicePortConfig{
		"gateway": {HostIP: "127.0.0.1", Published: "8443", Target: 8443, Protocol: "tcp", Mode: "ingress"},
		"jaeger":  {HostIP: "127.0.0.1", Published: "16686", Target: 16686, Protocol: "tcp", Mode: "ingress"},
	} {
		if got := published[name]; len(got) != 1 || got[0].HostIP != want.HostIP || got[0].Published != want.Published || got[0].Target != want.Target || got[0].Protocol != want.Protocol {
			t.Errorf("%s publishes %+v, want %+v", name, got, want)
		}
	}
	if !slices.Equal(p.Services["jaeger"].Profiles, []string{"jaeger"}) {
		t.Errorf("jaeger profiles = %v", p.Services["jaeger"].Profiles)
	}
	containers := string(readme[strings.Index(string(readme), "## Containers"):])
	for _, s := range []string{"make up", "localhost:8443", "docker compose logs", "traces", "--profile jaeger", "make up-jaeger",
		"http://localhost:16686", "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317", "certs/dev/alice.pem"} {
		if !strings.Contains(containers, s) {
			t.Errorf("README's Containers section lacks %q", s)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
