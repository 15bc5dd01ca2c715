package mesh

import (
	"fmt"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// servedDescriptors is what a server's reflection may tell: the files that
// define the services it serves and their transitive imports, and the
// extensions declared in those files — not the whole registry of the
// binary, which may link other services' generated code (a binary that
// runs several services, or imports a client of another).
//
// It implements protodesc.Resolver and the extension resolver that both
// reflection implementations (grpc-go's and connectrpc.com/grpcreflect)
// take. Until set is called it resolves nothing.
type servedDescriptors struct {
	files atomic.Pointer[protoregistry.Files]
}

// set limits resolution to services (full names) and what they import.
func (d *servedDescriptors) set(services []string) error {
	files := new(protoregistry.Files)
	for _, name := range services {
		desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			return fmt.Errorf("mesh: reflection: service %s: no descriptor registered (import its generated .pb.go package, or pass WithoutReflection): %w", name, err)
		}
		if err := addFile(files, desc.ParentFile()); err != nil {
			return err
		}
	}
	d.files.Store(files)
	return nil
}

// addFile registers fd and, first, everything it imports.
func addFile(files *protoregistry.Files, fd protoreflect.FileDescriptor) error {
	if _, err := files.FindFileByPath(fd.Path()); err == nil {
		return nil
	}
	imports := fd.Imports()
	for i := range imports.Len() {
		if err := addFile(files, imports.Get(i).FileDescriptor); err != nil {
			return err
		}
	}
	if err := files.RegisterFile(fd); err != nil {
		return fmt.Errorf("mesh: reflection: %s: %w", fd.Path(), err)
	}
	return nil
}

func (d *servedDescriptors) current() *protoregistry.Files {
	if f := d.files.Load(); f != nil {
		return f
	}
	return new(protoregistry.Files)
}

// FindFileByPath implements protodesc.Resolver.
func (d *servedDescriptors) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	return d.current().FindFileByPath(path)
}

// FindDescriptorByName implements protodesc.Resolver.
func (d *servedDescriptors) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	return d.current().FindDescriptorByName(name)
}

// served reports whether xt is declared in a served file.
func (d *servedDescriptors) served(xt protoreflect.ExtensionType) bool {
	_, err := d.current().FindFileByPath(xt.TypeDescriptor().ParentFile().Path())
	return err == nil
}

// FindExtensionByName implements protoregistry.ExtensionTypeResolver.
func (d *servedDescriptors) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	xt, err := protoregistry.GlobalTypes.FindExtensionByName(field)
	if err != nil || !d.served(xt) {
		return nil, protoregistry.NotFound
	}
	return xt, nil
}

// FindExtensionByNumber implements protoregistry.ExtensionTypeResolver.
func (d *servedDescriptors) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	xt, err := protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
	if err != nil || !d.served(xt) {
		return nil, protoregistry.NotFound
	}
	return xt, nil
}

// RangeExtensionsByMessage calls f for each served extension of message.
func (d *servedDescriptors) RangeExtensionsByMessage(message protoreflect.FullName, f func(protoreflect.ExtensionType) bool) {
	protoregistry.GlobalTypes.RangeExtensionsByMessage(message, func(xt protoreflect.ExtensionType) bool {
		if !d.served(xt) {
			return true
		}
		return f(xt)
	})
}
