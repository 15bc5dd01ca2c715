package certs_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/attribute"
	metricsdk "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/trustmesh/trustmesh/certs"
	"github.com/trustmesh/trustmesh/internal/testpki"
)

const ordersID = "spiffe://shop.example/ns/shop/sa/orders"

// waitTimeout bounds every wait for the watcher in these tests.
const waitTimeout = 10 * time.Second

// logBuffer is a slog destination that tests can wait on.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLog() (*slog.Logger, *logBuffer) {
	l := &logBuffer{changed: make(chan struct{}, 1)}
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) count(substr string) int { return strings.Count(l.String(), substr) }

// waitFor waits until the log holds substr at least n times.
func (l *logBuffer) waitFor(t *testing.T, substr string, n int) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for l.count(substr) < n {
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("log has %d of %q, want %d:\n%s", l.count(substr), substr, n, l.String())
		}
	}
}

// devDir returns a directory holding pki's bundle.pem and an orders SVID.
func devDir(t *testing.T, pki *testpki.PKI) (dir string, svid *x509svid.SVID) {
	t.Helper()
	dir = t.TempDir()
	if err := pki.CA().Save(dir); err != nil {
		t.Fatal(err)
	}
	svid = pki.SVID(t, ordersID)
	writeSVID(t, dir, svid)
	return dir, svid
}

func writeSVID(t *testing.T, dir string, svid *x509svid.SVID) {
	t.Helper()
	if _, _, err := certs.WriteSVID(dir, "orders", svid); err != nil {
		t.Fatal(err)
	}
}

// leafSVID signs a leaf for spiffe://TD/test/leaf after mutate.
func leafSVID(t *testing.T, pki *testpki.PKI, mutate func(*x509.Certificate)) *x509svid.SVID {
	t.Helper()
	cert, key := pki.Leaf(t, mutate)
	return &x509svid.SVID{
		ID:           spiffeid.RequireFromPath(pki.TrustDomain(), testpki.LeafID),
		Certificates: []*x509.Certificate{cert},
		PrivateKey:   key,
	}
}

func fileConfig(dir string, log *slog.Logger) certs.FileSourceConfig {
	return certs.FileSourceConfig{
		CertFile:   filepath.Join(dir, "orders.pem"),
		KeyFile:    filepath.Join(dir, "orders-key.pem"),
		BundleFile: filepath.Join(dir, "bundle.pem"),
		Logger:     log,
		Debounce:   20 * time.Millisecond,
	}
}

func newFileSource(t *testing.T, cfg certs.FileSourceConfig) *certs.FileSource {
	t.Helper()
	src, err := certs.NewFileSource(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

func serialOf(t *testing.T, src x509svid.Source) string {
	t.Helper()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return svid.Certificates[0].SerialNumber.Text(16)
}

func serial(svid *x509svid.SVID) string { return svid.Certificates[0].SerialNumber.Text(16) }

func waitUpdated(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatal("no update within", waitTimeout)
	}
}

func TestFileSourceRotation(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	dir, first := devDir(t, pki)
	log, logs := newLog()
	src := newFileSource(t, fileConfig(dir, log))

	if got := serialOf(t, src); got != serial(first) {
		t.Fatalf("serial = %s, want %s", got, serial(first))
	}
	bundle, err := src.GetX509BundleForTrustDomain(shop)
	if err != nil || !bundle.Equal(pki.Bundle()) {
		t.Fatalf("bundle for shop.example: %v, %v", bundle, err)
	}

	// A rotation as meshctl certs rotate does it: key first, then the
	// certificate, each renamed into place.
	second := pki.SVID(t, ordersID)
	writeSVID(t, dir, second)
	waitUpdated(t, src.Updated())
	if got := serialOf(t, src); got != serial(second) {
		t.Fatalf("after rotation: serial = %s, want %s", got, serial(second))
	}
	logs.waitFor(t, "certs: reloaded SVID", 1)
	if n := logs.count("rejected"); n != 0 {
		t.Errorf("a good rotation logged %d rejections:\n%s", n, logs)
	}

	certFile := filepath.Join(dir, "orders.pem")
	bad := []struct {
		name    string
		write   func(t *testing.T)
		wantLog string
	}{
		{
			name: "certificate-not-matching-key",
			write: func(t *testing.T) {
				certPEM, _, err := pki.SVID(t, ordersID).Marshal()
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, certFile, certPEM)
			},
			wantLog: "leaf certificate does not match private key",
		},
		{
			name: "half-written-certificate",
			write: func(t *testing.T) {
				certPEM, _, err := second.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, certFile, certPEM[:len(certPEM)/2])
			},
			wantLog: "cannot parse PEM encoded certificate",
		},
		{
			name:    "expired",
			write:   func(t *testing.T) { writeSVID(t, dir, leafSVID(t, pki, testpki.Expired)) },
			wantLog: "SVID expired at",
		},
		{
			name: "other-ca",
			write: func(t *testing.T) {
				writeSVID(t, dir, testpki.New(t, "shop.example").SVID(t, ordersID))
			},
			wantLog: "certificate signed by unknown authority",
		},
		{
			name:    "no-server-auth",
			write:   func(t *testing.T) { writeSVID(t, dir, leafSVID(t, pki, testpki.NoServerAuth)) },
			wantLog: "leaf lacks the serverAuth extended key usage",
		},
	}
	for i, tc := range bad {
		// Subtests run in order: each one breaks the files in its own way.
		t.Run(tc.name, func(t *testing.T) {
			tc.write(t)
			logs.waitFor(t, "certs: rejected new SVID files", i+1)
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs)
			}
			if got := serialOf(t, src); got != serial(second) {
				t.Errorf("serial = %s, want the old %s kept", got, serial(second))
			}
			select {
			case <-src.Updated():
				t.Error("Updated fired for rejected files")
			default:
			}
		})
	}
	if n := logs.count("certs: rejected new SVID files"); n != len(bad) {
		t.Errorf("logged %d rejections for %d bad writes:\n%s", n, len(bad), logs)
	}

	// Back to good files: the source follows again.
	third := pki.SVID(t, ordersID)
	writeSVID(t, dir, third)
	waitUpdated(t, src.Updated())
	if got := serialOf(t, src); got != serial(third) {
		t.Fatalf("after recovery: serial = %s, want %s", got, serial(third))
	}
}

// writeFile writes data in place (not atomically), as a careless tool would.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFileSourceSymlinkSwap rotates the way Kubernetes updates a secret
// volume: the files are symlinks through ..data, which is swapped to a new
// directory by a rename.
func TestFileSourceSymlinkSwap(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	dir := t.TempDir()
	version := func(n int, svid *x509svid.SVID) string {
		name := fmt.Sprintf("..2026_01_01_00_00_0%d", n)
		vdir := filepath.Join(dir, name)
		if err := pki.CA().Save(vdir); err != nil {
			t.Fatal(err)
		}
		writeSVID(t, vdir, svid)
		return name
	}
	first := pki.SVID(t, ordersID)
	if err := os.Symlink(version(1, first), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"orders.pem", "orders-key.pem", "bundle.pem"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	src := newFileSource(t, fileConfig(dir, nil))
	if got := serialOf(t, src); got != serial(first) {
		t.Fatalf("serial = %s, want %s", got, serial(first))
	}

	second := pki.SVID(t, ordersID)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(version(2, second), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitUpdated(t, src.Updated())
	if got := serialOf(t, src); got != serial(second) {
		t.Fatalf("after the swap: serial = %s, want %s", got, serial(second))
	}
}

func TestNewFileSourceErrors(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	dir, _ := devDir(t, pki)
	certFile := filepath.Join(dir, "orders.pem")
	keyFile := filepath.Join(dir, "orders-key.pem")
	dates := func(c *x509.Certificate) (from, to string) {
		return c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339)
	}

	testCases := []struct {
		name   string
		setup  func(t *testing.T, dir string) // changes a copy of dir
		config func(cfg *certs.FileSourceConfig)
		want   func(dir string) string
	}{
		{
			name: "expired",
			setup: func(t *testing.T, dir string) {
				writeSVID(t, dir, leafSVID(t, pki, testpki.Expired))
			},
			want: func(dir string) string {
				leaf := readLeaf(t, filepath.Join(dir, "orders.pem"))
				from, to := dates(leaf)
				return fmt.Sprintf("certs: %s: SVID expired at %s (valid from %s to %s)", filepath.Join(dir, "orders.pem"), to, from, to)
			},
		},
		{
			name: "not-yet-valid",
			setup: func(t *testing.T, dir string) {
				writeSVID(t, dir, leafSVID(t, pki, testpki.NotYetValid))
			},
			want: func(dir string) string {
				leaf := readLeaf(t, filepath.Join(dir, "orders.pem"))
				from, to := dates(leaf)
				return fmt.Sprintf("certs: %s: SVID is not valid until %s (valid from %s to %s)", filepath.Join(dir, "orders.pem"), from, from, to)
			},
		},
		{
			name: "key-mismatch",
			setup: func(t *testing.T, dir string) {
				certPEM, _, err := pki.SVID(t, ordersID).Marshal()
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "orders.pem"), certPEM)
			},
			want: func(dir string) string {
				return fmt.Sprintf("certs: %s with key %s: x509svid: private key validation failed: leaf certificate does not match private key",
					filepath.Join(dir, "orders.pem"), filepath.Join(dir, "orders-key.pem"))
			},
		},
		{
			name: "missing-certificate",
			setup: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "orders.pem")); err != nil {
					t.Fatal(err)
				}
			},
			want: func(dir string) string {
				return fmt.Sprintf("certs: read SVID: open %s: no such file or directory", filepath.Join(dir, "orders.pem"))
			},
		},
		{
			name: "leaf-is-ca",
			setup: func(t *testing.T, dir string) {
				writeSVID(t, dir, leafSVID(t, pki, testpki.LeafIsCA))
			},
			want: func(dir string) string {
				return fmt.Sprintf("certs: %s with key %s: x509svid: certificate validation failed: leaf certificate must not have CA flag set to true",
					filepath.Join(dir, "orders.pem"), filepath.Join(dir, "orders-key.pem"))
			},
		},
		{
			name: "no-client-auth",
			setup: func(t *testing.T, dir string) {
				writeSVID(t, dir, leafSVID(t, pki, testpki.NoClientAuth))
			},
			want: func(dir string) string {
				return fmt.Sprintf(`certs: %s: identity: client certificate "spiffe://shop.example/test/leaf": leaf lacks the clientAuth extended key usage`,
					filepath.Join(dir, "orders.pem"))
			},
		},
		{
			name: "wrong-trust-domain-bundle",
			config: func(cfg *certs.FileSourceConfig) {
				cfg.TrustDomain = spiffeid.RequireTrustDomainFromString("other.example")
			},
			want: func(dir string) string {
				return fmt.Sprintf(`certs: %s: identity: server certificate "%s": x509svid: could not get X509 bundle: x509bundle: no X.509 bundle for trust domain "shop.example"`,
					filepath.Join(dir, "orders.pem"), ordersID)
			},
		},
		{
			name:   "no-cert-file",
			config: func(cfg *certs.FileSourceConfig) { cfg.CertFile = "" },
			want:   func(string) string { return "certs: file source: CertFile is required" },
		},
		{
			name:   "no-key-file",
			config: func(cfg *certs.FileSourceConfig) { cfg.KeyFile = "" },
			want:   func(string) string { return "certs: file source: KeyFile is required" },
		},
		{
			name:   "no-bundle",
			config: func(cfg *certs.FileSourceConfig) { cfg.BundleFile = "" },
			want:   func(string) string { return "certs: file source: BundleFile or BundleDir is required" },
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := t.TempDir()
			for _, f := range []string{certFile, keyFile, filepath.Join(dir, "bundle.pem")} {
				writeFile(t, filepath.Join(d, filepath.Base(f)), readFile(t, f))
			}
			if tc.setup != nil {
				tc.setup(t, d)
			}
			cfg := fileConfig(d, nil)
			if tc.config != nil {
				tc.config(&cfg)
			}
			src, err := certs.NewFileSource(context.Background(), cfg)
			if err == nil {
				_ = src.Close()
				t.Fatal("NewFileSource succeeded")
			}
			if want := tc.want(d); err.Error() != want {
				t.Errorf("error:\n got %s\nwant %s", err, want)
			}
		})
	}
}

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestFileSourceClose(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	dir, _ := devDir(t, pki)
	src, err := certs.NewFileSource(context.Background(), fileConfig(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := src.GetX509SVID(); !errors.Is(err, certs.ErrClosed) || err.Error() != "certs: source is closed" {
		t.Errorf("GetX509SVID after Close: %v", err)
	}
	if _, err := src.GetX509BundleForTrustDomain(shop); !errors.Is(err, certs.ErrClosed) {
		t.Errorf("GetX509BundleForTrustDomain after Close: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := certs.NewFileSource(ctx, fileConfig(dir, nil)); err == nil || err.Error() != "certs: file source: context canceled" {
		t.Errorf("NewFileSource with a cancelled context: %v", err)
	}
}

func TestFileSourceExpiry(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")

	t.Run("warning-at-load", func(t *testing.T) {
		t.Parallel()
		dir, _ := devDir(t, pki)
		now := time.Now()
		writeSVID(t, dir, leafSVID(t, pki, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = now.Add(-9*time.Minute), now.Add(time.Minute)
		}))
		log, logs := newLog()
		newFileSource(t, fileConfig(dir, log))
		logs.waitFor(t, "certs: SVID expires soon: less than a fifth of its lifetime is left", 1)
	})

	t.Run("warning-and-expiry-on-timer", func(t *testing.T) {
		t.Parallel()
		dir, _ := devDir(t, pki)
		now := time.Now()
		// Lifetime 6s, of which 4s are left: the warning is due in about
		// 2.8s, the expiry in 4s. (Certificates keep whole seconds, so
		// either end may move by up to a second.)
		writeSVID(t, dir, leafSVID(t, pki, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = now.Add(-2*time.Second), now.Add(4*time.Second)
		}))
		log, logs := newLog()
		newFileSource(t, fileConfig(dir, log))
		if n := logs.count("expires soon"); n != 0 {
			t.Fatalf("warned at load:\n%s", logs)
		}
		logs.waitFor(t, "certs: SVID expires soon", 1)
		logs.waitFor(t, "certs: SVID has expired and no valid replacement was loaded", 1)
	})
}

func TestFileSourceExpiryGauge(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "shop.example")
	dir, svid := devDir(t, pki)
	reader := metricsdk.NewManualReader()
	cfg := fileConfig(dir, nil)
	cfg.MeterProvider = metricsdk.NewMeterProvider(metricsdk.WithReader(reader))
	src, err := certs.NewFileSource(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}

	points := collectExpiry(t, reader)
	if len(points) != 1 {
		t.Fatalf("%s has %d points, want 1", certs.ExpiryMetric, len(points))
	}
	want := time.Until(svid.Certificates[0].NotAfter).Seconds()
	if got := points[0].Value; got > want+1 || got < want-60 {
		t.Errorf("%s = %v, want about %v", certs.ExpiryMetric, got, want)
	}
	if id, _ := points[0].Attributes.Value(attribute.Key("spiffe.id")); id.AsString() != ordersID {
		t.Errorf("spiffe.id = %q, want %q", id.AsString(), ordersID)
	}

	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if points := collectExpiry(t, reader); len(points) != 0 {
		t.Errorf("after Close: %d points, want none", len(points))
	}
}

func collectExpiry(t *testing.T, reader *metricsdk.ManualReader) []metricdata.DataPoint[float64] {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != certs.ExpiryMetric {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("unit = %q, want s", m.Unit)
			}
			gauge, ok := m.Data.(metricdata.Gauge[float64])
			if !ok {
				t.Fatalf("%s is a %T, want a float64 gauge", m.Name, m.Data)
			}
			return gauge.DataPoints
		}
	}
	return nil
}
