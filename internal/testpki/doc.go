// Package testpki gives tests a throwaway development PKI: a CA for a trust
// domain (backed by certs.NewCA), good X.509-SVIDs issued from it, defective
// leaves crafted from a good template, and a development directory like
// the one `meshctl certs init` writes.
//
//	pki := testpki.New(t, "shop.example")
//	svid := pki.SVID(t, "spiffe://shop.example/ns/shop/sa/orders")
//	leaf, key := pki.Leaf(t, testpki.LeafIsCA) // see Defects
//	dir := pki.WriteDir(t, identities) // []certs.Identity
//
// Every helper fails the test (t.Fatal) rather than returning an error.
package testpki
