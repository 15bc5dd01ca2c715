package sample

import _ "embed" // for protoDescriptors

// protoDescriptors is protos.binpb: the sample's protos, written by
// services/shop's TestSampleProtoDescriptors (go test ./services/shop -run
// TestSampleProtoDescriptors -update) and checked fresh by it.
//
//go:embed protos.binpb
var protoDescriptors []byte

// ProtoDescriptors returns a FileDescriptorSet, in binary form, of the
// sample mesh's protos (proto/shop/...) and everything they import
// (trustmesh/v1/access.proto among them), as `buf build -o` would write
// it: what `meshctl policy --sample` reads the sample's services and their
// access options from. Each call returns a fresh copy.
func ProtoDescriptors() []byte { return append([]byte(nil), protoDescriptors...) }
