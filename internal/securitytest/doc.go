// Package securitytest tries the attacks of issue 17 against the built
// binaries (coordinator and agent processes, the fake hypervisor, real
// mutual TLS with certificates from scripts/issue-certs.sh): each test
// failed against the coordinator before roles, input bounds, limits and
// request scoping, and passes now.
package securitytest
