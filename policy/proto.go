package policy

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The full names of the access options declared in
// proto/trustmesh/v1/access.proto. They are looked up by name in
// [protoregistry.GlobalTypes], so that this package works for anyone's
// protos without importing generated code: the options are registered when
// the program links code generated from a proto that imports access.proto.
const (
	serviceAccessName protoreflect.FullName = "trustmesh.v1.service_access"
	methodAccessName  protoreflect.FullName = "trustmesh.v1.method_access"
	// accessAllowField is the field of trustmesh.v1.Access that lists the
	// caller patterns.
	accessAllowField protoreflect.Name = "allow"
	// accessSubjectField lists the subject patterns (Rule.Subject).
	accessSubjectField protoreflect.Name = "subject"
)

// ProtoRulePrefix starts the name of every rule read from proto options:
// "proto:shop.orders.v1.OrderService.CreateOrder".
const ProtoRulePrefix = "proto:"

// FromServices reads the access options (trustmesh.v1.service_access and
// trustmesh.v1.method_access) of services into allow rules, one per method
// that has access: the method's own method_access, else its service's
// service_access. An empty method_access removes the service's access from
// that method, and a method with neither gets no rule (the policy file
// decides who may call it).
//
// A rule for method CreateOrder of shop.orders.v1.OrderService declared in
// shop/orders/v1/orders.proto is
//
//	Name:   proto:shop.orders.v1.OrderService.CreateOrder
//	Effect: Allow
//	From:   the allow patterns, in order
//	To:     /shop.orders.v1.OrderService/CreateOrder
//	Source: proto shop.orders.v1.OrderService.CreateOrder (shop/orders/v1/orders.proto)
//
// The rules follow the order of services and of their methods. The options
// are read through protoreflect, so the value may be the generated
// trustmesh.v1.Access or a dynamicpb message. If the options are not
// registered in [protoregistry.GlobalTypes] and not already parsed into the
// descriptors, there are no proto rules. An invalid caller pattern is an
// error naming the method and the pattern.
func FromServices(services ...protoreflect.ServiceDescriptor) (Policy, error) {
	return fromServices(protoregistry.GlobalTypes, services)
}

// FromServiceNames is [FromServices] for services named by full name
// ("shop.orders.v1.OrderService") and found in [protoregistry.GlobalFiles],
// where generated code registers them. The error names every name that is
// not a registered service.
func FromServiceNames(names ...string) (Policy, error) {
	services := make([]protoreflect.ServiceDescriptor, 0, len(names))
	var missing []string
	for _, n := range names {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(n))
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if err != nil || !ok {
			missing = append(missing, fmt.Sprintf("%q", n))
			continue
		}
		services = append(services, sd)
	}
	if len(missing) > 0 {
		return Policy{}, fmt.Errorf("policy: service not found in the protobuf registry (is its generated package linked?): %s", strings.Join(missing, ", "))
	}
	return FromServices(services...)
}

// extensionResolver finds an extension type by its full name; it is the
// part of [protoregistry.Types] that FromServices needs.
type extensionResolver interface {
	FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error)
	FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error)
}

func fromServices(types extensionResolver, services []protoreflect.ServiceDescriptor) (Policy, error) {
	serviceXT, _ := types.FindExtensionByName(serviceAccessName)
	methodXT, _ := types.FindExtensionByName(methodAccessName)
	var p Policy
	for _, sd := range services {
		if sd == nil {
			return Policy{}, errors.New("policy: nil service descriptor")
		}
		serviceAccess, serviceHas, err := readAccess(types, sd.Options(), serviceXT, serviceAccessName)
		if err != nil {
			return Policy{}, fmt.Errorf("policy: proto %s (%s): %w", sd.FullName(), sd.ParentFile().Path(), err)
		}
		methods, names := sd.Methods(), MethodNames(sd)
		for i := range methods.Len() {
			md := methods.Get(i)
			source := fmt.Sprintf("proto %s (%s)", md.FullName(), md.ParentFile().Path())
			name := ProtoRulePrefix + string(md.FullName())
			acc, has, err := readAccess(types, md.Options(), methodXT, methodAccessName)
			if err != nil {
				return Policy{}, fmt.Errorf("policy: %s: rule %s: %w", source, name, err)
			}
			if !has {
				acc, has = serviceAccess, serviceHas
			}
			if !has || len(acc.allow) == 0 {
				continue
			}
			r := Rule{
				Name:   name,
				Effect: Allow,
				From:   append([]string(nil), acc.allow...),
				To:     []string{names[i]},
				Source: source,
			}
			if len(acc.subject) > 0 {
				r.Subject = append([]string(nil), acc.subject...)
			}
			if _, err := checkRule(r); err != nil {
				return Policy{}, fmt.Errorf("policy: %s: rule %s: %w", source, name, err)
			}
			p.Rules = append(p.Rules, r)
		}
	}
	return p, nil
}

// access is what an Access option says.
type access struct {
	allow   []string // Access.allow
	subject []string // Access.subject (absent from older descriptors)
}

// readAccess returns the access option xt (named name) in opts, and whether
// opts set it. A nil xt means the option is not
// registered; it is then found only if opts already hold it as an extension
// field (parsed with another resolver).
func readAccess(types extensionResolver, opts proto.Message, xt protoreflect.ExtensionType, name protoreflect.FullName) (access, bool, error) {
	if opts == nil {
		return access{}, false, nil
	}
	m := opts.ProtoReflect()
	if !m.IsValid() {
		return access{}, false, nil
	}
	fd := extensionField(m, name)
	if fd == nil && xt != nil && len(m.GetUnknown()) > 0 {
		// The options were parsed before the extension was registered (or
		// without a resolver), so it sits in the unknown fields: parse
		// those again, now that it is known.
		fresh := m.New()
		err := proto.UnmarshalOptions{AllowPartial: true, Resolver: types}.Unmarshal(m.GetUnknown(), fresh.Interface())
		if err != nil {
			return access{}, false, fmt.Errorf("%s: %w", name, err)
		}
		m, fd = fresh, extensionField(fresh, name)
	}
	if fd == nil {
		return access{}, false, nil
	}
	// m.Get, not proto.GetExtension: the value may be a message of another
	// Go type than xt's (for example a dynamicpb message when xt is the
	// generated type), which GetExtension would panic on.
	msg := m.Get(fd).Message()
	allow, ok := stringList(msg, accessAllowField)
	if !ok {
		return access{}, false, fmt.Errorf("%s: %s has no repeated string field %q", name, msg.Descriptor().FullName(), accessAllowField)
	}
	subject, _ := stringList(msg, accessSubjectField)
	return access{allow: allow, subject: subject}, true, nil
}

// stringList returns the values of the repeated string field named field
// of msg, and whether msg has such a field.
func stringList(msg protoreflect.Message, field protoreflect.Name) ([]string, bool) {
	fd := msg.Descriptor().Fields().ByName(field)
	if fd == nil || !fd.IsList() || fd.Kind() != protoreflect.StringKind {
		return nil, false
	}
	list := msg.Get(fd).List()
	out := make([]string, list.Len())
	for i := range out {
		out[i] = list.Get(i).String()
	}
	return out, true
}

// extensionField returns the descriptor of the extension field named name
// that m sets, or nil.
func extensionField(m protoreflect.Message, name protoreflect.FullName) protoreflect.FieldDescriptor {
	var found protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.IsExtension() && fd.FullName() == name {
			found = fd
			return false
		}
		return true
	})
	return found
}

// MethodNames returns the full names ("/pkg.Service/Method") of the methods
// of sd, in declaration order: the names rules, decisions and servers use.
func MethodNames(sd protoreflect.ServiceDescriptor) []string {
	methods := sd.Methods()
	out := make([]string, methods.Len())
	for i := range out {
		out[i] = "/" + string(sd.FullName()) + "/" + string(methods.Get(i).Name())
	}
	return out
}
