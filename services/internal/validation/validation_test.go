package validation_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	"github.com/trustmesh/trustmesh/gen/shop/gateway/v1/gatewayv1connect"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	moneyv1 "github.com/trustmesh/trustmesh/gen/shop/money/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	paymentsv1 "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/gen/shop/payments/v1/paymentsv1connect"
	"github.com/trustmesh/trustmesh/interceptors"
	"github.com/trustmesh/trustmesh/mesh"
	"github.com/trustmesh/trustmesh/policy"
	"github.com/trustmesh/trustmesh/services/internal/input"
	"github.com/trustmesh/trustmesh/services/internal/meshtest"
	"github.com/trustmesh/trustmesh/services/internal/validation"
)

const testTimeout = 10 * time.Second

// maxMessage bounds the message of a refused request, whatever it holds:
// far below any client's header limit (16 KiB for grpcio).
const maxMessage = 256

// grpcOption is validation.GRPC, failing the test if it fails.
func grpcOption(t *testing.T) mesh.GRPCServerOption {
	t.Helper()
	o, err := validation.GRPC()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// connectOption is validation.Connect, failing the test if it fails.
func connectOption(t *testing.T) mesh.ConnectServerOption {
	t.Helper()
	o, err := validation.Connect()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// Every rule of the sample's protos compiles, once for the process.
func TestRulesCompile(t *testing.T) {
	t.Parallel()
	v1, err := validation.Validator()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := validation.Validator()
	if err != nil || v1 != v2 {
		t.Fatalf("second Validator() = %v, %v; want the same validator", v2, err)
	}
}

// Every ID and name that a request of the sample's services carries, at any
// depth, is declared 1 to input.MaxIDBytes bytes (at most that for an
// optional one), so that adding an ID field without its bound fails here.
func TestEveryRequestIDIsBounded(t *testing.T) {
	t.Parallel()
	optional := map[protoreflect.FullName]bool{ // customers come from the verified caller (gateway) or subject (orders)
		"shop.gateway.v1.PlaceOrderRequest.customer_id": true, "shop.gateway.v2.PlaceOrderRequest.customer_id": true,
		"shop.orders.v1.CreateOrderRequest.customer_id": true,
	}
	checked := 0
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] || md.ParentFile().Package() == "google.protobuf" {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			if fd.Message() != nil {
				walk(fd.Message())
				continue
			}
			name := string(fd.Name())
			if fd.Kind() != protoreflect.StringKind || (name != "id" && name != "name" && !strings.HasSuffix(name, "_id")) {
				continue
			}
			checked++
			rules, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
			if got := rules.GetString().GetMaxBytes(); got != input.MaxIDBytes {
				t.Errorf("%s: string.max_bytes = %d, want %d", fd.FullName(), got, input.MaxIDBytes)
			}
			if required := rules.GetRequired(); required == optional[fd.FullName()] {
				t.Errorf("%s: required = %v, want %v", fd.FullName(), required, !required)
			}
		}
	}
	for _, f := range validation.Files {
		for i := range f.Services().Len() {
			methods := f.Services().Get(i).Methods()
			for j := range methods.Len() {
				walk(methods.Get(j).Input())
			}
		}
	}
	walk((&inventoryv1.Product{}).ProtoReflect().Descriptor()) // the catalogue, checked by inventory.New
	if checked < 20 {
		t.Fatalf("checked %d ID fields, want every one of the sample's (20 or more)", checked)
	}
}

// stubInventory answers every call it gets, so that a refused one shows
// the handler was never reached.
type stubInventory struct {
	inventoryv1.UnimplementedInventoryServiceServer
	calls atomic.Int64
}

func (s *stubInventory) Reserve(context.Context, *inventoryv1.ReserveRequest) (*inventoryv1.ReserveResponse, error) {
	s.calls.Add(1)
	return &inventoryv1.ReserveResponse{}, nil
}

// stubOrders streams one empty message to every WatchOrder.
type stubOrders struct {
	ordersv1.UnimplementedOrderServiceServer
	calls atomic.Int64
}

func (s *stubOrders) WatchOrder(_ *ordersv1.WatchOrderRequest, stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	s.calls.Add(1)
	return stream.Send(&ordersv1.WatchOrderResponse{})
}

// stubPayments charges everything.
type stubPayments struct {
	paymentsv1connect.UnimplementedPaymentServiceHandler
	calls atomic.Int64
}

func (s *stubPayments) Charge(context.Context, *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	s.calls.Add(1)
	return connect.NewResponse(&paymentsv1.ChargeResponse{}), nil
}

// stubStorefront streams one empty message to every WatchOrder.
type stubStorefront struct {
	gatewayv1connect.UnimplementedStorefrontServiceHandler
	calls atomic.Int64
}

func (s *stubStorefront) WatchOrder(_ context.Context, _ *connect.Request[gatewayv1.WatchOrderRequest], stream *connect.ServerStream[gatewayv1.WatchOrderResponse]) error {
	s.calls.Add(1)
	return stream.Send(&gatewayv1.WatchOrderResponse{})
}

// violation is what a refused call reports: its code and message, and the
// one Violation of its details.
type violation struct {
	code    codes.Code
	message string
	field   string // protovalidate.FieldPathString of the violation's field
	rule    string // the same of its rule path
	ruleID  string
}

func (v violation) String() string {
	return fmt.Sprintf("%v %q field=%s rule=%s id=%s", v.code, v.message, v.field, v.rule, v.ruleID)
}

func fromViolations(t *testing.T, code codes.Code, msg string, details []any) violation {
	t.Helper()
	got := violation{code: code, message: msg}
	var all []*validate.Violations
	for _, d := range details {
		if vs, ok := d.(*validate.Violations); ok {
			all = append(all, vs)
		}
	}
	if len(all) != 1 || len(all[0].GetViolations()) != 1 {
		t.Fatalf("%v %.300q: details %v, want one buf.validate.Violations of one violation", code, msg, details)
	}
	v := all[0].GetViolations()[0]
	got.field, got.rule, got.ruleID = protovalidate.FieldPathString(v.GetField()), protovalidate.FieldPathString(v.GetRule()), v.GetRuleId()
	return got
}

func grpcViolation(t *testing.T, err error) violation {
	t.Helper()
	st := status.Convert(err)
	return fromViolations(t, st.Code(), st.Message(), st.Details())
}

func connectViolation(t *testing.T, err error) violation {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %.300v, want a connect error", err)
	}
	var details []any
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			t.Fatalf("detail %s: %v", d.Type(), derr)
		}
		details = append(details, v)
	}
	return fromViolations(t, codes.Code(ce.Code()), ce.Message(), details) // the two code sets number their codes identically
}

var (
	long      = strings.Repeat("x", 1<<20)
	maxBytes  = violation{code: codes.InvalidArgument, message: "validation error: order_id: must be at most 128 bytes", field: "order_id", rule: "string.max_bytes", ruleID: "string.max_bytes"}
	required  = violation{code: codes.InvalidArgument, message: "validation error: order_id: value is required", field: "order_id", rule: "required", ruleID: "required"}
	quantity1 = violation{code: codes.InvalidArgument, message: "validation error: items[1].quantity: must be greater than 0", field: "items[1].quantity", rule: "int32.gt", ruleID: "int32.gt"}
)

// On grpc-go, a request that breaks a rule of its proto is refused with
// InvalidArgument, protovalidate's message and one Violation detail naming
// the field path and the rule, before the handler (unary and server
// stream); a 1 MB ID and a request with many bad items get the same short
// message; a valid request reaches the handler.
func TestGRPCRefusesInvalidRequests(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	inv, ord := &stubInventory{}, &stubOrders{}
	addr := m.ServeGRPC(meshtest.Inventory, func(r grpc.ServiceRegistrar) {
		inventoryv1.RegisterInventoryServiceServer(r, inv)
		ordersv1.RegisterOrderServiceServer(r, ord)
	}, grpcOption(t))
	conn := m.DialGRPC(addr, meshtest.Orders, meshtest.Inventory)
	invClient, ordClient := inventoryv1.NewInventoryServiceClient(conn), ordersv1.NewOrderServiceClient(conn)
	many := []*inventoryv1.StockItem{{ProductId: "sku-apple", Quantity: 1}}
	for i := range 10_000 {
		many = append(many, &inventoryv1.StockItem{ProductId: fmt.Sprintf("p%d", i), Quantity: 0})
	}
	testCases := []struct {
		name string
		req  *inventoryv1.ReserveRequest
		want violation
	}{
		{"1 MB order_id", &inventoryv1.ReserveRequest{OrderId: long, Items: many[:1]}, maxBytes},
		{"no order_id", &inventoryv1.ReserveRequest{Items: many[:1]}, required},
		{"10,000 bad quantities", &inventoryv1.ReserveRequest{OrderId: "o1", Items: many}, quantity1},
		{"same product twice", &inventoryv1.ReserveRequest{OrderId: "o1", Items: []*inventoryv1.StockItem{many[0], many[0]}},
			violation{code: codes.InvalidArgument, message: "validation error: items: must list each product at most once", field: "items", rule: "cel[0]", ruleID: "items.unique_products"}},
	}
	for _, tc := range testCases {
		t.Run("Reserve/"+tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			_, err := invClient.Reserve(ctx, tc.req)
			if got := grpcViolation(t, err); got != tc.want {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
			if n := len(status.Convert(err).Message()); n > maxMessage {
				t.Fatalf("message of %d bytes, want at most %d", n, maxMessage)
			}
		})
	}
	t.Run("WatchOrder/1 MB order_id", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		stream, err := ordClient.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: long})
		for err == nil {
			_, err = stream.Recv()
		}
		if got := grpcViolation(t, err); got != maxBytes {
			t.Fatalf("got  %v\nwant %v", got, maxBytes)
		}
	})
	if n := inv.calls.Load() + ord.calls.Load(); n != 0 {
		t.Fatalf("the handlers were called %d times, want never", n)
	}

	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if _, err := invClient.Reserve(ctx, &inventoryv1.ReserveRequest{OrderId: strings.Repeat("o", input.MaxIDBytes), Items: many[:1]}); err != nil {
		t.Fatalf("valid Reserve: %v", err)
	}
	stream, err := ordClient.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: "o1"})
	if err == nil {
		if _, err = stream.Recv(); err == nil {
			_, err = stream.Recv()
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("valid WatchOrder ended with %v, want one message and the end", err)
	}
	if n := inv.calls.Load() + ord.calls.Load(); n != 2 {
		t.Fatalf("the handlers were called %d times, want 2", n)
	}
}

// On connect-go, the same: on Connect and gRPC, unary and server stream,
// with the field path and rule in the error details.
func TestConnectRefusesInvalidRequests(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	pay, shop := &stubPayments{}, &stubStorefront{}
	addr := m.ServeConnect(meshtest.Payments, func(cs *mesh.ConnectServer) error {
		if err := mesh.Mount(cs, paymentsv1connect.NewPaymentServiceHandler, pay); err != nil {
			return err
		}
		return mesh.Mount(cs, gatewayv1connect.NewStorefrontServiceHandler, shop)
	}, connectOption(t))
	hc := m.HTTPClient(meshtest.Orders, meshtest.Payments)
	eur := func(minor int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", UnitsMinor: minor} }
	for _, protocol := range []struct {
		name string
		opts []connect.ClientOption
	}{{"connect", nil}, {"grpc", []connect.ClientOption{connect.WithGRPC()}}} {
		payClient := paymentsv1connect.NewPaymentServiceClient(hc, "https://"+addr, protocol.opts...)
		shopClient := gatewayv1connect.NewStorefrontServiceClient(hc, "https://"+addr, protocol.opts...)
		testCases := []struct {
			name string
			req  *paymentsv1.ChargeRequest
			want violation
		}{
			{"1 MB order_id", &paymentsv1.ChargeRequest{OrderId: long, Amount: eur(1)}, maxBytes},
			{"no amount", &paymentsv1.ChargeRequest{OrderId: "o1"},
				violation{code: codes.InvalidArgument, message: "validation error: amount: value is required", field: "amount", rule: "required", ruleID: "required"}},
			{"zero amount", &paymentsv1.ChargeRequest{OrderId: "o1", Amount: eur(0)},
				violation{code: codes.InvalidArgument, message: "validation error: amount: units_minor must be positive", field: "amount", rule: "cel[0]", ruleID: "amount.positive"}},
			{"lower-case currency", &paymentsv1.ChargeRequest{OrderId: "o1", Amount: &moneyv1.Money{CurrencyCode: "eur", UnitsMinor: 1}},
				violation{code: codes.InvalidArgument, message: "validation error: amount.currency_code: does not match regex pattern `^[A-Z]{3}$`", field: "amount.currency_code", rule: "string.pattern", ruleID: "string.pattern"}},
		}
		for _, tc := range testCases {
			t.Run(protocol.name+"/Charge/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
				defer cancel()
				_, err := payClient.Charge(ctx, connect.NewRequest(tc.req))
				if got := connectViolation(t, err); got != tc.want {
					t.Fatalf("got  %v\nwant %v", got, tc.want)
				}
			})
		}
		t.Run(protocol.name+"/WatchOrder/1 MB order_id", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			stream, err := shopClient.WatchOrder(ctx, connect.NewRequest(&gatewayv1.WatchOrderRequest{OrderId: long}))
			if err == nil {
				for stream.Receive() {
				}
				err = stream.Err()
			}
			if got := connectViolation(t, err); got != maxBytes {
				t.Fatalf("got  %v\nwant %v", got, maxBytes)
			}
		})
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		if _, err := payClient.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{OrderId: "o1", Amount: eur(1)})); err != nil {
			t.Fatalf("%s: valid Charge: %v", protocol.name, err)
		}
		cancel()
	}
	if n, want := pay.calls.Load(), int64(2); n != want || shop.calls.Load() != 0 {
		t.Fatalf("Charge was called %d times, WatchOrder %d; want %d (the valid ones) and 0", n, shop.calls.Load(), want)
	}
}

// Validation runs after authorization: a caller the policy denies gets
// PermissionDenied for an invalid request too, on both stacks, and never
// learns what is wrong with it.
func TestValidationRunsAfterAuthorization(t *testing.T) {
	t.Parallel()
	m := meshtest.New(t)
	engine, err := policy.Compile(policy.Policy{Rules: []policy.Rule{
		{Name: "orders-reserve", Effect: policy.Allow, From: []string{meshtest.Orders}, To: []string{"/shop.inventory.v1.InventoryService/Reserve"}},
		{Name: "orders-charge", Effect: policy.Allow, From: []string{meshtest.Orders}, To: []string{"/shop.payments.v1.PaymentService/Charge"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := interceptors.NewAuthorizer(engine)
	if err != nil {
		t.Fatal(err)
	}
	grpcSrv, err := mesh.NewGRPCServer(m.Credentials(meshtest.Inventory), mesh.WithAuthorizer(authz), mesh.WithCoverageWarnings(), grpcOption(t))
	if err != nil {
		t.Fatal(err)
	}
	inventoryv1.RegisterInventoryServiceServer(grpcSrv, &stubInventory{})
	grpcAddr := serve(t, grpcSrv.Serve)
	connectSrv, err := mesh.NewConnectServer(m.Credentials(meshtest.Payments), mesh.WithAuthorizer(authz), mesh.WithCoverageWarnings(), connectOption(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := mesh.Mount(connectSrv, paymentsv1connect.NewPaymentServiceHandler, &stubPayments{}); err != nil {
		t.Fatal(err)
	}
	connectAddr := serve(t, connectSrv.Serve)

	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	bad := &inventoryv1.ReserveRequest{OrderId: long}
	badCharge := &paymentsv1.ChargeRequest{OrderId: long}
	for _, caller := range []struct {
		id   string
		want codes.Code
	}{{meshtest.Gateway, codes.PermissionDenied}, {meshtest.Orders, codes.InvalidArgument}} {
		_, err := inventoryv1.NewInventoryServiceClient(m.DialGRPC(grpcAddr, caller.id, meshtest.Inventory)).Reserve(ctx, bad)
		if got := status.Code(err); got != caller.want {
			t.Errorf("grpc-go: %s: Reserve(invalid) = %v, want %v", caller.id, err, caller.want)
		}
		client := paymentsv1connect.NewPaymentServiceClient(m.HTTPClient(caller.id, meshtest.Payments), "https://"+connectAddr)
		_, err = client.Charge(ctx, connect.NewRequest(badCharge))
		if got := codes.Code(connect.CodeOf(err)); got != caller.want {
			t.Errorf("connect-go: %s: Charge(invalid) = %v, want %v", caller.id, err, caller.want)
		}
	}
}

// serve serves until the test ends and returns the address.
func serve(t *testing.T, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve %s: %v", ln.Addr(), err)
		}
	})
	return ln.Addr().String()
}

// The vendored proto/buf/validate/validate.proto, which buf compiles the
// rules against, was printed from the protovalidate Go package of the
// version this module enforces them with, as go.mod selects it
// (tools/protovalidateproto checks that the file is that package's
// descriptor).
func TestVendoredSchemaIsTheEnforcedOne(t *testing.T) {
	t.Parallel()
	const module = "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go"
	root := filepath.Join("..", "..", "..")
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var version string
	for line := range strings.Lines(string(gomod)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == module {
			version = f[1]
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "proto", "buf", "validate", "validate.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "// the Go module " + module + " " + version + "\n"; version == "" || !strings.Contains(string(b), want) {
		t.Fatalf("validate.proto does not say it comes from %s %q, the version go.mod requires: run `make protovalidate-proto`", module, version)
	}
}
