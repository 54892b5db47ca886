// Package keys generates signing keys, stores them in encrypted key files and
// turns them into signers for TUF metadata.
//
// Private key files use cosign's format byte for byte: a PKCS#8 key encrypted
// with scrypt and NaCl secretbox (go-securesystemslib's encrypted package) in a
// PEM block "ENCRYPTED SIGSTORE PRIVATE KEY". A key written by mtuf can sign
// with stock cosign, and a cosign.key works anywhere mtuf takes a key, so a
// team keeps one set of offline keys for both tools. Public keys are PEM
// "PUBLIC KEY" (PKIX) files; an X.509 certificate is accepted in their place.
//
// The key types are the three that TUF names and go-tuf verifies: ed25519,
// ECDSA on P-256 with SHA-256, and RSA with RSASSA-PSS and SHA-256.
//
// Online keys may also live in AWS KMS, named by sigstore's awskms://
// references; the KMS signs and its keys are ECDSA P-256.
//
// Code that takes key references (file paths, pkcs11: URIs, awskms://
// references) turns them into
// keys through a Resolver: Files reads them as the mtuf commands do, Memory
// serves keys that the caller already holds.
package keys
