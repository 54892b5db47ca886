package metadata

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Parse reads one measurements document, JSON or YAML, and validates it.
//
// Besides the layout that Marshal writes, it accepts the older layouts still
// found in the wild: a PCR given as a bare digest string (meaning enforced),
// digests in base64 instead of hex (see decodeDigest for how the two are told
// apart), and a document without "hash", which is read as sha256 because
// every layout that predates the field described the sha256 bank.
//
// Parsing is strict: unknown fields, duplicate keys, PCR indices other than
// the decimal numbers 0..23, and digests of the wrong length are errors. All
// problems are reported together in a *ValidationError; each problem with one
// PCR is a *PCRError.
func Parse(data []byte) (*Measurements, error) {
	v, err := parseTree(data)
	if err != nil {
		return nil, fmt.Errorf("reading measurements: %w", err)
	}
	var p problems
	m := docFromTree(v, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

var docFields = []string{"image", "platform", "hash", "pcrs"}

func docFromTree(v *value, p *problems) *Measurements {
	if err := expectObject(v, "a measurements document"); err != nil {
		p.add(err)
		return nil
	}
	p.addAll("", checkKeys(v, docFields...))
	m := &Measurements{}
	var err error
	m.Image, err = stringField(v, "image", true)
	p.add(err)
	if err == nil {
		p.add(v.get("image").at(ValidateImage(m.Image)))
	}
	m.Platform, err = stringField(v, "platform", true)
	p.add(err)
	if err == nil {
		p.add(v.get("platform").at(ValidatePlatform(m.Platform)))
	}
	m.Hash, err = stringField(v, "hash", false)
	switch {
	case err != nil:
		p.add(err)
		return m
	case m.Hash == "":
		m.Hash = HashSHA256
	}
	if _, err := DigestSize(m.Hash); err != nil {
		p.add(v.get("hash").at(err))
		return m
	}
	pcrs := v.get("pcrs")
	if pcrs == nil || pcrs.kind == kindNull {
		p.add(v.at(errors.New("pcrs is missing")))
		return m
	}
	m.PCRs = pcrsFromTree(pcrs, m.Hash, "", p)
	return m
}

// pcrsFromTree reads a map of PCR index to expected value; prefix names the
// map's place in the file for error messages.
func pcrsFromTree(v *value, hash, prefix string, p *problems) map[uint32]PCR {
	if err := expectObject(v, "pcrs"); err != nil {
		p.addAll(prefix, []error{err})
		return nil
	}
	if len(v.keys) == 0 {
		p.addAll(prefix, []error{v.at(errNoPCRs)})
		return nil
	}
	pcrs := make(map[uint32]PCR, len(v.keys))
	for i, key := range v.keys {
		val := v.vals[i]
		idx, err := parseIndex(key)
		if err != nil {
			p.addAll(prefix, []error{val.at(err)})
			continue
		}
		pcr, errs := pcrFromTree(val, hash)
		for _, err := range errs {
			p.addAll(prefix, []error{val.at(&PCRError{Index: idx, Err: err})})
		}
		if len(errs) == 0 {
			pcrs[idx] = pcr
		}
	}
	return pcrs
}

// parseIndex accepts exactly the canonical decimal spelling of 0..23, so
// that two keys can never name the same PCR ("4" and "04").
func parseIndex(key string) (uint32, error) {
	if key == "" {
		return 0, errors.New(`PCR "": index is empty`)
	}
	for _, r := range key {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("PCR %q: index must be a decimal number 0..%d", truncate(key, 100), MaxPCRIndex)
		}
	}
	if len(key) > 1 && key[0] == '0' {
		canonical := strings.TrimLeft(key, "0")
		if canonical == "" {
			canonical = "0"
		}
		return 0, fmt.Errorf("PCR %q: index must be written without leading zeros (%s)", truncate(key, 100), truncate(canonical, 100))
	}
	n, err := strconv.ParseUint(key, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("PCR %s: %w", truncate(key, 100), errIndexRange)
	}
	if n > MaxPCRIndex {
		return 0, &PCRError{Index: uint32(n), Err: errIndexRange}
	}
	return uint32(n), nil
}

var pcrFields = []string{"expected", "warnOnly"}

// pcrFromTree reads one PCR: a bare digest string (enforced) or an object
// {"expected": digest, "warnOnly": bool}.
func pcrFromTree(v *value, hash string) (PCR, []error) {
	switch v.kind {
	case kindString:
		d, err := decodeDigest(v.str, hash)
		if err != nil {
			return PCR{}, []error{err}
		}
		return PCR{Expected: d}, nil
	case kindObject:
		errs := unknownFields(v, pcrFields...) // the caller adds the line
		var pcr PCR
		switch exp := v.get("expected"); {
		case exp == nil || exp.kind == kindNull:
			errs = append(errs, errors.New("expected digest is missing"))
		case exp.kind != kindString:
			errs = append(errs, fmt.Errorf("expected digest must be a string, not %s", exp.kind))
		default:
			d, err := decodeDigest(exp.str, hash)
			if err != nil {
				errs = append(errs, err)
			}
			pcr.Expected = d
		}
		if w := v.get("warnOnly"); w != nil {
			if w.kind != kindBool {
				errs = append(errs, fmt.Errorf("warnOnly must be true or false, not %s", w.kind))
			}
			pcr.WarnOnly = w.b
		}
		return pcr, errs
	case kindNull:
		return PCR{}, []error{errors.New("has no value")}
	default:
		return PCR{}, []error{fmt.Errorf("must be a digest string or an object with expected and warnOnly, not %s", v.kind)}
	}
}

// decodeDigest decodes a digest of the given bank from hex or base64.
//
// The encoding is decided by length, given the bank: a digest of n bytes is
// 2n hex characters, or 4*ceil(n/3) characters of padded standard base64.
// For sha256 that is 64 hex or 44 base64 characters, for sha384 96 hex or 64
// base64 characters; these lengths are all distinct within a bank, so one
// string has at most one reading that yields a digest of the bank's size:
//
//   - A string of exactly 2n hex digits is hex.
//   - Otherwise a string that is valid padded standard base64 of n bytes is base64.
//
// The only string that reads as a full digest in both encodings is one of 64
// hex digits: hex of 32 bytes and base64 of 48 bytes. It is hex in a sha256
// document and base64 in a sha384 document, where 64 hex digits could not be
// a complete digest anyway. (This matters: the base64 of an all-zero sha384
// PCR, "AAAA...", consists of hex digits only.)
//
// Anything else is an error that reports the length the string would have
// in the encoding it looks like, so "31 bytes, sha256 needs 32" points at a
// truncated copy.
func decodeDigest(s, hash string) ([]byte, error) {
	size, err := DigestSize(hash)
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, errors.New("expected digest is empty")
	}
	if len(s) == 2*size && isHex(s) {
		return hex.DecodeString(s)
	}
	// The base64 decoder skips line breaks; a digest has none.
	var b64 []byte
	b64Err := errors.New("not base64")
	if !strings.ContainsAny(s, "\r\n") {
		b64, b64Err = base64.StdEncoding.Strict().DecodeString(s)
	}
	if b64Err == nil && len(b64) == size {
		return b64, nil
	}
	switch {
	case isHex(s) && len(s)%2 == 0:
		return nil, checkDigestLen(len(s)/2, size, hash)
	case b64Err == nil:
		return nil, checkDigestLen(len(b64), size, hash)
	default:
		return nil, fmt.Errorf("expected digest %q is neither hex nor padded base64", truncate(s, 100))
	}
}

func isHex(s string) bool {
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ParseRelease reads a release measurements list, the layout that published
// the measurements of every attestation variant of one image version in one
// file:
//
//	{"version": "v2.15.0", "ref": "-", "stream": "stable",
//	 "list": [{"csp": "Azure", "attestationVariant": "azure-sev-snp",
//	           "measurements": {"4": {"expected": "<hex>", "warnOnly": false}, ...}}, ...]}
//
// It returns one document per list entry, in list order, with the version as
// image and the attestation variant as platform. Where entries of several
// cloud providers share a variant (OpenStack, QEMU and STACKIT all attest
// with qemu-vtpm), each of them keeps its provider in the platform, as
// ReleasePlatform names it: qemu-vtpm-openstack, qemu-vtpm-qemu. The
// layout has no hash field; its digests are sha256.
func ParseRelease(data []byte) ([]*Measurements, error) {
	v, err := parseTree(data)
	if err != nil {
		return nil, fmt.Errorf("reading release measurements: %w", err)
	}
	return releaseFromTree(v)
}

var (
	releaseFields      = []string{"version", "ref", "stream", "list"}
	releaseEntryFields = []string{"csp", "attestationVariant", "measurements"}
)

func releaseFromTree(v *value) ([]*Measurements, error) {
	var p problems
	if err := expectObject(v, "a release measurements list"); err != nil {
		p.add(err)
		return nil, p.err()
	}
	p.addAll("", checkKeys(v, releaseFields...))
	version, err := stringField(v, "version", true)
	p.add(err)
	if err == nil {
		p.add(v.get("version").at(ValidateImage(version)))
	}
	for _, f := range []string{"ref", "stream"} {
		_, err := stringField(v, f, false)
		p.add(err)
	}
	list := v.get("list")
	switch {
	case list == nil || list.kind == kindNull:
		p.add(v.at(errors.New("list is missing")))
		return nil, p.err()
	case list.kind != kindArray:
		p.add(list.at(fmt.Errorf("list must be a list, not %s", list.kind)))
		return nil, p.err()
	case len(list.items) == 0:
		p.add(list.at(errors.New("list is empty")))
		return nil, p.err()
	}
	var docs []*Measurements
	// Per document: its entry's csp, variant, list index and place in
	// messages.
	var csps, entryVariants, wheres []string
	var entries []int
	variants := make(map[string]int)
	for i, e := range list.items {
		where := fmt.Sprintf("list[%d]", i)
		if err := expectObject(e, where); err != nil {
			p.add(err)
			continue
		}
		p.addAll(where, checkKeys(e, releaseEntryFields...))
		csp, err := stringField(e, "csp", false)
		p.addAll(where, []error{err})
		variant, err := stringField(e, "attestationVariant", true)
		p.addAll(where, []error{err})
		if err == nil {
			if err := ValidatePlatform(variant); err != nil {
				p.addAll(where, []error{e.get("attestationVariant").at(err)})
			} else {
				where = fmt.Sprintf("list[%d] (%s)", i, variant)
				variants[variant]++
			}
		}
		ms := e.get("measurements")
		if ms == nil || ms.kind == kindNull {
			p.addAll(where, []error{e.at(errors.New("measurements is missing"))})
			continue
		}
		pcrs := pcrsFromTree(ms, HashSHA256, where, &p)
		docs = append(docs, &Measurements{Image: version, Platform: variant, Hash: HashSHA256, PCRs: pcrs})
		csps, entryVariants, wheres, entries = append(csps, csp), append(entryVariants, variant), append(wheres, where), append(entries, i)
	}
	// Name the platforms once every variant is counted: a variant that
	// several providers share takes each one's name.
	seen := make(map[string]int)
	for i, m := range docs {
		if m.Platform == "" || variants[m.Platform] < 2 {
			continue
		}
		if csps[i] == "" {
			p.addAll(wheres[i], []error{fmt.Errorf("attestation variant %q appears more than once, and this entry names no csp to tell it apart", m.Platform)})
			continue
		}
		platform, err := ReleasePlatform(m.Platform, csps[i])
		if err != nil {
			p.addAll(wheres[i], []error{err})
			continue
		}
		m.Platform = platform
	}
	for i, m := range docs {
		if m.Platform == "" {
			continue
		}
		if j, dup := seen[m.Platform]; dup {
			p.addAll(wheres[i], []error{fmt.Errorf("attestation variant %q of csp %q already appears in list[%d]", entryVariants[i], csps[i], entries[j])})
		}
		seen[m.Platform] = i
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	for _, m := range docs {
		if err := m.Validate(); err != nil {
			return nil, err
		}
	}
	return docs, nil
}

// ReleasePlatform is the platform of a release list entry whose
// attestation variant other providers' entries share: the variant, then the
// provider in lower case, as in qemu-vtpm-openstack.
func ReleasePlatform(variant, csp string) (string, error) {
	platform := variant + "-" + strings.ToLower(csp)
	if err := ValidatePlatform(platform); err != nil {
		return "", fmt.Errorf("csp %q: %w", csp, err)
	}
	return platform, nil
}

// DefaultCloudPlatforms maps the cloud names of the per-cloud measurements
// YAML to the attestation variant each cloud's images were attested with.
// It returns a new map on every call, for callers to adjust.
func DefaultCloudPlatforms() map[string]string {
	return map[string]string{
		"aws":   "aws-nitro-tpm",
		"azure": "azure-sev-snp",
		"gcp":   "gcp-sev-es",
		"qemu":  "qemu-vtpm",
	}
}

var legacyCloudFields = []string{"image", "measurements"}

// ParseLegacyYAML reads the per-cloud measurements.yaml of the project's seed,
// a map of cloud name to {image, measurements: {index: base64 digest}}, where
// PCRs that are not pinned are commented out:
//
//	azure:
//	  image: /subscriptions/.../versions/0.0.1655304334
//	  measurements:
//	    # 0: q27i...= # Unstable: UEFI on Azure
//	    4: Mnl6...=
//
// Every listed PCR is enforced and the bank is sha256. The file names no
// image version (its image fields are cloud image references, which are
// checked to be strings and otherwise ignored), so the caller gives the
// version. platformForCloud maps cloud names to platforms; nil means
// DefaultCloudPlatforms. Documents are returned in file order.
func ParseLegacyYAML(data []byte, image string, platformForCloud map[string]string) ([]*Measurements, error) {
	if err := ValidateImage(image); err != nil {
		return nil, fmt.Errorf("reading legacy measurements: %w", err)
	}
	v, err := parseTree(data)
	if err != nil {
		return nil, fmt.Errorf("reading legacy measurements: %w", err)
	}
	return legacyFromTree(v, image, platformForCloud)
}

func legacyFromTree(v *value, image string, platformForCloud map[string]string) ([]*Measurements, error) {
	if platformForCloud == nil {
		platformForCloud = DefaultCloudPlatforms()
	}
	var p problems
	if err := expectObject(v, "a per-cloud measurements file"); err != nil {
		p.add(err)
		return nil, p.err()
	}
	if len(v.keys) == 0 {
		p.add(errors.New("the file lists no cloud"))
		return nil, p.err()
	}
	var docs []*Measurements
	seen := make(map[string]string)
	for i, cloud := range v.keys {
		e := v.vals[i]
		where := fmt.Sprintf("cloud %q", truncate(cloud, 100))
		platform, ok := platformForCloud[cloud]
		if !ok {
			known := make([]string, 0, len(platformForCloud))
			for c := range platformForCloud {
				known = append(known, c)
			}
			slices.Sort(known)
			p.add(e.at(fmt.Errorf("%s: no platform is known for it (known clouds: %s)", where, strings.Join(known, ", "))))
			continue
		}
		if err := ValidatePlatform(platform); err != nil {
			p.add(fmt.Errorf("%s: %w", where, err))
			continue
		}
		if other, dup := seen[platform]; dup {
			p.add(e.at(fmt.Errorf("%s: platform %s is already given by cloud %q", where, platform, other)))
			continue
		}
		seen[platform] = cloud
		if err := expectObject(e, where); err != nil {
			p.add(err)
			continue
		}
		p.addAll(where, checkKeys(e, legacyCloudFields...))
		_, err := stringField(e, "image", false)
		p.addAll(where, []error{err})
		ms := e.get("measurements")
		if ms == nil || ms.kind == kindNull {
			p.addAll(where, []error{e.at(errors.New("measurements is missing or lists no PCR"))})
			continue
		}
		pcrs := pcrsFromTree(ms, HashSHA256, where, &p)
		docs = append(docs, &Measurements{Image: image, Platform: platform, Hash: HashSHA256, PCRs: pcrs})
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	for _, m := range docs {
		if err := m.Validate(); err != nil {
			return nil, err
		}
	}
	return docs, nil
}

// ErrNoImageVersion is the error of ParseAll for a file that names no
// image version (the legacy per-cloud layout) when the caller gives none.
var ErrNoImageVersion = errors.New("the per-cloud layout names no image version: give the image version it is for")

// ParseAll reads a file in any layout Parse, ParseRelease or ParseLegacyYAML
// understands and returns its documents. image is the image version the
// caller expects: documents of another version are refused, and the legacy
// layout, which names no version, requires it. An empty image accepts the
// version the file states.
func ParseAll(data []byte, image string) ([]*Measurements, error) {
	v, err := parseTree(data)
	if err != nil {
		return nil, fmt.Errorf("reading measurements: %w", err)
	}
	var docs []*Measurements
	switch {
	case v.kind == kindObject && (v.has("list") || v.has("version")):
		docs, err = releaseFromTree(v)
	case v.kind == kindObject && slices.ContainsFunc(docFields, v.has):
		var p problems
		m := docFromTree(v, &p)
		if err = p.err(); err == nil {
			err = m.Validate()
		}
		docs = []*Measurements{m}
	case v.kind == kindObject && len(v.vals) > 0 && !slices.ContainsFunc(v.vals, func(c *value) bool { return c.kind != kindObject }):
		if image == "" {
			return nil, fmt.Errorf("reading legacy measurements: %w", ErrNoImageVersion)
		}
		if err := ValidateImage(image); err != nil {
			return nil, fmt.Errorf("reading legacy measurements: %w", err)
		}
		docs, err = legacyFromTree(v, image, nil)
	default:
		return nil, errors.New("reading measurements: unrecognized layout: expected a measurements document (image, platform, hash, pcrs), " +
			"a release list (version, list) or a per-cloud file (<cloud>: {image, measurements})")
	}
	if err != nil {
		return nil, err
	}
	for _, m := range docs {
		if image != "" && m.Image != image {
			return nil, fmt.Errorf("reading measurements: the file is for image %s, not %s", m.Image, image)
		}
	}
	return docs, nil
}
