package certs

import (
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RejectedMetric is the name of the counter that [WorkloadSource] adds to
// for every Workload API response it refuses to adopt, with the attribute
// reason: one of [RejectMissingField], [RejectMalformed],
// [RejectIDNotOffered], [RejectIDMismatch], [RejectNotValidNow] and
// [RejectUntrusted] (a fixed set, so of low cardinality). A response
// refused at the start counts too.
const RejectedMetric = "trustmesh.svid.rejected"

// newRejectedCounter creates the [RejectedMetric] counter with mp (the
// global provider if nil).
func newRejectedCounter(mp metric.MeterProvider) (metric.Int64Counter, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	counter, err := mp.Meter(meterName).Int64Counter(RejectedMetric,
		metric.WithUnit("{update}"),
		metric.WithDescription("Workload API updates refused because the SVID or bundles in them are not sound; the last good material stays in force."))
	if err != nil {
		return nil, fmt.Errorf("certs: %s counter: %w", RejectedMetric, err)
	}
	return counter, nil
}

func rejectedAttrs(reason string) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("reason", reason)}
}
