package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/sigstore/sigstore/pkg/signature/kms/aws"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// Online keys can live in a cloud KMS, named by sigstore's references:
//
//	awskms:///alias/mtuf-online
//	awskms:///1234abcd-12ab-34cd-56ef-1234567890ab
//	awskms:///arn:aws:kms:eu-west-1:111122223333:alias/mtuf-online
//
// The AWS SDK finds credentials, region and endpoint as it always does
// (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_KMS, instance roles...). The
// KMS signs; the private key never leaves it. A KMS key is an ECDSA P-256
// key (key spec ECC_NIST_P256, usage SIGN_VERIFY): the KMS signs a SHA-256
// digest with it, as TUF's ecdsa-sha2-nistp256 scheme wants. Its TUF key
// ID is computed from the public key the KMS returns, so it is the same
// for a KMS reference, for that public key written to a file, and in
// every repository that lists it.
const kmsSchemeAWS = "awskms"

// kmsTimeout bounds each call to the KMS, so that an unreachable KMS fails
// a publish with an error instead of hanging it.
const kmsTimeout = 30 * time.Second

// kmsAttempts is how often the AWS SDK tries a KMS call: a little patience
// for a KMS that is briefly busy, not minutes of retries against one that is
// not there.
const kmsAttempts = 2

// kmsSigner signs through a KMS key. It holds the public key read when it
// was loaded, so Public never calls the KMS.
type kmsSigner struct {
	ref string
	sv  *aws.SignerVerifier
	pub crypto.PublicKey
	ctx context.Context
}

// loadKMS opens the KMS key ref and reads its public key, so that a wrong
// alias or an unreachable KMS is reported before anything is signed.
func loadKMS(ctx context.Context, ref string) (*kmsSigner, error) {
	if err := aws.ValidReference(ref); err != nil {
		return nil, fmt.Errorf("KMS key %s: %w", ref, err)
	}
	sv, err := aws.LoadSignerVerifier(ctx, ref, config.WithRetryMaxAttempts(kmsAttempts))
	if err != nil {
		return nil, fmt.Errorf("KMS key %s: %w", ref, err)
	}
	cctx, cancel := context.WithTimeout(ctx, kmsTimeout)
	defer cancel()
	pub, err := sv.PublicKey(options.WithContext(cctx))
	if err != nil {
		return nil, kmsError(ref, err)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("KMS key %s: a %T is not supported: mtuf signs with KMS keys of key spec ECC_NIST_P256 and usage SIGN_VERIFY", ref, pub)
	}
	return &kmsSigner{ref: ref, sv: sv, pub: pub, ctx: ctx}, nil
}

// kmsError says what most likely went wrong with a KMS call.
func kmsError(ref string, err error) error {
	var notFound *kmstypes.NotFoundException
	if errors.As(err, &notFound) {
		return fmt.Errorf("KMS key %s: the KMS has no such key or alias (check the name, the account and AWS_REGION): %w", ref, err)
	}
	return fmt.Errorf("KMS key %s: the KMS did not answer (check AWS_REGION, AWS_ENDPOINT_URL_KMS, the network and the credentials): %w", ref, err)
}

func (k *kmsSigner) Public() crypto.PublicKey { return k.pub }

// Sign signs a SHA-256 digest with the KMS key; ECDSA keys are only asked
// for SHA-256 digests (see Signer).
func (k *kmsSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != crypto.SHA256.Size() {
		return nil, fmt.Errorf("KMS key %s: only SHA-256 digests are signed", k.ref)
	}
	ctx, cancel := context.WithTimeout(k.ctx, kmsTimeout)
	defer cancel()
	sig, err := k.sv.SignMessage(nil, options.WithContext(ctx), options.WithDigest(digest), options.WithCryptoSignerOpts(crypto.SHA256))
	if err != nil {
		return nil, kmsError(k.ref, err)
	}
	return sig, nil
}
