// Package meshtest serves the sample mesh's services over the mesh's real
// mutual TLS on loopback, for their tests: servers built by mesh.NewGRPCServer
// and mesh.NewConnectServer with SVIDs from a throwaway PKI, and clients
// built by mesh.DialGRPC and mesh.NewHTTPClient that present a caller's SVID
// and expect the server's SPIFFE ID.
//
//	m := meshtest.New(t)
//	log := meshtest.NewLog()
//	addr := m.ServeGRPC(meshtest.Inventory, func(r grpc.ServiceRegistrar) {
//		inventoryv1.RegisterInventoryServiceServer(r, impl)
//	}, mesh.WithLogger(log.Logger))
//	conn := m.DialGRPC(addr, meshtest.Orders, meshtest.Inventory)
//
// Servers let any member of the trust domain call any method: these tests
// are about what the services answer; policy is tested with mesh/ and
// services/shop. Transaction tokens work as in the sample mesh: a server
// served as [Gateway] is the edge and mints a token for each call, for its
// caller; every other server verifies the token a call carries (the
// gateway's SVIDs are the only minters), refuses a call whose token does
// not verify, and puts the verified token in the handler's context. A test
// that calls a service as the gateway does passes [Mesh.OnBehalfOf]'s
// context (a token minted for a subject), which mesh clients forward.
//
//	ctx := m.OnBehalfOf(t.Context(), meshtest.Alice)
//	_, err := orders.CreateOrder(ctx, req) // placed for alice
//
// Clients
// accept response headers of at most [MaxHeaderBytes], as Python grpcio
// does, so an oversized grpc-message fails the call as it would there.
// Everything is stopped and closed when the test ends; every helper fails
// the test (t.Fatal) rather than returning an error.
package meshtest
