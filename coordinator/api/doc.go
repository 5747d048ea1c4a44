// Package api is the coordinator's public gRPC surface (flotilla.v1). Each
// handler is thin: validate the request, build a command, commit it through
// the Applier, read back the result, and map errors to gRPC codes in one
// place (errors.go). Proto <-> domain conversion lives in coordinator/convert.
package api
