// Package attest verifies cluster nodes' TPM attestations against trusted
// reference measurements: it asks each node's mtuf-agent for a quote over a
// fresh nonce, checks the attestation key (pinned, or certified by a trusted
// CA), the quote's signature, nonce and PCR digest in the policy's one bank,
// replays the event log, and compares every PCR.
//
// Verification is one call under an explicit Policy (Verify, or NewVerifier
// and then Verifier.Verify for many rounds), and what was verified comes
// back as a Report with a result per node and per PCR; nothing is trusted
// that the policy does not name. The reference measurements usually come
// from package client, which fetched and verified them through TUF, but
// this package neither knows nor cares: it takes a metadata.Measurements.
package attest
