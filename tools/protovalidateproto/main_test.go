package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// vendored is the committed copy, relative to this package.
var vendored = filepath.Join("..", "..", "proto", "buf", "validate", "validate.proto")

// The committed validate.proto compiles to exactly the descriptor that the
// Go package embeds: the same messages, fields, numbers, options and rules
// (the CEL of every predefined rule included), so that buf generates code
// against the schema the served protovalidate enforces.
func TestVendoredFileIsTheEmbeddedDescriptor(t *testing.T) {
	t.Parallel()
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
		ImportPaths: []string{filepath.Join("..", "..", "proto")},
	})}
	files, err := c.Compile(context.Background(), "buf/validate/validate.proto")
	if err != nil {
		t.Fatalf("compile %s: %v", vendored, err)
	}
	got, want := normalize(t, files[0]), normalize(t, validate.File_buf_validate_validate_proto)
	if !proto.Equal(got, want) {
		t.Fatalf("%s does not compile to the embedded descriptor of %s: run `make protovalidate-proto`", vendored, goPackage)
	}
}

// The committed file is what the command prints now.
func TestVendoredFileIsFresh(t *testing.T) {
	t.Parallel()
	committed, err := os.ReadFile(vendored)
	if err != nil {
		t.Fatal(err)
	}
	printed, err := render()
	if err != nil {
		t.Fatal(err)
	}
	if string(committed) != string(printed) {
		t.Fatalf("%s is stale: run `make protovalidate-proto` and commit the result", vendored)
	}
}

// normalize returns fd as a FileDescriptorProto without source info, its
// options parsed with the extensions the Go packages register, so that two
// descriptors of the same schema compare equal however they were built.
func normalize(t *testing.T, fd protoreflect.FileDescriptor) *descriptorpb.FileDescriptorProto {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(protodesc.ToFileDescriptorProto(fd))
	if err != nil {
		t.Fatal(err)
	}
	out := new(descriptorpb.FileDescriptorProto)
	if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	out.SourceCodeInfo = nil
	return out
}
