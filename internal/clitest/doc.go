// Package clitest runs the real flotctl binary against a real coordinator
// and a fake-hypervisor agent: every command group, its table, wide, JSON
// and YAML output parsed back, its errors with their exit codes and
// one-line messages, and --wait through a pipe and a pseudo-terminal.
package clitest
