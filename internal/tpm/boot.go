package tpm

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-eventlog/tcg"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
)

// Boot measures the chain's events, in order, into every allocated PCR bank of
// the TPM, as firmware and boot loaders would, and returns the matching TCG PC
// Client crypto-agile event log: the Spec ID Event03 header as an EV_NO_ACTION
// event in SHA-1 format, then one TCG_PCR_EVENT2 per event with a digest for
// every bank.
//
// Only a TPM whose PCRs describe no real boot may be booted (see IsTestTPM);
// Boot refuses a TPM whose PCRs used by the chain are not in their reset state,
// because the log would then not replay.
func Boot(rw io.ReadWriter, chain *BootChain) ([]byte, error) {
	if err := chain.Validate(); err != nil {
		return nil, fmt.Errorf("boot chain %q: %w", chainName(chain), err)
	}
	_, banks, err := allocatedBanks(rw)
	if err != nil {
		return nil, err
	}
	if len(banks) == 0 {
		return nil, errors.New("the TPM has no allocated PCR bank that can be extended")
	}
	algs := make([]tpm2.Algorithm, len(banks))
	for i, b := range banks {
		if algs[i], err = tpm2.HashToAlgorithm(b); err != nil {
			return nil, fmt.Errorf("PCR bank %s: %w", BankName(b), err)
		}
	}
	if err := checkReset(rw, banks, chain); err != nil {
		return nil, err
	}

	var log bytes.Buffer
	if err := writeSpecIDEvent(&log, banks); err != nil {
		return nil, err
	}
	for i, ev := range chain.Events {
		digests := make([][]byte, len(banks))
		for j, b := range banks {
			h := b.New()
			h.Write(ev.Data)
			digests[j] = h.Sum(nil)
			if err := tpm2.PCRExtend(rw, tpmutil.Handle(ev.PCR), algs[j], digests[j], ""); err != nil {
				return nil, fmt.Errorf("extend PCR %d (%s bank) with events[%d] (%s): %w", ev.PCR, BankName(b), i, ev.Description, err)
			}
		}
		writeEvent2(&log, ev, algs, digests)
	}
	return log.Bytes(), nil
}

func chainName(c *BootChain) string {
	if c == nil {
		return ""
	}
	return c.Name
}

// checkReset refuses to boot a TPM that has already measured into the PCRs
// the chain uses.
func checkReset(rw io.ReadWriter, banks []crypto.Hash, chain *BootChain) error {
	used := make(map[uint32]bool)
	for _, ev := range chain.Events {
		used[ev.PCR] = true
	}
	for _, b := range banks {
		pcrs, err := ReadPCRs(rw, b)
		if err != nil {
			return err
		}
		for idx := range used {
			if !bytes.Equal(pcrs[idx], make([]byte, b.Size())) {
				return fmt.Errorf("PCR %d (%s bank) is not in its reset state: this TPM has already measured a boot; use a fresh simulator or restart swtpm", idx, BankName(b))
			}
		}
	}
	return nil
}

// The Spec ID event (TCG_EfiSpecIDEventStruct), as in the TCG PC Client
// Platform Firmware Profile, section 10.4.5.1.
var specIDSignature = [16]byte{'S', 'p', 'e', 'c', ' ', 'I', 'D', ' ', 'E', 'v', 'e', 'n', 't', '0', '3', 0}

const (
	platformClassClient = 0
	specVersionMinor    = 0
	specVersionMajor    = 2
	specErrata          = 2
	uintnSize64         = 2 // UINTN is 64 bits
)

func writeSpecIDEvent(w *bytes.Buffer, banks []crypto.Hash) error {
	var body bytes.Buffer
	le := binary.LittleEndian
	body.Write(specIDSignature[:])
	_ = binary.Write(&body, le, uint32(platformClassClient))
	body.Write([]byte{specVersionMinor, specVersionMajor, specErrata, uintnSize64})
	_ = binary.Write(&body, le, uint32(len(banks)))
	for _, b := range banks {
		alg, err := tpm2.HashToAlgorithm(b)
		if err != nil {
			return fmt.Errorf("PCR bank %s: %w", BankName(b), err)
		}
		_ = binary.Write(&body, le, uint16(alg))
		_ = binary.Write(&body, le, uint16(b.Size()))
	}
	body.WriteByte(0) // no vendor info

	// TCG_PCR_EVENT: the SHA-1 format every parser reads before switching
	// to crypto-agile events.
	_ = binary.Write(w, le, uint32(0))            // PCRIndex
	_ = binary.Write(w, le, uint32(tcg.NoAction)) // EventType
	w.Write(make([]byte, 20))                     // Digest
	_ = binary.Write(w, le, uint32(body.Len()))   // EventSize
	w.Write(body.Bytes())                         // Event
	return nil
}

// writeEvent2 writes one TCG_PCR_EVENT2.
func writeEvent2(w *bytes.Buffer, ev BootEvent, algs []tpm2.Algorithm, digests [][]byte) {
	le := binary.LittleEndian
	_ = binary.Write(w, le, ev.PCR)
	_ = binary.Write(w, le, uint32(ev.Type))
	_ = binary.Write(w, le, uint32(len(digests))) // TPML_DIGEST_VALUES.count
	for i, d := range digests {
		_ = binary.Write(w, le, uint16(algs[i]))
		w.Write(d)
	}
	_ = binary.Write(w, le, uint32(len(ev.Data)))
	w.Write(ev.Data)
}
