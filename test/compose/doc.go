// Package compose tests compose.yaml: compose_config_test.go loads it with
// compose-go and cross-checks it against `shop serve --check-config`, the
// Dockerfile and the README (a unit test, run by `make test`);
// compose_test.go (build tag compose, run by `make test-compose`) runs the
// mesh under real docker compose and calls it from the host.
//
// It is a module of its own so that compose-go stays out of the main
// module's dependencies.
package compose
