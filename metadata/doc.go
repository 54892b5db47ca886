// Package metadata defines what mtuf distributes and how it is named: the
// measurements document (the trusted PCR values of one image version on one
// platform), the per-platform profiles that decide which PCRs a document
// pins, the names of TUF targets, and the custom target metadata that lets a
// client list what a repository offers.
//
// Everything here is pure data handling with no I/O, so that the repository
// side (which writes documents) and the client side (which trusts them) share
// one definition of a valid document. Parsing is strict on purpose: a
// measurements document is security policy, and a silently ignored typo such
// as "warnonly" would weaken it without anyone noticing.
package metadata
