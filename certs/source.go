package certs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/identity"
	"github.com/trustmesh/trustmesh/internal/filewatch"
)

// DefaultDebounce is how long a [FileSource] waits after the last change in
// its directories before it reads the files, and then between the two
// reads that must agree, unless [FileSourceConfig.Debounce] says
// otherwise.
const DefaultDebounce = 100 * time.Millisecond

// reloadAttempts is how many times a [FileSource] tries a changed set of
// files before it logs them as bad: a pair written key first, certificate
// second, can be caught in between once.
const reloadAttempts = 3

// FileSourceConfig configures [NewFileSource].
type FileSourceConfig struct {
	// CertFile is the PEM file holding the SVID's certificate chain, leaf
	// first, as written by [WriteSVID]. Required.
	CertFile string

	// KeyFile is the PEM file holding the SVID's PKCS#8 private key.
	// Required.
	KeyFile string

	// BundleFile is a PEM trust bundle for TrustDomain, such as
	// [BundleFile] in a development directory. At least one of BundleFile
	// and BundleDir is required.
	BundleFile string

	// BundleDir is a directory of TRUST_DOMAIN.pem bundles (see
	// [LoadBundleSet]), for federation: peers from each of those trust
	// domains are verified against its bundle. It may be used alone (it
	// must then hold the SVID's own trust domain) or with BundleFile, but
	// must not repeat BundleFile's trust domain. By default, there is none.
	BundleDir string

	// TrustDomain is the trust domain of BundleFile. By default, it is the
	// trust domain of the SVID's SPIFFE ID.
	TrustDomain spiffeid.TrustDomain

	// Logger receives reloads, rejected files and expiry warnings. By
	// default, logs are discarded.
	Logger *slog.Logger

	// Debounce is how long to wait after the last change in the watched
	// directories before reading the files, so that a burst of writes (a
	// rotation writes two files) is read once, and then between the two
	// reads that must agree before the files are reloaded, so that files
	// still being written are not. By default, and when 0 or less, it is
	// [DefaultDebounce].
	Debounce time.Duration

	// MeterProvider receives the [ExpiryMetric] gauge. By default, it is
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// FileSource is an X.509-SVID and trust bundle source backed by files that
// it watches: it implements go-spiffe's x509svid.Source and
// x509bundle.Source, so mesh servers and clients present the newest SVID on
// every new handshake without a restart, while established connections
// carry on.
//
// It watches the directories of its files (not the files), so it sees the
// atomic renames of [WriteSVID], and it follows symlinks all the way: the
// directory of each link on the way to a file is watched, and the
// directory of the file they lead to, so it sees the symlink swaps of
// Kubernetes secret and ConfigMap volumes, a re-pointed link, and an edit
// of a link's target in another directory. After a change settles (see
// [FileSourceConfig.Debounce]) it reads everything twice, a debounce
// apart, and only if both reads agree does it swap the new material in,
// and then only if it is sound: the key matches the certificate, the chain
// verifies against the bundles at the current time under the X.509-SVID
// rules of [identity.Verify] for both the server and the client role.
// Otherwise it keeps serving what it had and logs one error line.
//
// A FileSource is safe for concurrent use. Close it when done.
type FileSource struct {
	cfg     FileSourceConfig
	log     *slog.Logger
	current atomic.Pointer[fileMaterial]
	updated chan struct{}
	swapped chan struct{} // to the expiry goroutine: new material is in force

	watcher *filewatch.Watcher
	reg     metric.Registration

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// fileMaterial is one sound set of files, as loaded.
type fileMaterial struct {
	svid    *x509svid.SVID
	bundles *x509bundle.Set
	raw     []byte // every byte read, to tell whether a change changed anything
}

// NewFileSource loads the SVID and bundles named by cfg, checks them as a
// reload would (an expired or not yet valid SVID is an error naming the
// file and the dates), and starts watching their directories. ctx bounds
// only the start: the source runs until [FileSource.Close].
func NewFileSource(ctx context.Context, cfg FileSourceConfig) (_ *FileSource, err error) {
	switch {
	case cfg.CertFile == "":
		return nil, errors.New("certs: file source: CertFile is required")
	case cfg.KeyFile == "":
		return nil, errors.New("certs: file source: KeyFile is required")
	case cfg.BundleFile == "" && cfg.BundleDir == "":
		return nil, errors.New("certs: file source: BundleFile or BundleDir is required")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("certs: file source: %w", err)
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &FileSource{
		cfg:     cfg,
		log:     cfg.Logger,
		updated: make(chan struct{}, 1),
		swapped: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	c, err := s.read()
	if err != nil {
		return nil, err
	}
	m, err := s.parse(c, time.Now())
	if err != nil {
		return nil, err
	}
	s.current.Store(m)

	if s.reg, err = registerExpiryGauge(cfg.MeterProvider, s.svid); err != nil {
		return nil, err
	}
	if s.watcher, err = filewatch.Start(context.WithoutCancel(ctx), filewatch.Config[fileContents]{
		Name:    "certs",
		Files:   s.files(),
		Dirs:    s.bundleDirs(),
		Settle:  cfg.Debounce,
		Retries: reloadAttempts - 1,
		Loaded:  m.raw,
		Read:    func() (fileContents, []byte, error) { c, err := s.read(); return c, c.raw(), err },
		Reload:  s.reload,
		Reject:  s.reject,
		Logger:  s.log,
	}); err != nil {
		return nil, errors.Join(err, s.reg.Unregister())
	}
	s.log.Info("certs: loaded SVID", s.attrs(m)...)
	go s.watchExpiry(m)
	return s, nil
}

// GetX509SVID returns the current X.509-SVID. It implements
// x509svid.Source.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.current.Load().svid, nil
}

// GetX509BundleForTrustDomain returns the current bundle of td. It
// implements x509bundle.Source.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.current.Load().bundles.GetX509BundleForTrustDomain(td)
}

// Updated returns a channel that receives a value after the source has
// swapped in new material. It has a buffer of one and never blocks the
// source: several updates between two reads give one value.
func (s *FileSource) Updated() <-chan struct{} { return s.updated }

// Close stops watching and waits for the watcher to finish. Afterwards the
// getters return [ErrClosed]. Close is idempotent: later calls return nil.
func (s *FileSource) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		err = s.watcher.Close()
		close(s.stop)
		<-s.done
		err = errors.Join(err, s.reg.Unregister())
	})
	return err
}

// svid returns the current SVID for the gauge, or nil after Close.
func (s *FileSource) svid() *x509svid.SVID {
	if s.closed.Load() {
		return nil
	}
	return s.current.Load().svid
}

// files returns the files to watch.
func (s *FileSource) files() []string {
	files := []string{s.cfg.CertFile, s.cfg.KeyFile}
	if s.cfg.BundleFile != "" {
		files = append(files, s.cfg.BundleFile)
	}
	return files
}

// bundleDirs returns the directory of bundles to watch, if any.
func (s *FileSource) bundleDirs() []string {
	if s.cfg.BundleDir == "" {
		return nil
	}
	return []string{s.cfg.BundleDir}
}

// reload swaps in the material in c if it is sound, or says why not. It
// runs on the file watcher's goroutine.
func (s *FileSource) reload(_ context.Context, c fileContents) error {
	now := time.Now()
	m, err := s.parse(c, now)
	if err != nil {
		return err
	}
	s.current.Store(m)
	for _, ch := range []chan struct{}{s.updated, s.swapped} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.log.Info("certs: reloaded SVID", s.attrs(m)...)
	return nil
}

// reject logs files that could not be read, or were not sound.
func (s *FileSource) reject(_ context.Context, err error) {
	s.log.Error("certs: rejected new SVID files; still serving the previous SVID",
		slog.String("error", err.Error()),
		slog.String("serving_serial", s.current.Load().svid.Certificates[0].SerialNumber.Text(16)))
}

// watchExpiry logs, until Close, when the SVID in force (m at first) is
// about to expire and when it has.
func (s *FileSource) watchExpiry(m *fileMaterial) {
	defer close(s.done)
	expiry := newExpiryMonitor(s.log, s.cfg.CertFile)
	defer expiry.stop()
	expiry.reset(m.svid, time.Now())
	for {
		select {
		case <-s.stop:
			return
		case <-s.swapped:
			expiry.reset(s.current.Load().svid, time.Now())
		case <-expiry.C():
			expiry.fire(time.Now())
		}
	}
}

func (s *FileSource) attrs(m *fileMaterial) []any {
	leaf := m.svid.Certificates[0]
	return []any{
		slog.String("file", s.cfg.CertFile),
		slog.String("spiffe_id", m.svid.ID.String()),
		slog.String("serial", leaf.SerialNumber.Text(16)),
		slog.String("not_after", formatTime(leaf.NotAfter)),
	}
}

// fileContents is every file of a source as read at one moment.
type fileContents struct {
	cert, key, bundle []byte
	set               *x509bundle.Set // from BundleDir, or nil
	setRaw            []byte
}

// raw joins the contents, to tell whether a change changed anything.
func (c fileContents) raw() []byte {
	return slices.Concat(c.cert, []byte{0}, c.key, []byte{0}, c.bundle, []byte{0}, c.setRaw)
}

// read reads every file.
func (s *FileSource) read() (fileContents, error) {
	var c fileContents
	var err error
	if c.cert, err = os.ReadFile(s.cfg.CertFile); err != nil {
		return c, fmt.Errorf("certs: read SVID: %w", err)
	}
	if c.key, err = os.ReadFile(s.cfg.KeyFile); err != nil {
		return c, fmt.Errorf("certs: read SVID key: %w", err)
	}
	if s.cfg.BundleFile != "" {
		if c.bundle, err = os.ReadFile(s.cfg.BundleFile); err != nil {
			return c, fmt.Errorf("certs: read bundle: %w", err)
		}
	}
	if s.cfg.BundleDir != "" {
		if c.set, c.setRaw, err = loadBundleSet(s.cfg.BundleDir); err != nil {
			return c, fmt.Errorf("certs: bundle dir %s: %w", s.cfg.BundleDir, err)
		}
	}
	return c, nil
}

// parse checks the files read, as of now.
func (s *FileSource) parse(c fileContents, now time.Time) (*fileMaterial, error) {
	svid, err := x509svid.Parse(c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("certs: %s with key %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	if err := checkValidity(s.cfg.CertFile, svid.Certificates[0], now); err != nil {
		return nil, err
	}

	bundles := c.set
	if bundles == nil {
		bundles = x509bundle.NewSet()
	}
	if s.cfg.BundleFile != "" {
		td := s.cfg.TrustDomain
		if td.IsZero() {
			td = svid.ID.TrustDomain()
		}
		bundle, err := x509bundle.Parse(td, c.bundle)
		if err != nil {
			return nil, fmt.Errorf("certs: bundle %s: %w", s.cfg.BundleFile, err)
		}
		if bundle.Empty() {
			return nil, fmt.Errorf("certs: bundle %s: no certificates found", s.cfg.BundleFile)
		}
		if bundles.Has(td) {
			return nil, fmt.Errorf("certs: bundle dir %s: %s.pem repeats the trust domain of bundle %s", s.cfg.BundleDir, td.Name(), s.cfg.BundleFile)
		}
		bundles.Add(bundle)
	}

	if err := verifyBothRoles(svid, bundles, now); err != nil {
		return nil, fmt.Errorf("certs: %s: %w", s.cfg.CertFile, err)
	}
	return &fileMaterial{svid: svid, bundles: bundles, raw: c.raw()}, nil
}

// verifyBothRoles checks that svid verifies under the X.509-SVID rules
// against bundles, as of now, as a server and as a client: a workload's
// SVID serves in both roles. FileSource and WorkloadSource adopt nothing
// that fails it.
func verifyBothRoles(svid *x509svid.SVID, bundles x509bundle.Source, now time.Time) error {
	for _, role := range []identity.Role{identity.Server, identity.Client} {
		if _, err := identity.Verify(svid.Certificates, bundles, role, now); err != nil {
			return err
		}
	}
	return nil
}
