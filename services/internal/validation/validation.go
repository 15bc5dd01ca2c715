package validation

import (
	"fmt"
	"sync"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"connectrpc.com/validate"
	grpcvalidate "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	gatewayv1 "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	gatewayv2 "github.com/trustmesh/trustmesh/gen/shop/gateway/v2"
	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	moneyv1 "github.com/trustmesh/trustmesh/gen/shop/money/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	paymentsv1 "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/mesh"
)

// Files are the sample mesh's proto files, whose messages' rules [Validator]
// compiles when it is built.
var Files = []protoreflect.FileDescriptor{
	gatewayv1.File_shop_gateway_v1_gateway_proto,
	gatewayv2.File_shop_gateway_v2_gateway_proto,
	inventoryv1.File_shop_inventory_v1_inventory_proto,
	moneyv1.File_shop_money_v1_money_proto,
	ordersv1.File_shop_orders_v1_orders_proto,
	paymentsv1.File_shop_payments_v1_payments_proto,
}

// validator is built once, on first use, and shared by every server of the
// process (protovalidate caches each message type's compiled rules).
var validator = sync.OnceValues(func() (protovalidate.Validator, error) {
	var msgs []protoreflect.MessageDescriptor
	for _, f := range Files {
		for i := range f.Messages().Len() {
			msgs = append(msgs, f.Messages().Get(i))
		}
	}
	v, err := protovalidate.New(
		// One violation, not all: the message of a request with a
		// million bad items stays one short line.
		protovalidate.WithFailFast(),
		// Compile every rule of the sample's messages now, so that a rule
		// that does not compile fails here rather than on a call.
		// Messages of other files (health, reflection) are compiled on
		// first use; they have no rules.
		protovalidate.WithMessageDescriptors(msgs...),
	)
	if err != nil {
		return nil, fmt.Errorf("validation: compile the rules of the shop protos: %w", err)
	}
	return v, nil
})

// Validator returns the protovalidate validator the interceptors use, built
// once per process: it stops at the first violation and has compiled the
// rules of every message of [Files]. The error says which rule does not
// compile; it is the same on every call.
func Validator() (protovalidate.Validator, error) { return validator() }

// GRPC returns the option that validates every request message a mesh
// grpc-go server receives (unary requests, and each message of a stream)
// with go-grpc-middleware's protovalidate interceptors, after
// authorization and before the handler. A violation is InvalidArgument
// with a buf.validate.Violations detail. It fails only if [Validator] does.
func GRPC() (mesh.GRPCServerOption, error) {
	v, err := validator()
	if err != nil {
		return nil, err
	}
	return mesh.WithGRPCInterceptors(
		[]grpc.UnaryServerInterceptor{grpcvalidate.UnaryServerInterceptor(v)},
		[]grpc.StreamServerInterceptor{grpcvalidate.StreamServerInterceptor(v)},
	), nil
}

// Connect returns the option that validates every request message a mesh
// connect-go server receives, whatever the protocol (gRPC, gRPC-Web,
// Connect POST or GET), with connectrpc.com/validate's interceptor, after
// authorization and before the handler. A violation is
// CodeInvalidArgument with a buf.validate.Violations detail. It fails only
// if [Validator] does.
func Connect() (mesh.ConnectServerOption, error) {
	opt, err := ConnectHandlerOption()
	if err != nil {
		return nil, err
	}
	return mesh.WithConnectHandlerOptions(opt), nil
}

// ConnectHandlerOption is [Connect] as a connect-go handler option, for a
// handler built outside a mesh server or given to one service only
// (mesh.Mount takes handler options).
func ConnectHandlerOption() (connect.HandlerOption, error) {
	v, err := validator()
	if err != nil {
		return nil, err
	}
	return connect.WithInterceptors(validate.NewInterceptor(validate.WithValidator(v))), nil
}
