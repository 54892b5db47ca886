package intoto

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/cjson"

	"github.com/mtuf/mtuf/internal/pemkey"
	"github.com/mtuf/mtuf/metadata"
)

// The in-toto supply chain of a measurements document. The layout names two
// steps; their links live beside the document they attest (see metadata.LinkTarget).
const (
	// StepReadMeasurements is the step in which pcr-reader reads the PCRs
	// and writes the document. Its link must record exactly one product,
	// metadata.MeasurementsFile, which must not be among its materials.
	StepReadMeasurements = "read-measurements"
	// StepPublish is the step in which the document is published. Its link
	// must record metadata.MeasurementsFile as a material, unchanged from the product
	// of StepReadMeasurements, and nothing else; it may record the same file,
	// still unchanged, as its only product.
	StepPublish = "publish"
	// StepPrecalculateMeasurements is the step in which pcr-precalc
	// computes, from the image itself, the PCRs the image determines. It is
	// the second, independent functionary of a layout made with
	// LayoutOptions.PrecalcFunctionaries; its measurements.json is its own
	// document (it holds fewer PCRs than a reading) and is never the one
	// published.
	StepPrecalculateMeasurements = "precalculate-measurements"
)

// Two functionaries rarely write the same document: a booted reading also
// holds the firmware PCRs that no one can compute from the image. What they
// must agree on is the value of each PCR the image determines, so a link
// records, beside measurements.json, one artifact per PCR of the document,
// named by PCRArtifact and holding the PCR's value in lowercase hex. The
// layout then demands agreement with in-toto's own rule, which the reference
// in-toto-verify applies as well:
//
//	MATCH pcrs/* WITH PRODUCTS FROM read-measurements
//
// in the products of step precalculate-measurements: every PCR it computed
// must be a PCR the reading holds, with the same value. VerifySupplyChain
// adds what artifact rules cannot say: the reading's per-PCR artifacts are
// those of the published document, and the precalculation computed every
// PCR the document enforces.

// pcrArtifactDir is where the per-PCR artifacts are named.
const pcrArtifactDir = "pcrs"

// PCRArtifact names the artifact of one PCR of one bank: pcrs/<bank>/<index>.
func PCRArtifact(bank string, index uint32) string {
	return fmt.Sprintf("%s/%s/%d", pcrArtifactDir, bank, index)
}

// MeasurementsProducts returns what a link of a step that writes the
// measurements document doc records as products: doc as
// metadata.MeasurementsFile, and each of its PCRs as PCRArtifact, holding the
// lowercase hex of its expected value. pcr-reader and pcr-precalc record
// their links with it. A link records the document of one bank, the bank
// that is published: a precalculated PCR of another bank has no
// counterpart in the reading and is refused.
func MeasurementsProducts(doc []byte) (map[string][]byte, error) {
	m, err := metadata.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", metadata.MeasurementsFile, err)
	}
	out := map[string][]byte{metadata.MeasurementsFile: doc}
	for idx, p := range m.PCRs {
		out[PCRArtifact(m.Hash, idx)] = []byte(hex.EncodeToString(p.Expected))
	}
	return out, nil
}

// Names and formats of in-toto metadata, as securesystemslib spells them.
const (
	intotoTimeFormat = "2006-01-02T15:04:05Z"

	keyTypeED25519 = "ed25519"
	keyTypeECDSA   = "ecdsa"
	keyTypeRSA     = "rsa"

	schemeED25519   = "ed25519"
	schemeECDSAP256 = "ecdsa-sha2-nistp256"
	schemeECDSAP384 = "ecdsa-sha2-nistp384"
	schemeRSAPSS    = "rsassa-pss-sha256"

	// minRSABits matches the keys package: smaller RSA keys are refused.
	minRSABits = 2048

	pemPublicKey = "PUBLIC KEY"
)

// keyIDHashAlgorithms is the list securesystemslib writes into every key
// record and hashes into its key ID. in-toto 1.3.1 recomputes the ID of every
// public key it imports with exactly this list, so a layout only verifies
// there if its IDs were computed with it too. A function, not a variable, so
// that no caller can change it.
func keyIDHashAlgorithms() []string { return []string{"sha256", "sha512"} }

// LayoutOptions says who may perform each step of the supply chain.
type LayoutOptions struct {
	// ReadFunctionaries are the keys that may sign the links of step
	// read-measurements (the CI keys that run pcr-reader).
	ReadFunctionaries []crypto.PublicKey
	// PublishFunctionaries are the keys that may sign the links of step
	// publish (the measurements publisher keys).
	PublishFunctionaries []crypto.PublicKey
	// PrecalcFunctionaries, when set, add step precalculate-measurements
	// (pcr-precalc), whose links these keys sign: the measurements are
	// then accepted only when the reading and the precalculation agree on
	// every PCR the precalculation computes, and it computed every PCR the
	// document enforces.
	PrecalcFunctionaries []crypto.PublicKey
	// Expires is when the layout stops being valid; it is stored to the
	// second, in UTC, and must lie in the future.
	Expires time.Time
	// Threshold is how many distinct functionaries must each sign a link for
	// every step; 0 means 1.
	Threshold int
}

// NewLayout returns the supply chain layout of measurements documents, as a
// signed in-toto metablock signed by owner, in the JSON form that in-toto
// 1.3.1 (Python) and in-toto-golang both read. It is published as the target
// metadata.LayoutTarget.
//
// Step read-measurements must CREATE measurements.json and produce nothing
// else; step publish must take as material exactly the measurements.json that
// read-measurements produced (MATCH ... WITH PRODUCTS FROM read-measurements)
// and may produce only that same file.
func NewLayout(owner crypto.Signer, opts LayoutOptions) ([]byte, error) {
	if owner == nil {
		return nil, errors.New("in-toto layout: no layout owner key to sign with")
	}
	threshold, expires, err := opts.thresholdAndExpiry()
	if err != nil {
		return nil, err
	}
	keys := map[string]in_toto.Key{}
	readIDs, err := functionaryKeys(StepReadMeasurements, opts.ReadFunctionaries, threshold, keys)
	if err != nil {
		return nil, err
	}
	publishIDs, err := functionaryKeys(StepPublish, opts.PublishFunctionaries, threshold, keys)
	if err != nil {
		return nil, err
	}
	var precalcIDs []string
	if len(opts.PrecalcFunctionaries) > 0 {
		if precalcIDs, err = functionaryKeys(StepPrecalculateMeasurements, opts.PrecalcFunctionaries, threshold, keys); err != nil {
			return nil, err
		}
	}

	// Every list is non-nil: in-toto 1.3.1 refuses null where it expects a list.
	layout := in_toto.Layout{
		Type:    "layout",
		Steps:   measurementsSteps(readIDs, publishIDs, precalcIDs, threshold),
		Inspect: []in_toto.Inspection{},
		Keys:    keys,
		Expires: expires.Format(intotoTimeFormat),
		Readme: "mtuf measurements supply chain: " + StepReadMeasurements + " reads the PCRs from a TPM and writes " +
			metadata.MeasurementsFile + "; " + StepPublish + " publishes that file unchanged as a TUF target.",
	}
	if len(precalcIDs) > 0 {
		layout.Readme += " " + StepPrecalculateMeasurements + " computes from the image the PCRs it determines; " +
			"each must hold the same value in the reading (" + pcrArtifactDir + "/<bank>/<index>)."
	}
	mb := &in_toto.Metablock{Signed: layout, Signatures: []in_toto.Signature{}}
	if _, err := signMetablock(mb, owner); err != nil {
		return nil, fmt.Errorf("in-toto layout: %w", err)
	}
	return marshalMetablock(mb)
}

// thresholdAndExpiry returns the threshold, 0 read as 1, and the expiry as
// the layout stores it: to the second, in UTC, which is what must lie in the
// future.
func (opts LayoutOptions) thresholdAndExpiry() (int, time.Time, error) {
	threshold := opts.Threshold
	if threshold == 0 {
		threshold = 1
	}
	if threshold < 0 {
		return 0, time.Time{}, fmt.Errorf("in-toto layout: threshold %d is negative", opts.Threshold)
	}
	if opts.Expires.IsZero() {
		return 0, time.Time{}, errors.New("in-toto layout: no expiry time given")
	}
	expires := opts.Expires.UTC().Truncate(time.Second)
	if !expires.After(time.Now()) {
		return 0, time.Time{}, fmt.Errorf("in-toto layout: expiry time %s is in the past", expires.Format(intotoTimeFormat))
	}
	return threshold, expires, nil
}

// functionaryKeys returns the key IDs of the functionaries of step and adds
// their keys to keys, the layout's key records. A step needs at least
// threshold distinct keys, or no set of its links could ever meet it.
func functionaryKeys(step string, pubs []crypto.PublicKey, threshold int, keys map[string]in_toto.Key) ([]string, error) {
	if len(pubs) == 0 {
		return nil, fmt.Errorf("in-toto layout: step %s has no functionary keys", step)
	}
	if len(pubs) < threshold {
		return nil, fmt.Errorf("in-toto layout: step %s has %d functionary key(s), fewer than the threshold %d", step, len(pubs), threshold)
	}
	ids := make([]string, 0, len(pubs))
	for i, pub := range pubs {
		k, err := intotoKey(pub)
		if err != nil {
			return nil, fmt.Errorf("in-toto layout: functionary key %d of step %s: %w", i+1, step, err)
		}
		if slices.Contains(ids, k.KeyID) {
			return nil, fmt.Errorf("in-toto layout: functionary key %s is listed twice for step %s", k.KeyID, step)
		}
		ids = append(ids, k.KeyID)
		keys[k.KeyID] = k
	}
	return ids, nil
}

// measurementsSteps are the two steps of the supply chain, with the artifact
// rules that tie the published measurements.json to the one read from the
// TPM. Every list is non-nil: in-toto 1.3.1 refuses null where it expects a
// list.
func measurementsSteps(readIDs, publishIDs, precalcIDs []string, threshold int) []in_toto.Step {
	matchRead := []string{"MATCH", metadata.MeasurementsFile, "WITH", "PRODUCTS", "FROM", StepReadMeasurements}
	disallowAll := []string{"DISALLOW", "*"}
	pcrs := pcrArtifactDir + "/*"
	steps := []in_toto.Step{
		{
			Type:            "step",
			PubKeys:         readIDs,
			ExpectedCommand: []string{},
			Threshold:       threshold,
			SupplyChainItem: in_toto.SupplyChainItem{
				Name: StepReadMeasurements,
				// The PCRs come from a TPM, not from files: whatever
				// files pcr-reader records as inputs are not constrained.
				ExpectedMaterials: [][]string{},
				ExpectedProducts:  [][]string{{"CREATE", metadata.MeasurementsFile}, {"CREATE", pcrs}, disallowAll},
			},
		},
		{
			Type:            "step",
			PubKeys:         publishIDs,
			ExpectedCommand: []string{},
			Threshold:       threshold,
			SupplyChainItem: in_toto.SupplyChainItem{
				Name:              StepPublish,
				ExpectedMaterials: [][]string{matchRead, disallowAll},
				ExpectedProducts:  [][]string{matchRead, disallowAll},
			},
		},
	}
	if len(precalcIDs) > 0 {
		steps = append(steps, in_toto.Step{
			Type:            "step",
			PubKeys:         precalcIDs,
			ExpectedCommand: []string{},
			Threshold:       threshold,
			SupplyChainItem: in_toto.SupplyChainItem{
				Name: StepPrecalculateMeasurements,
				// The image, under whatever name it was given.
				ExpectedMaterials: [][]string{{"ALLOW", "*"}},
				// A PCR whose value differs from the reading's stays in
				// the queue and is refused by DISALLOW, under its name.
				ExpectedProducts: [][]string{
					{"CREATE", metadata.MeasurementsFile},
					{"MATCH", pcrs, "WITH", "PRODUCTS", "FROM", StepReadMeasurements},
					disallowAll,
				},
			},
		})
	}
	return steps
}

// NewLink returns the in-toto link of one performance of step, signed by
// functionary: a signed metablock recording the SHA-256 of every material
// (file name -> content, read before the step) and every product (written by
// it). keyID is the in-toto key ID of the functionary; the link is to be
// stored as metadata.LinkFileName(step, keyID), or under metadata.LinkTarget in a repository.
//
// Artifact names are paths relative to the step's working directory, as
// in-toto-run records them: the measurements document is metadata.MeasurementsFile.
func NewLink(step string, materials, products map[string][]byte, functionary crypto.Signer) (data []byte, keyID string, err error) {
	if err := metadata.ValidateStep(step); err != nil {
		return nil, "", fmt.Errorf("in-toto link: %w", err)
	}
	if functionary == nil {
		return nil, "", fmt.Errorf("in-toto link of step %s: no functionary key to sign with", step)
	}
	mats, err := hashArtifacts(materials)
	if err != nil {
		return nil, "", fmt.Errorf("in-toto link of step %s: material %w", step, err)
	}
	return signLink(step, mats, products, functionary)
}

// NewLinkMaterialDigests is NewLink for materials too large to hold in
// memory, such as a disk image: each is given by its SHA-256 digest, which
// the caller computes while streaming the file.
func NewLinkMaterialDigests(step string, materials map[string][sha256.Size]byte, products map[string][]byte, functionary crypto.Signer) (data []byte, keyID string, err error) {
	if err := metadata.ValidateStep(step); err != nil {
		return nil, "", fmt.Errorf("in-toto link: %w", err)
	}
	if functionary == nil {
		return nil, "", fmt.Errorf("in-toto link of step %s: no functionary key to sign with", step)
	}
	mats := make(map[string]in_toto.HashObj, len(materials))
	for name, sum := range materials {
		if err := validateArtifactName(name); err != nil {
			return nil, "", fmt.Errorf("in-toto link of step %s: material %w", step, err)
		}
		mats[name] = in_toto.HashObj{"sha256": hex.EncodeToString(sum[:])}
	}
	return signLink(step, mats, products, functionary)
}

// signLink hashes the products and signs the link of one performance of
// step with the materials already hashed.
func signLink(step string, mats map[string]in_toto.HashObj, products map[string][]byte, functionary crypto.Signer) (data []byte, keyID string, err error) {
	prods, err := hashArtifacts(products)
	if err != nil {
		return nil, "", fmt.Errorf("in-toto link of step %s: product %w", step, err)
	}
	link := in_toto.Link{
		Type:        "link",
		Name:        step,
		Materials:   mats,
		Products:    prods,
		ByProducts:  map[string]any{},
		Command:     []string{},
		Environment: map[string]any{},
	}
	mb := &in_toto.Metablock{Signed: link, Signatures: []in_toto.Signature{}}
	keyID, err = signMetablock(mb, functionary)
	if err != nil {
		return nil, "", fmt.Errorf("in-toto link of step %s: %w", step, err)
	}
	data, err = marshalMetablock(mb)
	if err != nil {
		return nil, "", err
	}
	return data, keyID, nil
}

// Digests are the digests of one artifact as a link records them: hash
// algorithm name ("sha256", ...) -> lowercase hex.
type Digests map[string]string

// Verify checks that content is the artifact these digests describe. Every
// recorded algorithm that this package knows (sha256, sha384, sha512) must
// match, and at least one must be recorded, so that a link naming only an
// unknown algorithm cannot vouch for anything.
func (d Digests) Verify(content []byte) error {
	checked := 0
	for _, alg := range []struct {
		name string
		hash crypto.Hash
	}{{"sha256", crypto.SHA256}, {"sha384", crypto.SHA384}, {"sha512", crypto.SHA512}} {
		want, ok := d[alg.name]
		if !ok {
			continue
		}
		h := alg.hash.New()
		h.Write(content)
		if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(want) {
			return fmt.Errorf("%s is %s, the link records %s", alg.name, got, want)
		}
		checked++
	}
	if checked == 0 {
		return fmt.Errorf("the link records no sha256, sha384 or sha512 digest (only %s)", strings.Join(slices.Sorted(maps.Keys(d)), ", "))
	}
	return nil
}

// LinkProducts reads a link and returns its step name, the in-toto key ID of
// its (first) signature and the products it records. It does not verify the
// signature, which takes the layout (see VerifySupplyChain); it serves to
// refuse, before publishing, a measurements document that is not the one the
// link attests:
//
//	_, _, products, err := LinkProducts(link)
//	... products[metadata.MeasurementsFile].Verify(doc) ...
func LinkProducts(link []byte) (step string, keyID string, products map[string]Digests, err error) {
	mb, l, err := parseLink(link)
	if err != nil {
		return "", "", nil, err
	}
	if len(mb.Signatures) == 0 {
		return "", "", nil, fmt.Errorf("in-toto link of step %q is not signed", l.Name)
	}
	products = make(map[string]Digests, len(l.Products))
	for name, d := range l.Products {
		products[name] = Digests(d)
	}
	return l.Name, mb.Signatures[0].KeyID, products, nil
}

// KeyID returns the in-toto key ID of pub: the SHA-256 of the canonical
// JSON of its securesystemslib key record, as in-toto 1.3.1 computes it for
// the key file ExportPublicKey writes or in-toto-keygen makes. It is
// the ID that NewLayout lists, NewLink signs with and link file names start
// with, and it differs from the TUF key ID of the same key. (in-toto-golang's
// own key loader gives ECDSA keys another ID; VerifySupplyChain accepts a
// layout signed under either.)
func KeyID(pub crypto.PublicKey) (string, error) {
	k, err := intotoKey(pub)
	if err != nil {
		return "", err
	}
	return k.KeyID, nil
}

// ExportPublicKey writes pub in the form in-toto 1.3.1's tools read a
// public key (in-toto-verify --layout-keys, in-toto-sign --verify): ed25519
// and ECDSA keys as securesystemslib JSON (pass "-t ed25519" or "-t ecdsa"),
// RSA keys as a PEM SubjectPublicKeyInfo (the default "-t rsa").
func ExportPublicKey(pub crypto.PublicKey) ([]byte, error) {
	k, err := intotoKey(pub)
	if err != nil {
		return nil, err
	}
	if k.KeyType == keyTypeRSA {
		return []byte(k.KeyVal.Public + "\n"), nil
	}
	out, err := json.Marshal(publicKeyFile{
		KeyType:             k.KeyType,
		Scheme:              k.Scheme,
		KeyIDHashAlgorithms: k.KeyIDHashAlgorithms,
		KeyVal:              publicKeyVal{Public: k.KeyVal.Public},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding in-toto public key: %w", err)
	}
	return append(out, '\n'), nil
}

// ParsePublicKey reads a public key written by ExportPublicKey or
// by in-toto-keygen: securesystemslib JSON (ed25519, ECDSA) or PEM.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	if len(data) > metadata.MaxDocumentSize {
		return nil, fmt.Errorf("in-toto public key is %d bytes, more than the %d allowed", len(data), metadata.MaxDocumentSize)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("in-toto public key is empty")
	}
	if trimmed[0] != '{' {
		block, _ := pem.Decode(trimmed)
		if block == nil {
			return nil, errors.New("in-toto public key is neither securesystemslib JSON nor PEM")
		}
		if block.Type != pemPublicKey {
			return nil, fmt.Errorf("in-toto public key: PEM block is %q, want %q (is this a private key?)", block.Type, pemPublicKey)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("in-toto public key: %w", err)
		}
		if _, _, err := keyScheme(pub); err != nil {
			return nil, fmt.Errorf("in-toto public key: %w", err)
		}
		return pub, nil
	}
	var f struct {
		KeyType string `json:"keytype"`
		Scheme  string `json:"scheme"`
		KeyVal  struct {
			Public  string `json:"public"`
			Private string `json:"private"`
		} `json:"keyval"`
	}
	if err := json.Unmarshal(trimmed, &f); err != nil {
		return nil, fmt.Errorf("in-toto public key: not valid JSON: %w", err)
	}
	if f.KeyVal.Private != "" {
		return nil, errors.New("in-toto public key: the file holds a private key; give the public key (the .pub file)")
	}
	pub, err := publicKeyFromRecord(f.KeyType, f.Scheme, f.KeyVal.Public)
	if err != nil {
		return nil, fmt.Errorf("in-toto public key: %w", err)
	}
	return pub, nil
}

// publicKeyFile is securesystemslib's on-disk public key, field for field
// and in its order.
type publicKeyFile struct {
	KeyType             string       `json:"keytype"`
	Scheme              string       `json:"scheme"`
	KeyIDHashAlgorithms []string     `json:"keyid_hash_algorithms"`
	KeyVal              publicKeyVal `json:"keyval"`
}

type publicKeyVal struct {
	Public string `json:"public"`
}

// keyScheme returns the in-toto key type and signature scheme of pub.
func keyScheme(pub crypto.PublicKey) (keyType, scheme string, err error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", "", fmt.Errorf("ed25519 public key is %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return keyTypeED25519, schemeED25519, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return keyTypeECDSA, schemeECDSAP256, nil
		case elliptic.P384():
			return keyTypeECDSA, schemeECDSAP384, nil
		}
		return "", "", fmt.Errorf("ECDSA curve %s is not supported by in-toto (use P-256 or P-384)", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return "", "", fmt.Errorf("RSA key has %d bits, at least %d are required", k.N.BitLen(), minRSABits)
		}
		return keyTypeRSA, schemeRSAPSS, nil
	case nil:
		return "", "", errors.New("no public key")
	}
	return "", "", fmt.Errorf("key type %T is not supported (use ed25519, ECDSA P-256/P-384 or RSA)", pub)
}

// intotoKey returns the in-toto key record of pub as securesystemslib 0.26
// (in-toto 1.3.1) writes it, so that its key ID is the one in-toto 1.3.1
// computes for the same key. The ID hashes the public key's text, not the
// key, and securesystemslib writes an ECDSA key's PEM with its final newline
// but an RSA key's without; in-toto-golang's loader trims both, which gives
// ECDSA keys another ID (see keyForms).
func intotoKey(pub crypto.PublicKey) (in_toto.Key, error) {
	keyType, scheme, err := keyScheme(pub)
	if err != nil {
		return in_toto.Key{}, err
	}
	var public string
	if keyType == keyTypeED25519 {
		public = hex.EncodeToString(pub.(ed25519.PublicKey))
	} else {
		pemKey, err := pemkey.Encode(pub)
		if err != nil {
			return in_toto.Key{}, fmt.Errorf("encoding public key: %w", err)
		}
		public = string(pemKey)
		if keyType == keyTypeRSA {
			public = strings.TrimSpace(public)
		}
	}
	k := in_toto.Key{
		KeyIDHashAlgorithms: keyIDHashAlgorithms(),
		KeyType:             keyType,
		KeyVal:              in_toto.KeyVal{Public: public},
		Scheme:              scheme,
	}
	if k.KeyID, err = keyIDOf(k); err != nil {
		return in_toto.Key{}, err
	}
	return k, nil
}

// keyForms returns the records under which pub may have signed: the form of
// intotoKey first, then, for PEM keys, the form with the other trailing
// newline convention (a layout signed with in-toto-golang's tools carries
// an ECDSA owner key ID of that form).
func keyForms(pub crypto.PublicKey) ([]in_toto.Key, error) {
	k, err := intotoKey(pub)
	if err != nil {
		return nil, err
	}
	if k.KeyType == keyTypeED25519 {
		return []in_toto.Key{k}, nil
	}
	alt := k
	if strings.HasSuffix(k.KeyVal.Public, "\n") {
		alt.KeyVal.Public = strings.TrimSpace(k.KeyVal.Public)
	} else {
		alt.KeyVal.Public = k.KeyVal.Public + "\n"
	}
	if alt.KeyID, err = keyIDOf(alt); err != nil {
		return nil, err
	}
	return []in_toto.Key{k, alt}, nil
}

// publicKeyFromRecord decodes the public part of an in-toto key record and
// checks that its type and scheme describe it.
func publicKeyFromRecord(keyType, scheme, public string) (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	switch keyType {
	case keyTypeED25519:
		raw, err := hex.DecodeString(public)
		if err != nil {
			return nil, fmt.Errorf("ed25519 public key is not hex: %w", err)
		}
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("ed25519 public key is %d bytes, want %d", len(raw), ed25519.PublicKeySize)
		}
		pub = ed25519.PublicKey(raw)
	case keyTypeECDSA, keyTypeRSA:
		p, err := pemkey.Decode([]byte(public))
		if err != nil {
			return nil, fmt.Errorf("%s public key is not a PEM %q block: %w", keyType, pemPublicKey, err)
		}
		pub = p
	default:
		return nil, fmt.Errorf("key type %q is not supported (use ed25519, ecdsa or rsa)", keyType)
	}
	gotType, gotScheme, err := keyScheme(pub)
	if err != nil {
		return nil, err
	}
	if gotType != keyType || gotScheme != scheme {
		return nil, fmt.Errorf("key of type %q with scheme %q holds a key for type %q with scheme %q", keyType, scheme, gotType, gotScheme)
	}
	return pub, nil
}

// signMetablock signs the canonical JSON of mb.Signed with signer, in the
// scheme in-toto assigns to the signer's key type, and appends the signature.
// The signer is used through crypto.Signer only, so that keys held in
// hardware sign as well as keys in memory.
func signMetablock(mb *in_toto.Metablock, signer crypto.Signer) (keyID string, err error) {
	key, err := intotoKey(signer.Public())
	if err != nil {
		return "", fmt.Errorf("signing key: %w", err)
	}
	payload, err := mb.GetSignableRepresentation()
	if err != nil {
		return "", fmt.Errorf("encoding canonical JSON: %w", err)
	}
	var sig []byte
	switch key.Scheme {
	case schemeED25519:
		sig, err = signer.Sign(rand.Reader, payload, crypto.Hash(0))
	case schemeECDSAP256:
		d := sha256.Sum256(payload)
		sig, err = signer.Sign(rand.Reader, d[:], crypto.SHA256)
	case schemeECDSAP384:
		d := sha512.Sum384(payload)
		sig, err = signer.Sign(rand.Reader, d[:], crypto.SHA384)
	case schemeRSAPSS:
		// securesystemslib signs with a salt as long as the digest and
		// in-toto-golang verifies exactly that length.
		d := sha256.Sum256(payload)
		sig, err = signer.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	default:
		return "", fmt.Errorf("signature scheme %q is not supported", key.Scheme)
	}
	if err != nil {
		return "", fmt.Errorf("signing with key %s: %w", key.KeyID, err)
	}
	mb.Signatures = append(mb.Signatures, in_toto.Signature{KeyID: key.KeyID, Sig: hex.EncodeToString(sig)})
	// A signer whose Sign does not follow the crypto.Signer conventions (a
	// hardware token that pads RSA with PKCS #1 v1.5, say) is caught here
	// rather than by every verifier.
	if err := mb.VerifySignature(key); err != nil {
		return "", fmt.Errorf("the signature by key %s does not verify with scheme %s: %w", key.KeyID, key.Scheme, err)
	}
	return key.KeyID, nil
}

// marshalMetablock writes a metablock as in-toto's Metablock.Dump does.
func marshalMetablock(mb *in_toto.Metablock) ([]byte, error) {
	out, err := json.MarshalIndent(mb, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding in-toto metablock: %w", err)
	}
	return append(out, '\n'), nil
}

// hashArtifacts records the SHA-256 of each artifact, which is what
// in-toto-run records by default, so that links made by either match.
func hashArtifacts(artifacts map[string][]byte) (map[string]in_toto.HashObj, error) {
	out := make(map[string]in_toto.HashObj, len(artifacts))
	for name, content := range artifacts {
		if err := validateArtifactName(name); err != nil {
			return nil, err
		}
		d := sha256.Sum256(content)
		out[name] = in_toto.HashObj{"sha256": hex.EncodeToString(d[:])}
	}
	return out, nil
}

// validateArtifactName accepts the relative, clean, slash-separated paths
// in-toto records; verifiers clean names before matching rules, so an
// unclean name would be matched as a different artifact than it reads.
func validateArtifactName(name string) error {
	switch {
	case name == "":
		return errors.New("name is empty")
	case strings.Contains(name, `\`):
		return fmt.Errorf("name %q contains a backslash; use / to separate directories", name)
	case path.IsAbs(name):
		return fmt.Errorf("name %q is absolute; artifact names are relative to the step's directory", name)
	case path.Clean(name) != name || name == "." || name == ".." || strings.HasPrefix(name, "../"):
		return fmt.Errorf("name %q is not a clean relative path", name)
	}
	return nil
}

// linkFields and layoutFields are the fields in-toto requires in a link and
// a layout (in-toto-golang refuses a document without any of them, and in
// -toto 1.3.1 computes signatures over exactly these).
var (
	linkFields   = [...]string{"_type", "name", "materials", "products", "byproducts", "command", "environment"}
	layoutFields = [...]string{"_type", "steps", "inspect", "keys", "expires", "readme"}
)

// metablock is an in-toto metablock as it was received. Its signatures are
// verified over the canonical JSON of the signed part exactly as written,
// not as in-toto-golang re-encodes its typed copy: in-toto 1.3.1 writes
// "private": "" into every key of a layout, which in-toto-golang's Key type
// drops, so a re-encoded Python layout no longer matches its signature.
type metablock struct {
	*in_toto.Metablock // Signed is the typed in_toto.Layout or in_toto.Link
	signed             json.RawMessage
}

// VerifySignature verifies the signature by key over the signed part as
// received, with in-toto-golang's verifier for the key's scheme.
func (m *metablock) VerifySignature(key in_toto.Key) error {
	raw := &in_toto.Metablock{Signed: m.signed, Signatures: m.Signatures}
	return raw.VerifySignature(key)
}

// parseMetablock reads an in-toto metablock the way in_toto.LoadMetadata
// does for a file, but from memory and for one expected type: the signed
// part must have every required field and no unknown one. DSSE envelopes are
// refused: in-toto 1.3.1 does not read them.
func parseMetablock(data []byte, wantType string, fields []string, signed any) (*metablock, error) {
	if len(data) > metadata.MaxDocumentSize {
		return nil, fmt.Errorf("%d bytes, more than the %d allowed", len(data), metadata.MaxDocumentSize)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, ok := raw["payloadType"]; ok {
		return nil, errors.New("a DSSE envelope; mtuf reads in-toto metablocks ({\"signed\": ..., \"signatures\": ...})")
	}
	if isNull(raw["signed"]) || isNull(raw["signatures"]) {
		return nil, errors.New("not an in-toto metablock: \"signed\" and \"signatures\" are required")
	}
	var sigs []in_toto.Signature
	if err := json.Unmarshal(raw["signatures"], &sigs); err != nil {
		return nil, fmt.Errorf("signatures: %w", err)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw["signed"], &body); err != nil {
		return nil, fmt.Errorf("signed part: %w", err)
	}
	var typ string
	if err := json.Unmarshal(body["_type"], &typ); err != nil || typ != wantType {
		return nil, fmt.Errorf("signed part has _type %s, want %q", string(body["_type"]), wantType)
	}
	for _, f := range fields {
		if _, ok := body[f]; !ok {
			return nil, fmt.Errorf("%s has no field %q", wantType, f)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw["signed"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(signed); err != nil {
		return nil, fmt.Errorf("%s: %w", wantType, err)
	}
	return &metablock{Metablock: &in_toto.Metablock{Signatures: sigs}, signed: raw["signed"]}, nil
}

func isNull(m json.RawMessage) bool {
	return len(m) == 0 || string(bytes.TrimSpace(m)) == "null"
}

// parseLink reads and validates a link metablock.
func parseLink(data []byte) (*metablock, in_toto.Link, error) {
	var l in_toto.Link
	mb, err := parseMetablock(data, "link", linkFields[:], &l)
	if err != nil {
		return nil, in_toto.Link{}, fmt.Errorf("in-toto link: %w", err)
	}
	mb.Signed = l
	if err := in_toto.ValidateMetablock(*mb.Metablock); err != nil {
		return nil, in_toto.Link{}, fmt.Errorf("in-toto link of step %q: %w", l.Name, err)
	}
	return mb, l, nil
}

// parseLayout reads a layout metablock; it is validated once its signature
// is known to be good.
func parseLayout(data []byte) (*metablock, in_toto.Layout, error) {
	var l in_toto.Layout
	mb, err := parseMetablock(data, "layout", layoutFields[:], &l)
	if err != nil {
		return nil, in_toto.Layout{}, err
	}
	mb.Signed = l
	return mb, l, nil
}

// keyIDOf recomputes the key ID of an in-toto key record from its fields,
// as securesystemslib and in-toto-golang do.
func keyIDOf(k in_toto.Key) (string, error) {
	canonical, err := cjson.EncodeCanonical(map[string]any{
		"keytype":               k.KeyType,
		"scheme":                k.Scheme,
		"keyid_hash_algorithms": k.KeyIDHashAlgorithms,
		"keyval":                map[string]string{"public": k.KeyVal.Public},
	})
	if err != nil {
		return "", fmt.Errorf("encoding key %s: %w", k.KeyID, err)
	}
	d := sha256.Sum256(canonical)
	return hex.EncodeToString(d[:]), nil
}
