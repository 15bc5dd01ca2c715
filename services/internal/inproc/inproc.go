package inproc

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	ordersv1 "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
)

// InventoryClient returns a client whose calls go straight to srv. Call
// options are ignored.
func InventoryClient(srv inventoryv1.InventoryServiceServer) inventoryv1.InventoryServiceClient {
	return inventoryClient{srv}
}

type inventoryClient struct {
	srv inventoryv1.InventoryServiceServer
}

func (c inventoryClient) ListProducts(ctx context.Context, in *inventoryv1.ListProductsRequest, _ ...grpc.CallOption) (*inventoryv1.ListProductsResponse, error) {
	return c.srv.ListProducts(ctx, in)
}

func (c inventoryClient) Reserve(ctx context.Context, in *inventoryv1.ReserveRequest, _ ...grpc.CallOption) (*inventoryv1.ReserveResponse, error) {
	return c.srv.Reserve(ctx, in)
}

func (c inventoryClient) Release(ctx context.Context, in *inventoryv1.ReleaseRequest, _ ...grpc.CallOption) (*inventoryv1.ReleaseResponse, error) {
	return c.srv.Release(ctx, in)
}

func (c inventoryClient) Restock(ctx context.Context, in *inventoryv1.RestockRequest, _ ...grpc.CallOption) (*inventoryv1.RestockResponse, error) {
	return c.srv.Restock(ctx, in)
}

// OrdersClient returns a client whose calls go straight to srv. A WatchOrder
// stream runs srv.WatchOrder in a goroutine that ends when the server method
// returns, which it does when ctx is cancelled. Call options are ignored.
func OrdersClient(srv ordersv1.OrderServiceServer) ordersv1.OrderServiceClient {
	return ordersClient{srv}
}

type ordersClient struct{ srv ordersv1.OrderServiceServer }

func (c ordersClient) CreateOrder(ctx context.Context, in *ordersv1.CreateOrderRequest, _ ...grpc.CallOption) (*ordersv1.CreateOrderResponse, error) {
	return c.srv.CreateOrder(ctx, in)
}

func (c ordersClient) GetOrder(ctx context.Context, in *ordersv1.GetOrderRequest, _ ...grpc.CallOption) (*ordersv1.GetOrderResponse, error) {
	return c.srv.GetOrder(ctx, in)
}

func (c ordersClient) WatchOrder(ctx context.Context, in *ordersv1.WatchOrderRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[ordersv1.WatchOrderResponse], error) {
	return serverStreaming(ctx, func(stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
		return c.srv.WatchOrder(in, stream)
	}), nil
}

// serverStreaming runs handler against an in-memory stream and returns the
// client's end of it.
func serverStreaming[T any](ctx context.Context, handler func(grpc.ServerStreamingServer[T]) error) grpc.ServerStreamingClient[T] {
	p := &pipe[T]{ctx: ctx, msgs: make(chan *T), done: make(chan struct{})}
	go func() {
		p.err = handler(serverEnd[T]{p})
		close(p.done)
	}()
	return clientEnd[T]{p}
}

// pipe carries one stream's messages. msgs is unbuffered, so once done is
// closed no message is left in flight.
type pipe[T any] struct {
	ctx  context.Context
	msgs chan *T
	done chan struct{}
	err  error // the handler's result; read only after done is closed
}

type serverEnd[T any] struct{ p *pipe[T] }

func (s serverEnd[T]) Send(m *T) error {
	select {
	case s.p.msgs <- m:
		return nil
	case <-s.p.ctx.Done():
		return s.p.ctx.Err()
	}
}

func (s serverEnd[T]) SendMsg(m any) error {
	t, ok := m.(*T)
	if !ok {
		return errors.New("inproc: SendMsg of the wrong type")
	}
	return s.Send(t)
}

func (s serverEnd[T]) Context() context.Context   { return s.p.ctx }
func (serverEnd[T]) SetHeader(metadata.MD) error  { return nil }
func (serverEnd[T]) SendHeader(metadata.MD) error { return nil }
func (serverEnd[T]) SetTrailer(metadata.MD)       {}
func (serverEnd[T]) RecvMsg(any) error            { return errors.New("inproc: RecvMsg on a server stream") }

type clientEnd[T any] struct{ p *pipe[T] }

func (c clientEnd[T]) Context() context.Context   { return c.p.ctx }
func (clientEnd[T]) Header() (metadata.MD, error) { return nil, nil }
func (clientEnd[T]) Trailer() metadata.MD         { return nil }
func (clientEnd[T]) CloseSend() error             { return nil }
func (clientEnd[T]) SendMsg(any) error {
	return errors.New("inproc: SendMsg on a server stream's client")
}

// Recv returns the next message, io.EOF after the handler returned nil, or
// the handler's error.
func (c clientEnd[T]) Recv() (*T, error) {
	select {
	case m := <-c.p.msgs:
		return m, nil
	case <-c.p.done:
		if c.p.err == nil {
			return nil, io.EOF
		}
		return nil, c.p.err
	}
}

func (c clientEnd[T]) RecvMsg(m any) error {
	got, err := c.Recv()
	if err != nil {
		return err
	}
	dst, ok := m.(proto.Message)
	src, ok2 := any(got).(proto.Message)
	if !ok || !ok2 {
		return errors.New("inproc: RecvMsg needs protobuf messages")
	}
	proto.Reset(dst)
	proto.Merge(dst, src)
	return nil
}
