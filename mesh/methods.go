package mesh

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/trustmesh/trustmesh/policy"
)

// ConnectStandardMethods returns the methods a [ConnectServer] serves
// besides its mounted services: health (grpchealth) and reflection v1 and
// v1alpha. Each needs an allow rule like any other method.
func ConnectStandardMethods() []string {
	return []string{
		"/grpc.health.v1.Health/Check",
		"/grpc.health.v1.Health/Watch",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
	}
}

// GRPCStandardMethods returns the methods a [GRPCServer] serves besides its
// registered services: those of [ConnectStandardMethods] and grpc-go
// health's List.
func GRPCStandardMethods() []string {
	out := append(ConnectStandardMethods(), "/grpc.health.v1.Health/List")
	slices.Sort(out)
	return out
}

// ServiceMethods returns the full names ("/pkg.Service/Method") of the
// methods of the named protobuf services, read from the registered
// descriptors (linking a service's generated code registers them). A name
// that is not a registered service is an error.
func ServiceMethods(services ...string) ([]string, error) {
	var out []string
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			return nil, fmt.Errorf("mesh: service %s: no descriptor registered: %w", name, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, fmt.Errorf("mesh: %s is not a service", name)
		}
		out = append(out, policy.MethodNames(sd)...)
	}
	return out, nil
}

// AllowStandardMethods returns a policy of one allow rule,
// "mesh:standard-methods", that lets the callers matching from (caller
// patterns, see the policy package) call health and reflection — every
// method of [GRPCStandardMethods], which a [ConnectServer] serves a subset
// of. Merge it with a policy file ([policy.Merge], or [policy.WithBase] for
// a watcher) so that the server's own methods are covered without spelling
// out the four reflection and health paths; use [WithoutReflection] to
// serve no reflection at all.
func AllowStandardMethods(from ...string) policy.Policy {
	return policy.Policy{Rules: []policy.Rule{{
		Name:   "mesh:standard-methods",
		Effect: policy.Allow,
		From:   append([]string(nil), from...),
		To:     GRPCStandardMethods(),
		Source: "mesh.AllowStandardMethods",
	}}}
}
