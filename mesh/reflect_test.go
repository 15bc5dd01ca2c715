package mesh_test

import (
	"context"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"

	// Linked but not served: reflection must not tell of it.
	_ "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	"github.com/trustmesh/trustmesh/internal/testpki"
	"github.com/trustmesh/trustmesh/mesh"
)

// TestReflectionTellsOnlyWhatIsServed: a server's reflection lists and
// describes the services it serves (and the files they import), not the
// other services whose generated code the binary happens to link. Before,
// `grpcurl describe shop.inventory.v1.InventoryService` against the
// gateway returned the whole service and its access rules.
func TestReflectionTellsOnlyWhatIsServed(t *testing.T) {
	t.Parallel()
	for _, st := range greetStacks {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			pki := testpki.New(t, "example.org")
			addr := st.serve(t, mesh.Credentials{SVID: pki.SVID(t, greeterID), Bundles: pki.Bundle()}, mesh.WithoutAuthorization())
			conn, err := mesh.DialGRPC(addr, mesh.Credentials{SVID: pki.SVID(t, friendID), Bundles: pki.Bundle()}, spiffeid.RequireFromString(greeterID))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ask := func(req *reflectionv1.ServerReflectionRequest) *reflectionv1.ServerReflectionResponse {
				t.Helper()
				if err := stream.Send(req); err != nil {
					t.Fatal(err)
				}
				resp, err := stream.Recv()
				if err != nil {
					t.Fatal(err)
				}
				return resp
			}

			list := ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
			var names []string
			for _, s := range list.GetListServicesResponse().GetService() {
				names = append(names, s.GetName())
			}
			if !slices.Contains(names, "greet.v1.GreetService") || slices.Contains(names, "shop.inventory.v1.InventoryService") {
				t.Errorf("ListServices = %v, want greet.v1.GreetService and no shop service", names)
			}

			served := ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "greet.v1.GreetService"}})
			if len(served.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
				t.Errorf("FileContainingSymbol(greet.v1.GreetService) = %v, want its file", served)
			}
			for _, req := range []*reflectionv1.ServerReflectionRequest{
				{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "shop.inventory.v1.InventoryService"}},
				{MessageRequest: &reflectionv1.ServerReflectionRequest_FileByFilename{FileByFilename: "shop/inventory/v1/inventory.proto"}},
			} {
				resp := ask(req)
				if e := resp.GetErrorResponse(); e == nil || codes.Code(e.GetErrorCode()) != codes.NotFound {
					t.Errorf("%v: got %v, want NotFound", req.GetMessageRequest(), resp.GetMessageResponse())
				}
			}
		})
	}
}
