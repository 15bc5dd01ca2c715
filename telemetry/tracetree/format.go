package tracetree

import (
	"bytes"
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/trustmesh/trustmesh/telemetry"
)

// spanRecord is the part of a span that a tree shows. Spans from the SDK and
// from OTLP are both reduced to it, which also keeps buffered traces small.
type spanRecord struct {
	traceID    trace.TraceID
	spanID     trace.SpanID
	parentID   trace.SpanID // zero for a root span
	service    string
	name       string
	kind       trace.SpanKind
	start, end time.Time
	caller     string
	subject    string // who the transaction is for, from its verified token
	decision   string
	rule       string
	failed     bool
	errDesc    string
}

func recordFromSpan(s sdktrace.ReadOnlySpan) spanRecord {
	r := spanRecord{
		traceID: s.SpanContext().TraceID(),
		spanID:  s.SpanContext().SpanID(),
		name:    s.Name(),
		kind:    s.SpanKind(),
		start:   s.StartTime(),
		end:     s.EndTime(),
	}
	if p := s.Parent(); p.IsValid() {
		r.parentID = p.SpanID()
	}
	if res := s.Resource(); res != nil {
		if v, ok := res.Set().Value(semconv.ServiceNameKey); ok {
			r.service = v.AsString()
		}
	}
	for _, kv := range s.Attributes() {
		if kv.Value.Type() == attribute.STRING {
			r.setAttribute(string(kv.Key), kv.Value.AsString())
		}
	}
	if st := s.Status(); st.Code == codes.Error {
		r.failed, r.errDesc = true, st.Description
	}
	return r
}

// setAttribute keeps the attributes a tree line shows.
func (r *spanRecord) setAttribute(key, value string) {
	switch key {
	case string(telemetry.PeerSPIFFEIDKey):
		r.caller = value
	case string(telemetry.TxnSubjectKey):
		r.subject = value
	case string(telemetry.AuthzDecisionKey):
		r.decision = value
	case string(telemetry.AuthzRuleKey):
		r.rule = value
	}
}

// isHealthCheck reports whether a span is a gRPC health check, which trees
// leave out.
func isHealthCheck(name string) bool {
	return strings.HasPrefix(strings.TrimPrefix(name, "/"), "grpc.health.v1.Health/")
}

// Format returns spans as readable trees, one per trace, traces in the
// order they started, separated by a blank line. Each tree starts with a
// line "trace TRACE_ID"; then comes one line per span:
//
//	SERVICE  KIND  METHOD  caller=SPIFFE_ID  subject=SPIFFE_ID  decision=DECISION (RULE)  error="…"  DURATION
//
// indented under its parent, children in the order they started; columns are
// aligned and the fields that a span lacks are left out. subject is who the
// call's transaction is for (telemetry.TxnSubjectKey, from the transaction
// token the server verified or, at the edge, minted); caller is only the
// direct peer. A span whose parent
// is not among spans starts a tree of its own. Health-check spans are left
// out. The output depends only on spans, so tests can compare it verbatim.
func Format(spans []sdktrace.ReadOnlySpan) string {
	recs := make([]spanRecord, 0, len(spans))
	for _, s := range spans {
		if !isHealthCheck(s.Name()) {
			recs = append(recs, recordFromSpan(s))
		}
	}
	// Group by trace, traces in order of their earliest span.
	slices.SortStableFunc(recs, func(a, b spanRecord) int { return bytes.Compare(a.traceID[:], b.traceID[:]) })
	var groups [][]spanRecord
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && recs[j].traceID == recs[i].traceID {
			j++
		}
		groups = append(groups, recs[i:j])
		i = j
	}
	earliest := func(g []spanRecord) time.Time {
		return slices.MinFunc(g, func(a, b spanRecord) int { return a.start.Compare(b.start) }).start
	}
	slices.SortStableFunc(groups, func(a, b []spanRecord) int { return earliest(a).Compare(earliest(b)) })
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteByte('\n')
		}
		writeTrace(&b, g, "")
	}
	return b.String()
}

// row is one line of a tree before alignment.
type row struct {
	prefix, service, kind, name, fields, duration string
}

// writeTrace writes the tree of recs, which belong to one trace, with note
// appended to its header line.
func writeTrace(b *strings.Builder, recs []spanRecord, note string) {
	if len(recs) == 0 {
		return
	}
	b.WriteString("trace ")
	b.WriteString(recs[0].traceID.String())
	if note != "" {
		b.WriteByte(' ')
		b.WriteString(note)
	}
	b.WriteByte('\n')

	// Index the spans (the first of duplicate IDs wins) and find children.
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, compareRecords)
	byID := make(map[trace.SpanID]int, len(recs))
	for i, r := range recs {
		if _, dup := byID[r.spanID]; !dup {
			byID[r.spanID] = i
		}
	}
	children := make(map[trace.SpanID][]int, len(recs))
	var roots []int
	for i, r := range recs {
		if byID[r.spanID] != i {
			continue // duplicate
		}
		if _, ok := byID[r.parentID]; ok && r.parentID.IsValid() && r.parentID != r.spanID {
			children[r.parentID] = append(children[r.parentID], i)
		} else {
			roots = append(roots, i)
		}
	}

	rows := make([]row, 0, len(recs))
	visited := make([]bool, len(recs))
	var walk func(i int, prefix, childPrefix string)
	walk = func(i int, prefix, childPrefix string) {
		visited[i] = true
		rows = append(rows, makeRow(recs[i], prefix))
		kids := children[recs[i].spanID]
		for k, c := range kids {
			if visited[c] {
				continue
			}
			if k == len(kids)-1 {
				walk(c, childPrefix+"└─ ", childPrefix+"   ")
			} else {
				walk(c, childPrefix+"├─ ", childPrefix+"│  ")
			}
		}
	}
	for _, i := range roots {
		walk(i, "", "")
	}
	// Spans in a parent cycle (only malformed input has them) are shown
	// rather than lost.
	for i := range recs {
		if !visited[i] && byID[recs[i].spanID] == i {
			walk(i, "", "")
		}
	}

	var w1, w2, w3 int
	for _, r := range rows {
		w1 = max(w1, utf8.RuneCountInString(r.prefix)+utf8.RuneCountInString(r.service))
		w2 = max(w2, len(r.kind))
		w3 = max(w3, utf8.RuneCountInString(r.name))
	}
	for _, r := range rows {
		b.WriteString(r.prefix)
		b.WriteString(r.service)
		pad(b, w1-utf8.RuneCountInString(r.prefix)-utf8.RuneCountInString(r.service)+2)
		b.WriteString(r.kind)
		pad(b, w2-len(r.kind)+2)
		b.WriteString(r.name)
		pad(b, w3-utf8.RuneCountInString(r.name)+2)
		if r.fields != "" {
			b.WriteString(r.fields)
			b.WriteString("  ")
		}
		b.WriteString(r.duration)
		b.WriteByte('\n')
	}
}

func compareRecords(a, b spanRecord) int {
	return cmp.Or(a.start.Compare(b.start), strings.Compare(a.name, b.name), bytes.Compare(a.spanID[:], b.spanID[:]))
}

func makeRow(r spanRecord, prefix string) row {
	out := row{
		prefix:   prefix,
		service:  clean(r.service, "?"),
		kind:     r.kind.String(),
		name:     clean(r.name, "?"),
		duration: formatDuration(r.end.Sub(r.start)),
	}
	var f []string
	if r.caller != "" {
		f = append(f, "caller="+clean(r.caller, ""))
	}
	if r.subject != "" {
		f = append(f, "subject="+clean(r.subject, ""))
	}
	if r.decision != "" {
		d := "decision=" + clean(r.decision, "")
		if r.rule != "" {
			d += " (" + clean(r.rule, "") + ")"
		}
		f = append(f, d)
	}
	if r.failed {
		if r.errDesc != "" {
			f = append(f, "error="+strconv.Quote(clean(r.errDesc, "")))
		} else {
			f = append(f, "error")
		}
	}
	out.fields = strings.Join(f, "  ")
	return out
}

func pad(b *strings.Builder, n int) {
	for range n {
		b.WriteByte(' ')
	}
}

// maxField is the most runes of one span-supplied string a line shows.
const maxField = 120

// clean makes a span-supplied string safe to print on a terminal: spans can
// come from other processes, so control characters (escape sequences) are
// replaced and long values cut. An empty s becomes empty.
func clean(s, empty string) string {
	if s == "" {
		return empty
	}
	n := 0
	return strings.Map(func(r rune) rune {
		n++
		switch {
		case n > maxField+1:
			return -1
		case n == maxField+1:
			return '…'
		case r == utf8.RuneError || !unicode.IsPrint(r):
			return '?'
		}
		return r
	}, s)
}

// formatDuration rounds d to about four significant digits.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d >= 10*time.Second:
		d = d.Round(10 * time.Millisecond)
	case d >= time.Second:
		d = d.Round(time.Millisecond)
	case d >= 100*time.Millisecond:
		d = d.Round(100 * time.Microsecond)
	case d >= 10*time.Millisecond:
		d = d.Round(10 * time.Microsecond)
	case d >= time.Millisecond:
		d = d.Round(time.Microsecond)
	case d >= 100*time.Microsecond:
		d = d.Round(100 * time.Nanosecond)
	case d >= 10*time.Microsecond:
		d = d.Round(10 * time.Nanosecond)
	}
	return d.String()
}
