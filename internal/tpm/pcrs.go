package tpm

import (
	"crypto"
	_ "crypto/sha1" // SHA-1 banks are still allocated on most TPMs
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"
)

// NumPCRs is the number of PCRs in a bank of a PC Client TPM.
const NumPCRs = client.NumPCRs

// BankName is the name of a PCR bank as TPM tools and measurements documents
// spell it: sha1, sha256, sha384, sha512.
func BankName(h crypto.Hash) string {
	switch h {
	case crypto.SHA1:
		return "sha1"
	case crypto.SHA256:
		return "sha256"
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	default:
		return strings.ToLower(strings.ReplaceAll(h.String(), "-", ""))
	}
}

// ParseBank is the inverse of BankName.
func ParseBank(name string) (crypto.Hash, error) {
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		if strings.EqualFold(name, BankName(h)) {
			return h, nil
		}
	}
	return 0, fmt.Errorf("unknown PCR bank %q: use sha1, sha256, sha384 or sha512", name)
}

// allocatedBanks returns the TPM's allocated PCR selections whose hash Go
// implements, with that hash.
func allocatedBanks(rw io.ReadWriter) ([]tpm2.PCRSelection, []crypto.Hash, error) {
	sels, err := client.AllocatedPCRs(rw)
	if err != nil {
		return nil, nil, fmt.Errorf("list allocated PCR banks: %w", err)
	}
	var outSels []tpm2.PCRSelection
	var hashes []crypto.Hash
	for _, sel := range sels {
		h, err := sel.Hash.Hash()
		if err != nil || !h.Available() {
			// A bank Go cannot compute (SM3) can be neither extended nor
			// replayed here; it is left to the TPM.
			continue
		}
		outSels = append(outSels, sel)
		hashes = append(hashes, h)
	}
	return outSels, hashes, nil
}

// Banks returns the hash algorithms of the TPM's allocated PCR banks, in the
// TPM's order. Banks of hashes Go does not implement (SM3) are left out.
func Banks(rw io.ReadWriter) ([]crypto.Hash, error) {
	_, hashes, err := allocatedBanks(rw)
	return hashes, err
}

// ReadPCRs reads every PCR of one bank (all 24 on a PC Client TPM), keyed by
// PCR index.
func ReadPCRs(rw io.ReadWriter, bank crypto.Hash) (map[uint32][]byte, error) {
	sels, hashes, err := allocatedBanks(rw)
	if err != nil {
		return nil, err
	}
	var sel *tpm2.PCRSelection
	var names []string
	for i, h := range hashes {
		names = append(names, BankName(h))
		if h == bank {
			sel = &sels[i]
		}
	}
	if sel == nil {
		return nil, fmt.Errorf("PCR bank %s is not allocated on this TPM (allocated: %s): choose one of those banks", BankName(bank), strings.Join(names, ", "))
	}
	pcrs, err := client.ReadPCRs(rw, *sel)
	if err != nil {
		return nil, fmt.Errorf("read %s PCRs: %w", BankName(bank), err)
	}
	out := make(map[uint32][]byte, len(sel.PCRs))
	for _, idx := range sel.PCRs {
		d, ok := pcrs.GetPcrs()[uint32(idx)]
		if !ok {
			return nil, fmt.Errorf("read %s PCRs: the TPM returned no value for PCR %d", BankName(bank), idx)
		}
		if len(d) != bank.Size() {
			return nil, fmt.Errorf("read %s PCRs: PCR %d has %d bytes, want %d", BankName(bank), idx, len(d), bank.Size())
		}
		out[uint32(idx)] = d
	}
	return out, nil
}
