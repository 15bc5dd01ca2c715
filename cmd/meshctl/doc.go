// Command meshctl is trustmesh's command line: development certificates,
// authorization policies and development access tokens, for anyone's
// services. Where a default is needed it is the sample mesh's (trust
// domain shop.example, its workloads and services/policy.yaml); meshctl
// links none of the sample's generated code, and reads protos from
// FileDescriptorSets.
//
//	meshctl certs init      write a development CA and SVIDs (--trust-domain, --workloads NAME=PATH,...,
//	                        --identities NAME=PATH,...; default the sample mesh's), --intermediate, --dns
//	meshctl certs issue     issue one SVID from the development CA (--id, --name, --dns, --ip)
//	meshctl certs inspect   explain a certificate and check it against a trust bundle
//	meshctl certs rotate    re-issue SVIDs in place (default: the sample mesh's workloads)
//	meshctl policy lint     check a policy file and report methods no allow rule covers and deny rules that match none (--strict, --methods)
//	meshctl policy explain  the decision for one caller and method, and the rule (--server for at: rules,
//	                        --subject for subject: rules)
//	meshctl policy diff     which callers (and subjects) gain or lose access to each method
//	meshctl policy test     run a table of expected decisions (caller, method, subject, token -> want, rule)
//	meshctl proto export    write trustmesh/v1/access.proto into DIR, for your own buf workspace
//	meshctl tokens init     write a development token issuer's key and its JWKS
//	meshctl tokens issue    mint a development access token bound to a certificate (RFC 8705)
//	meshctl txn inspect     decode a transaction token, verify it against a bundle and print its claims
//	meshctl version         print the version
//	meshctl help            show the usage (also: meshctl COMMAND --help)
//
// The policy subcommands merge the access rules declared in protos
// (trustmesh.v1 options) with the file when given protos: --proto-descriptors
// SET (from `buf build -o SET`) for your services, or --sample for the
// sample mesh's; --protos=false keeps only their methods.
//
// Material lives in certs/dev by default (--dir). Errors are one line on
// standard error starting with "meshctl: "; the exit code is 1 for a
// failure and 2 for a mistake on the command line.
package main
