package policy_test

import (
	"reflect"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	// The sample mesh's generated code registers its services, and with
	// them the trustmesh.v1 access options, in the global registries.
	_ "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	_ "github.com/trustmesh/trustmesh/gen/shop/gateway/v2"
	_ "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	_ "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	_ "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	trustmeshv1 "github.com/trustmesh/trustmesh/gen/trustmesh/v1"
	"github.com/trustmesh/trustmesh/policy"
)

const (
	gatewayID = "spiffe://shop.example/ns/shop/sa/gateway"
	ordersID  = "spiffe://shop.example/ns/shop/sa/orders"
	adminID   = "spiffe://shop.example/ns/ops/sa/admin"
)

var sampleServices = []string{
	"shop.gateway.v1.StorefrontService",
	"shop.gateway.v2.StorefrontService",
	"shop.orders.v1.OrderService",
	"shop.inventory.v1.InventoryService",
	"shop.payments.v1.PaymentService",
}

func protoRule(service, method, file string, from ...string) policy.Rule {
	return policy.Rule{
		Name:   "proto:" + service + "." + method,
		Effect: policy.Allow,
		From:   from,
		To:     []string{"/" + service + "/" + method},
		Source: "proto " + service + "." + method + " (" + file + ")",
	}
}

func TestFromServiceNamesSampleMesh(t *testing.T) {
	t.Parallel()
	p, err := policy.FromServiceNames(sampleServices...)
	if err != nil {
		t.Fatalf("FromServiceNames: %v", err)
	}
	const (
		orders    = "shop/orders/v1/orders.proto"
		inventory = "shop/inventory/v1/inventory.proto"
		payments  = "shop/payments/v1/payments.proto"
	)
	// The gateways are for people (policy.yaml); Restock and Refund are for
	// the operator (policy.yaml): none of them has proto rules.
	// Orders serves the gateway on behalf of people only (Access.subject).
	forUsers := func(r policy.Rule) policy.Rule {
		r.Subject = []string{"spiffe://shop.example/user/*"}
		return r
	}
	want := []policy.Rule{
		forUsers(protoRule("shop.orders.v1.OrderService", "CreateOrder", orders, gatewayID)),
		forUsers(protoRule("shop.orders.v1.OrderService", "GetOrder", orders, gatewayID)),
		forUsers(protoRule("shop.orders.v1.OrderService", "WatchOrder", orders, gatewayID)),
		protoRule("shop.inventory.v1.InventoryService", "ListProducts", inventory, gatewayID, ordersID),
		protoRule("shop.inventory.v1.InventoryService", "Reserve", inventory, ordersID),
		protoRule("shop.inventory.v1.InventoryService", "Release", inventory, ordersID),
		protoRule("shop.payments.v1.PaymentService", "Charge", payments, ordersID),
	}
	if !reflect.DeepEqual(p.Rules, want) {
		t.Fatalf("rules =\n%#v\nwant\n%#v", p.Rules, want)
	}
	if p.DryRun {
		t.Fatal("proto policy is in dry-run")
	}

	e, err := policy.Compile(p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	testCases := []struct {
		caller, method string
		want           policy.Decision
	}{
		// Without a subject the gateway's call to orders needs one.
		{gatewayID, "/shop.orders.v1.OrderService/WatchOrder", policy.Decision{Outcome: policy.Denied, Rule: "proto:shop.orders.v1.OrderService.WatchOrder", NeedSubject: true}},
		{ordersID, "/shop.orders.v1.OrderService/GetOrder", policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
		{ordersID, "/shop.inventory.v1.InventoryService/ListProducts", policy.Decision{Outcome: policy.Allowed, Rule: "proto:shop.inventory.v1.InventoryService.ListProducts"}},
		{gatewayID, "/shop.inventory.v1.InventoryService/Reserve", policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
		{ordersID, "/shop.inventory.v1.InventoryService/Restock", policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
		{ordersID, "/shop.payments.v1.PaymentService/Charge", policy.Decision{Outcome: policy.Allowed, Rule: "proto:shop.payments.v1.PaymentService.Charge"}},
		{ordersID, "/shop.payments.v1.PaymentService/Refund", policy.Decision{Outcome: policy.Denied, Rule: policy.DefaultRule}},
	}
	for _, tc := range testCases {
		if got := e.Decide(tc.method, spiffeid.RequireFromString(tc.caller)); got != tc.want {
			t.Errorf("Decide(%s, %s) = %+v, want %+v", tc.method, tc.caller, got, tc.want)
		}
	}
}

func TestFromServiceNamesNotFound(t *testing.T) {
	t.Parallel()
	_, err := policy.FromServiceNames("shop.orders.v1.OrderService", "shop.nope.v1.NopeService", "shop.orders.v1.Order")
	const want = `policy: service not found in the protobuf registry (is its generated package linked?): "shop.nope.v1.NopeService", "shop.orders.v1.Order"`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestFromServicesNil(t *testing.T) {
	t.Parallel()
	p, err := policy.FromServices()
	if err != nil || len(p.Rules) != 0 {
		t.Fatalf("FromServices() = %v, %v; want no rules", p, err)
	}
	if _, err := policy.FromServices(nil); err == nil || err.Error() != "policy: nil service descriptor" {
		t.Fatalf("FromServices(nil) error = %v", err)
	}
}

// access returns options of type O (ServiceOptions or MethodOptions) that
// carry the access extension xt with allow.
func access[O proto.Message](xt protoreflect.ExtensionType, allow ...string) O {
	var opts O
	opts = opts.ProtoReflect().Type().New().Interface().(O)
	proto.SetExtension(opts, xt, &trustmeshv1.Access{Allow: allow})
	return opts
}

// testService builds, at run time, the service test.v1.TestService in
// test/v1/test.proto with the given service options and one unary method
// per entry of methods (in order, named by the key of each pair).
func testService(t *testing.T, serviceOpts *descriptorpb.ServiceOptions, methods ...methodOpts) protoreflect.ServiceDescriptor {
	t.Helper()
	fdp := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("test/v1/test.proto"),
		Package:     proto.String("test.v1"),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Msg")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name:    proto.String("TestService"),
			Options: serviceOpts,
		}},
	}
	for _, m := range methods {
		fdp.Service[0].Method = append(fdp.Service[0].Method, &descriptorpb.MethodDescriptorProto{
			Name:       proto.String(m.name),
			InputType:  proto.String(".test.v1.Msg"),
			OutputType: proto.String(".test.v1.Msg"),
			Options:    m.opts,
		})
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatalf("protodesc.NewFile: %v", err)
	}
	return fd.Services().Get(0)
}

type methodOpts struct {
	name string
	opts *descriptorpb.MethodOptions
}

func testRule(method string, from ...string) policy.Rule {
	return protoRule("test.v1.TestService", method, "test/v1/test.proto", from...)
}

func TestFromServicesServiceAndMethodAccess(t *testing.T) {
	t.Parallel()
	sd := testService(t,
		access[*descriptorpb.ServiceOptions](trustmeshv1.E_ServiceAccess, gatewayID),
		methodOpts{"Inherits", nil},
		methodOpts{"Overrides", access[*descriptorpb.MethodOptions](trustmeshv1.E_MethodAccess, ordersID, adminID)},
		methodOpts{"OptsOut", access[*descriptorpb.MethodOptions](trustmeshv1.E_MethodAccess)},
		methodOpts{"OtherOptions", &descriptorpb.MethodOptions{Deprecated: proto.Bool(true)}},
	)
	p, err := policy.FromServices(sd)
	if err != nil {
		t.Fatalf("FromServices: %v", err)
	}
	want := []policy.Rule{
		testRule("Inherits", gatewayID),
		testRule("Overrides", ordersID, adminID),
		testRule("OtherOptions", gatewayID),
	}
	if !reflect.DeepEqual(p.Rules, want) {
		t.Fatalf("rules =\n%#v\nwant\n%#v", p.Rules, want)
	}
}

func TestFromServicesNoAccess(t *testing.T) {
	t.Parallel()
	sd := testService(t, nil, methodOpts{"A", nil}, methodOpts{"B", &descriptorpb.MethodOptions{}})
	p, err := policy.FromServices(sd)
	if err != nil || len(p.Rules) != 0 {
		t.Fatalf("FromServices = %v, %v; want no rules", p, err)
	}
}

// The options may hold the access value as a dynamicpb message (for
// example when they were parsed with a resolver built from a descriptor
// set) rather than as the generated type.
func TestFromServicesDynamicValue(t *testing.T) {
	t.Parallel()
	xt := dynamicpb.NewExtensionType(trustmeshv1.E_MethodAccess.TypeDescriptor().Descriptor())
	value := dynamicpb.NewMessage(xt.TypeDescriptor().Message())
	allow := value.Mutable(value.Descriptor().Fields().ByName("allow")).List()
	allow.Append(protoreflect.ValueOfString(ordersID))
	opts := &descriptorpb.MethodOptions{}
	opts.ProtoReflect().Set(xt.TypeDescriptor(), protoreflect.ValueOfMessage(value))

	p, err := policy.FromServices(testService(t, nil, methodOpts{"Dynamic", opts}))
	if err != nil {
		t.Fatalf("FromServices: %v", err)
	}
	if want := []policy.Rule{testRule("Dynamic", ordersID)}; !reflect.DeepEqual(p.Rules, want) {
		t.Fatalf("rules =\n%#v\nwant\n%#v", p.Rules, want)
	}
}

// Options parsed while the extension was not registered keep it in their
// unknown fields; FromServices parses them again with the registered type.
func TestFromServicesUnknownFields(t *testing.T) {
	t.Parallel()
	b, err := proto.Marshal(access[*descriptorpb.MethodOptions](trustmeshv1.E_MethodAccess, gatewayID, ordersID))
	if err != nil {
		t.Fatal(err)
	}
	opts := &descriptorpb.MethodOptions{}
	opts.ProtoReflect().SetUnknown(b)

	p, err := policy.FromServices(testService(t, nil, methodOpts{"Unknown", opts}))
	if err != nil {
		t.Fatalf("FromServices: %v", err)
	}
	if want := []policy.Rule{testRule("Unknown", gatewayID, ordersID)}; !reflect.DeepEqual(p.Rules, want) {
		t.Fatalf("rules =\n%#v\nwant\n%#v", p.Rules, want)
	}
}

func TestFromServicesInvalidPattern(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		name    string
		service *descriptorpb.ServiceOptions
		method  *descriptorpb.MethodOptions
		want    string
	}{
		{
			name:   "method bad trust domain",
			method: access[*descriptorpb.MethodOptions](trustmeshv1.E_MethodAccess, gatewayID, "spiffe://Shop.Example/ns/shop/sa/gateway"),
			want:   `policy: proto test.v1.TestService.Call (test/v1/test.proto): rule proto:test.v1.TestService.Call: caller "spiffe://Shop.Example/ns/shop/sa/gateway": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`,
		},
		{
			name:    "service not spiffe",
			service: access[*descriptorpb.ServiceOptions](trustmeshv1.E_ServiceAccess, "https://shop.example/gateway"),
			want:    `policy: proto test.v1.TestService.Call (test/v1/test.proto): rule proto:test.v1.TestService.Call: caller "https://shop.example/gateway": must start with spiffe://`,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.FromServices(testService(t, tc.service, methodOpts{"Call", tc.method}))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error = %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestFromServicesSubject: an access option's subject patterns become the
// rule's Subject, inherited from the service like its callers.
func TestFromServicesSubject(t *testing.T) {
	t.Parallel()
	opts := &descriptorpb.ServiceOptions{}
	proto.SetExtension(opts, trustmeshv1.E_ServiceAccess, &trustmeshv1.Access{Allow: []string{gatewayID}, Subject: []string{"spiffe://shop.example/user/*"}})
	sd := testService(t, opts, methodOpts{"ForUsers", nil})
	p, err := policy.FromServices(sd)
	if err != nil {
		t.Fatalf("FromServices: %v", err)
	}
	want := testRule("ForUsers", gatewayID)
	want.Subject = []string{"spiffe://shop.example/user/*"}
	if len(p.Rules) != 1 || !reflect.DeepEqual(p.Rules[0], want) {
		t.Fatalf("rules = %#v, want [%#v]", p.Rules, want)
	}
}
