// Package sample describes the sample mesh without running it: its trust
// domain, its workloads, the development identities `shop up` and `meshctl
// certs init` issue, and a FileDescriptorSet of its protos.
//
// It links neither the sample's generated code nor its services, so that
// tools such as meshctl can offer the sample as a default (`meshctl certs
// init`, `meshctl policy lint --sample`) and still work for anyone's
// protos. Package shop runs the mesh it describes.
package sample
