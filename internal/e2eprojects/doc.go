// Package e2eprojects tests projects through real processes: a
// coordinator and an agent (fake hypervisor, and the real libvirtd) where a
// billed project's balance runs dry, its instance is frozen (the guest
// paused on the hypervisor), and a top-up resumes it.
package e2eprojects
