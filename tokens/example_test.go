package tokens_test

import (
	"fmt"
	"os"
	"time"

	"github.com/trustmesh/trustmesh/tokens"
)

// A development issuer mints a token bound to alice's certificate; the
// gateway accepts it from alice's connection and refuses it from bob's.
func Example() {
	dir, err := os.MkdirTemp("", "tokens-example")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	key, err := tokens.InitDev(dir, false) // meshctl tokens init
	if err != nil {
		panic(err)
	}
	issuer, err := tokens.NewIssuer(tokens.DevIssuer, key.KeyFile)
	if err != nil {
		panic(err)
	}
	const gateway = "spiffe://shop.example/ns/shop/sa/gateway"
	// The certificates alice and bob present (in a server, identity.Principal.Leaf).
	alice, err := makeLeaf("spiffe://shop.example/user/alice")
	if err != nil {
		panic(err)
	}
	bob, err := makeLeaf("spiffe://shop.example/user/bob")
	if err != nil {
		panic(err)
	}
	raw, err := issuer.Issue(alice, gateway, 15*time.Minute, time.Now()) // meshctl tokens issue
	if err != nil {
		panic(err)
	}

	verifier, err := tokens.NewVerifier(tokens.Config{Issuer: tokens.DevIssuer, Audience: gateway, JWKSFile: key.JWKSFile})
	if err != nil {
		panic(err)
	}
	claims, err := verifier.Verify(raw, alice, time.Now())
	fmt.Println(claims.Subject, err)
	_, err = verifier.Verify(raw, bob, time.Now())
	fmt.Println(err)
	// Output:
	// spiffe://shop.example/user/alice <nil>
	// tokens: token is bound to another certificate
}
