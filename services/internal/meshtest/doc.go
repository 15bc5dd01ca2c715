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
// Servers run without per-method authorization (mesh.WithoutAuthorization:
// any member of the trust domain may call): these tests are about what the
// services answer; policy is tested with mesh/ and services/shop. Clients
// accept response headers of at most [MaxHeaderBytes], as Python grpcio
// does, so an oversized grpc-message fails the call as it would there.
// Everything is stopped and closed when the test ends; every helper fails
// the test (t.Fatal) rather than returning an error.
package meshtest
