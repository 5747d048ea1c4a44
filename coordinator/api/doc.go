// Package api is the coordinator's public gRPC surface (flotilla.v1). Each
// handler is thin: validate the wire request, call the domain service
// (coordinator/service) for a write or read the store for a read, and map
// errors to gRPC codes in one place (errors.go). Proto <-> domain
// conversion lives in coordinator/convert.
package api
