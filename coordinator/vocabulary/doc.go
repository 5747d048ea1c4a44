// Package vocabulary renders an instance's facts in the words of the five
// seed systems Flotilla's users come from: a Xen "manage instance" cloud
// (seed 000), OpenStack Nova (001), RightScale (002), Azure VMs (003) and a
// managed-instance service (004).
//
// A view is derived, never stored: Render reads the same facts that
// lifecycle.Derive reads (plus the kind of the last operation, which the
// seeds' failure words depend on) and returns the seed's status word exactly
// as the seed spells it, the seed's other fields where it has them, and the
// billing class the seed names for that state. Each vocabulary is one table
// keyed by the canonical status, refined by the facts where the seed draws a
// finer line (Nova's task states, Azure's provisioning states, seed 004's
// CREATEFAILED). Where a seed has no word for a state, the view says so
// (Unmapped, with the canonical status) instead of guessing.
//
// Seeds lists every state each seed names, and which operation still has to
// be built for the states Flotilla cannot reach yet; the conformance suite
// in internal/e2e and docs/vocabularies.md are generated from it.
package vocabulary
