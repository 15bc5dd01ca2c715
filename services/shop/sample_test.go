package shop_test

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// Every package generated from proto/shop, so that the registry holds
	// all of the sample's files.
	_ "github.com/trustmesh/trustmesh/gen/shop/gateway/v1"
	_ "github.com/trustmesh/trustmesh/gen/shop/gateway/v2"
	_ "github.com/trustmesh/trustmesh/gen/shop/inventory/v1"
	_ "github.com/trustmesh/trustmesh/gen/shop/money/v1"
	_ "github.com/trustmesh/trustmesh/gen/shop/orders/v1"
	_ "github.com/trustmesh/trustmesh/gen/shop/payments/v1"
	"github.com/trustmesh/trustmesh/internal/testtool"
	"github.com/trustmesh/trustmesh/services/shop/sample"
)

var update = flag.Bool("update", false, "rewrite services/shop/sample/protos.binpb from the generated code")

// TestSampleProtoDescriptors checks that sample.ProtoDescriptors (what
// `meshctl policy --sample` reads) is the FileDescriptorSet of the
// generated code, which CI checks fresh against proto/; -update rewrites
// it. It also checks that every proto under proto/shop is in it.
func TestSampleProtoDescriptors(t *testing.T) {
	t.Parallel()
	want := sampleDescriptorSet(t)
	path := filepath.Join("sample", "protos.binpb")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := sample.ProtoDescriptors(); !bytes.Equal(got, want) && !*update {
		t.Fatalf("%s is stale: run go test ./services/shop -run TestSampleProtoDescriptors -update (or make generate)", path)
	}

	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(want, &set); err != nil {
		t.Fatal(err)
	}
	var inSet []string
	for _, f := range set.GetFile() {
		inSet = append(inSet, f.GetName())
	}
	root := testtool.RepoRoot(t)
	err := filepath.WalkDir(filepath.Join(root, "proto", "shop"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".proto") {
			return err
		}
		rel, err := filepath.Rel(filepath.Join(root, "proto"), p)
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); !slices.Contains(inSet, rel) {
			t.Errorf("%s is not in the sample's descriptor set (import its generated package in this test)", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"trustmesh/v1/access.proto", "google/protobuf/descriptor.proto"} {
		if !slices.Contains(inSet, want) {
			t.Errorf("the sample's descriptor set lacks the import %s", want)
		}
	}
}

// sampleDescriptorSet returns, deterministically marshalled, the
// FileDescriptorSet of every registered file of a shop.* package and of
// their imports, each file after its imports, then by path.
func sampleDescriptorSet(t *testing.T) []byte {
	t.Helper()
	var roots []protoreflect.FileDescriptor
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if strings.HasPrefix(string(fd.Package()), "shop.") {
			roots = append(roots, fd)
		}
		return true
	})
	slices.SortFunc(roots, func(a, b protoreflect.FileDescriptor) int { return strings.Compare(a.Path(), b.Path()) })
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range roots {
		add(fd)
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(&set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
