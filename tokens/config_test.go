package tokens_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/tokens"
)

func TestNewVerifierErrors(t *testing.T) {
	t.Parallel()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	jwks := func(name, data string) tokens.Config {
		return tokens.Config{Issuer: "i", Audience: "a", JWKSFile: writeFile(t, name, data)}
	}
	keyFile := func(path string) tokens.Config {
		return tokens.Config{Issuer: "i", Audience: "a", KeyFile: path}
	}
	const ecKey = `"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"`
	testCases := []struct {
		name string
		cfg  tokens.Config
		want string // prefix of the error; the file names differ
	}{
		{"no issuer", tokens.Config{Audience: "a", JWKSFile: "x"}, "tokens: verifier needs an issuer"},
		{"no audience", tokens.Config{Issuer: "i", JWKSFile: "x"}, "tokens: verifier needs an audience"},
		{"no keys", tokens.Config{Issuer: "i", Audience: "a"}, "tokens: verifier needs the issuer's keys (a key file or a JWKS file)"},
		{"both key sources", tokens.Config{Issuer: "i", Audience: "a", KeyFile: "x", JWKSFile: "y"}, "tokens: verifier takes a key file or a JWKS file, not both"},
		{"negative leeway", tokens.Config{Issuer: "i", Audience: "a", KeyFile: "x", Leeway: -time.Second}, "tokens: leeway -1s must not be negative"},
		{"missing JWKS file", tokens.Config{Issuer: "i", Audience: "a", JWKSFile: "testdata/nope.json"}, "tokens: open testdata/nope.json: no such file or directory"},
		{"JWKS not JSON", jwks("not-json.json", "{"), "tokens: JWKS file "},
		{"empty JWKS", jwks("empty.json", `{"keys":[]}`), "tokens: JWKS file "},
		{"symmetric key", jwks("oct.json", `{"keys":[{"kty":"oct","kid":"k1","k":"c2VjcmV0"}]}`), `: key "k1": a symmetric (oct) key is not accepted (want public keys)`},
		{"private key", jwks("private.json", `{"keys":[{`+ecKey+`,"kid":"k1","d":"870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE"}]}`), `: key "k1": holds a private key (publish public keys only)`},
		{"encryption key", jwks("enc.json", `{"keys":[{`+ecKey+`,"use":"enc"}]}`), `: key 1: use "enc" (want sig)`},
		{"alg does not fit the key", jwks("alg.json", `{"keys":[{`+ecKey+`,"alg":"RS256"}]}`), `: key 1: alg "RS256" does not fit the key (want ES256)`},
		{"duplicate kid", jwks("dup.json", `{"keys":[{`+ecKey+`,"kid":"k"},{`+ecKey+`,"kid":"k"}]}`), `: key "k": duplicate kid`},
		{"P-384 key", keyFile(writePEM(t, "p384.pem", "PUBLIC KEY", p384.Public())), ": PEM block 1: EC key on curve P-384 (want P-256, for ES256)"},
		{"small RSA key", keyFile(writePEM(t, "rsa1024.pem", "PUBLIC KEY", rsa1024.Public())), ": PEM block 1: RSA key of 1024 bits (want at least 2048)"},
		{"private key file", keyFile(writePEM(t, "private.pem", "PRIVATE KEY", p256)), ": PEM block 1 is a private key (give verifiers the public key only)"},
		{"empty key file", keyFile(writeFile(t, "empty.pem", "")), ": no PEM PUBLIC KEY block"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tokens.NewVerifier(tc.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), "tokens: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewVerifier error = %v\nwant one with %q", err, tc.want)
			}
		})
	}
}
