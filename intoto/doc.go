// Package intoto is the in-toto supply chain of a measurements document: the
// layout that says which functionaries may read and publish measurements,
// the links each step signs, and the verification that the published
// document is, byte for byte, the one the reading step produced.
//
// Layouts and links are in-toto 1.3.1's signed metablock format (not DSSE),
// with securesystemslib key IDs, so that in-toto's own Python tools
// (in-toto-run, in-toto-verify) accept what this package signs and this
// package accepts what they sign. Verification runs in memory against a
// given time, and refuses every layout feature mtuf does not need
// (inspections, sublayouts, certificate functionaries), because a layout is
// policy and a feature nobody checks is a way around it.
//
// Where links live and what they are named is package metadata's business
// (metadata.LinkTarget, metadata.LinkFileName); this package only signs and
// checks them.
package intoto
