package tracetree

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // accept OTEL_EXPORTER_OTLP_COMPRESSION=gzip
	"google.golang.org/protobuf/proto"
)

// maxHTTPBody bounds an OTLP/HTTP request body, compressed and decompressed
// (the same as grpc-go's default receive limit).
const maxHTTPBody = 4 << 20

// Receiver is an OTLP trace receiver that prints what it receives as trees
// through a [Printer]. It implements the official OTLP collector trace
// service ([coltracepb.TraceServiceServer]) for gRPC and, as an
// [http.Handler], OTLP/HTTP with protobuf bodies (POST /v1/traces). It also
// accepts metric exports (gRPC [Receiver.MetricsService], POST /v1/metrics)
// and only counts them, so that a mesh exporting metrics over OTLP to the
// same endpoint sees no errors.
type Receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	printer  *Printer
	spans    atomic.Uint64
	rejected atomic.Uint64
	metrics  atomic.Uint64
}

var _ coltracepb.TraceServiceServer = (*Receiver)(nil)

// NewReceiver returns a Receiver that hands the spans it receives to p.
func NewReceiver(p *Printer) *Receiver {
	return &Receiver{printer: p}
}

// ReceiverStats counts what a [Receiver] received.
type ReceiverStats struct {
	// Spans is how many spans were accepted.
	Spans uint64
	// RejectedSpans is how many spans were rejected for malformed IDs.
	RejectedSpans uint64
	// Metrics is how many metrics (not data points) were received and
	// ignored.
	Metrics uint64
}

// Stats returns what r received so far.
func (r *Receiver) Stats() ReceiverStats {
	return ReceiverStats{Spans: r.spans.Load(), RejectedSpans: r.rejected.Load(), Metrics: r.metrics.Load()}
}

// Export accepts one OTLP trace export. Spans with a malformed trace, span or
// parent ID are rejected and reported as a partial success; the others go to
// the printer.
func (r *Receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var accepted, rejected int64
	for _, rs := range req.GetResourceSpans() {
		service := stringAttr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				rec, ok := recordFromOTLP(service, s)
				if !ok {
					rejected++
					continue
				}
				accepted++
				r.printer.add(rec)
			}
		}
	}
	r.spans.Add(uint64(accepted))
	resp := &coltracepb.ExportTraceServiceResponse{}
	if rejected > 0 {
		r.rejected.Add(uint64(rejected))
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{
			RejectedSpans: rejected,
			ErrorMessage:  "tracetree: spans with a malformed trace, span or parent ID rejected",
		}
	}
	return resp, nil
}

// MetricsService returns the gRPC OTLP metrics service of r, which counts
// the metrics it receives and drops them.
func (r *Receiver) MetricsService() colmetricspb.MetricsServiceServer {
	return metricsService{r: r}
}

type metricsService struct {
	colmetricspb.UnimplementedMetricsServiceServer
	r *Receiver
}

func (m metricsService) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	var n uint64
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			n += uint64(len(sm.GetMetrics()))
		}
	}
	m.r.metrics.Add(n)
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

// Register registers r's trace and metrics services on s.
func (r *Receiver) Register(s grpc.ServiceRegistrar) {
	coltracepb.RegisterTraceServiceServer(s, r)
	colmetricspb.RegisterMetricsServiceServer(s, r.MetricsService())
}

// ServeHTTP serves OTLP/HTTP: POST /v1/traces and /v1/metrics with
// Content-Type application/x-protobuf, optionally gzip-encoded. JSON bodies
// are refused with 415 Unsupported Media Type.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var in, out proto.Message
	var export func() (proto.Message, error)
	switch req.URL.Path {
	case "/v1/traces":
		treq := &coltracepb.ExportTraceServiceRequest{}
		in, export = treq, func() (proto.Message, error) { return r.Export(req.Context(), treq) }
	case "/v1/metrics":
		mreq := &colmetricspb.ExportMetricsServiceRequest{}
		in, export = mreq, func() (proto.Message, error) { return r.MetricsService().Export(req.Context(), mreq) }
	default:
		http.Error(w, "tracetree: not an OTLP path (want /v1/traces or /v1/metrics)", http.StatusNotFound)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "tracetree: OTLP/HTTP wants POST", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct != "application/x-protobuf" {
		http.Error(w, "tracetree: OTLP/HTTP content type must be application/x-protobuf (set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf or grpc)", http.StatusUnsupportedMediaType)
		return
	}
	body := io.Reader(http.MaxBytesReader(w, req.Body, maxHTTPBody))
	switch enc := req.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "tracetree: bad gzip body: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	default:
		http.Error(w, fmt.Sprintf("tracetree: unsupported Content-Encoding %q (want gzip or none)", enc), http.StatusUnsupportedMediaType)
		return
	}
	data, err := io.ReadAll(io.LimitReader(body, maxHTTPBody+1))
	if err == nil && len(data) > maxHTTPBody {
		err = errors.New("body too large")
	}
	if err == nil {
		err = proto.Unmarshal(data, in)
	}
	if err != nil {
		http.Error(w, "tracetree: bad OTLP body: "+err.Error(), http.StatusBadRequest)
		return
	}
	out, err = export()
	if err != nil {
		http.Error(w, "tracetree: "+err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := proto.Marshal(out)
	if err != nil {
		http.Error(w, "tracetree: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// ServeReceiver receives OTLP on ln and prints each trace as a tree on w
// (see [Printer]; the quiet period defaults to
// [DefaultReceiverQuietPeriod], opts override it) until ctx is done, then
// prints what is still buffered and returns nil. It serves OTLP/gRPC and
// OTLP/HTTP (protobuf) on the same port, so either
// OTEL_EXPORTER_OTLP_PROTOCOL works with OTEL_EXPORTER_OTLP_ENDPOINT pointing
// at it.
//
// The receiver speaks plaintext (HTTP/1.1 and HTTP/2 without TLS, the OTLP
// exporters' "http://" endpoints) and authenticates no one. It is a
// development tool for loopback or a private compose network, not a mesh
// service: do not expose it.
func ServeReceiver(ctx context.Context, ln net.Listener, w io.Writer, opts ...Option) error {
	p := NewPrinter(w, append([]Option{WithQuietPeriod(DefaultReceiverQuietPeriod)}, opts...)...)
	r := NewReceiver(p)
	gs := grpc.NewServer()
	r.Register(gs)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
			if req.ProtoMajor == 2 && strings.HasPrefix(req.Header.Get("Content-Type"), "application/grpc") {
				gs.ServeHTTP(rw, req)
				return
			}
			r.ServeHTTP(rw, req)
		}),
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if serr := hs.Shutdown(sctx); serr != nil {
			_ = hs.Close()
		}
		<-errc
	case err = <-errc:
		err = fmt.Errorf("tracetree: receiver: %w", err)
	}
	gs.Stop()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return errors.Join(err, p.Shutdown(pctx))
}

// recordFromOTLP reduces an OTLP span to what a tree shows; it reports false
// for a span with a malformed trace, span or parent ID.
func recordFromOTLP(service string, s *tracepb.Span) (spanRecord, bool) {
	var r spanRecord
	if len(s.GetTraceId()) != len(r.traceID) || len(s.GetSpanId()) != len(r.spanID) {
		return r, false
	}
	copy(r.traceID[:], s.GetTraceId())
	copy(r.spanID[:], s.GetSpanId())
	switch len(s.GetParentSpanId()) {
	case 0:
	case len(r.parentID):
		copy(r.parentID[:], s.GetParentSpanId())
	default:
		return r, false
	}
	if !r.traceID.IsValid() || !r.spanID.IsValid() {
		return r, false
	}
	r.service = service
	r.name = s.GetName()
	if k := trace.SpanKind(s.GetKind()); k >= trace.SpanKindInternal && k <= trace.SpanKindConsumer {
		r.kind = k
	}
	r.start, r.end = unixNano(s.GetStartTimeUnixNano()), unixNano(s.GetEndTimeUnixNano())
	for _, kv := range s.GetAttributes() {
		if v, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
			r.setAttribute(kv.GetKey(), v.StringValue)
		}
	}
	if s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		r.failed, r.errDesc = true, s.GetStatus().GetMessage()
	}
	return r, true
}

func stringAttr(attrs []*commonpb.KeyValue, key string) string {
	for _, kv := range attrs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func unixNano(ns uint64) time.Time {
	return time.Unix(0, int64(min(ns, math.MaxInt64)))
}
