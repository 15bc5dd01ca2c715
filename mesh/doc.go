// Package mesh wires trustmesh together: mutual-TLS servers for grpc-go and
// connect-go with identity and authorization of every call, health and
// reflection, and clients that present the workload's SVID and accept a
// server only by its expected SPIFFE ID. A server needs an authorizer
// ([WithAuthorizer]) or an explicit [WithoutAuthorization].
//
// Every server is TLS 1.3 only and requires a client certificate that
// verifies as an X.509-SVID against the trust bundle of an accepted trust
// domain. There is no plaintext mode.
//
//	creds := mesh.Credentials{SVID: svid, Bundles: bundle}
//	file, err := policy.LoadFile("policy.yaml")
//	engine, err := policy.Compile(file)
//	authz, err := interceptors.NewAuthorizer(engine, interceptors.WithAuditLogger(log))
//	srv, err := mesh.NewGRPCServer(creds, mesh.WithAuthorizer(authz), mesh.WithLogger(log))
//	ordersv1.RegisterOrderServiceServer(srv, impl)
//	err = srv.Serve(ctx, ln) // returns after a graceful stop when ctx ends
package mesh
