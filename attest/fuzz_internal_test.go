package attest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"os"
	"testing"

	"github.com/google/go-eventlog/tcg"

	"github.com/mtuf/mtuf/internal/tpm"
)

// softwareBoot measures a boot chain description into SHA-256 PCRs in
// software and returns the crypto-agile event log that explains them, as
// a node booted with it would serve.
func softwareBoot(f *testing.F, path string) ([]byte, map[uint32][]byte) {
	f.Helper()
	chain, err := tpm.LoadBootChain(path)
	if err != nil {
		f.Fatal(err)
	}
	le := binary.LittleEndian
	var log, spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	_ = binary.Write(&spec, le, uint32(0))    // platform class: client
	spec.Write([]byte{0, 2, 2, 2})            // spec 2.0 errata 2, 64-bit UINTN
	_ = binary.Write(&spec, le, uint32(1))    // one bank
	_ = binary.Write(&spec, le, uint16(0x0b)) // TPM_ALG_SHA256
	_ = binary.Write(&spec, le, uint16(32))
	spec.WriteByte(0)
	_ = binary.Write(&log, le, uint32(0))
	_ = binary.Write(&log, le, uint32(tcg.NoAction))
	log.Write(make([]byte, 20))
	_ = binary.Write(&log, le, uint32(spec.Len()))
	log.Write(spec.Bytes())

	pcrs := make(map[uint32][]byte)
	for _, ev := range chain.Events {
		d := sha256.Sum256(ev.Data)
		pcrs[ev.PCR] = extend(pcrs[ev.PCR], d[:])
		_ = binary.Write(&log, le, ev.PCR)
		_ = binary.Write(&log, le, uint32(ev.Type))
		_ = binary.Write(&log, le, uint32(1))
		_ = binary.Write(&log, le, uint16(0x0b))
		log.Write(d[:])
		_ = binary.Write(&log, le, uint32(len(ev.Data)))
		log.Write(ev.Data)
	}
	return log.Bytes(), pcrs
}

// extend is a SHA-256 PCR extend, from the reset value when pcr is nil.
func extend(pcr, digest []byte) []byte {
	if pcr == nil {
		pcr = make([]byte, sha256.Size)
	}
	h := sha256.New()
	h.Write(pcr)
	h.Write(digest)
	return h.Sum(nil)
}

// FuzzReplayEventLog feeds arbitrary event logs to replay against the PCRs
// of a real boot. It must never panic; a log that cannot be parsed is an
// error with nothing else; and a log it says replays must really extend
// every PCR it has events for to the quoted value, with events only in
// quoted PCRs.
func FuzzReplayEventLog(f *testing.F) {
	good, pcrs := softwareBoot(f, "../testdata/boot/image-v1.0.0.yaml")
	modified, _ := softwareBoot(f, "../testdata/boot/image-v1.0.0-modified-kernel.yaml")
	f.Add(good)
	f.Add(modified)
	f.Add(good[:len(good)/2])
	f.Add(good[:4])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		log, bad, err := replay(raw, crypto.SHA256, pcrs)
		if err != nil {
			if log != nil || bad != nil {
				t.Fatalf("results returned with an error: %v", err)
			}
			return
		}
		if len(bad) > 0 {
			if log != nil {
				t.Fatal("a log that does not replay was returned")
			}
			for _, i := range bad {
				if _, ok := pcrs[i]; !ok {
					t.Fatalf("PCR %d reported as not replaying, but it was not quoted", i)
				}
			}
			return
		}
		if log == nil {
			t.Fatal("no log, no error and no PCR that fails")
		}
		for idx, events := range log.byPCR {
			want, ok := pcrs[idx]
			if !ok {
				t.Fatalf("events in PCR %d, which was not quoted", idx)
			}
			var got []byte
			for _, e := range events {
				if e.PCR != idx {
					t.Fatalf("event %d of PCR %d filed under PCR %d", e.Seq, e.PCR, idx)
				}
				d, err := hex.DecodeString(e.Digest)
				if err != nil || len(d) != sha256.Size {
					t.Fatalf("event %d has a %d-byte SHA-256 digest", e.Seq, len(d))
				}
				got = extend(got, d)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("PCR %d: the accepted events extend to %x, quoted %x", idx, got, want)
			}
		}
	})
}

// FuzzParseAKRoots checks that no CA file makes ParseAKRoots panic, that
// a refused file gives an error and no certificate, and that an accepted
// one holds only CA certificates, each of which parses back alone.
func FuzzParseAKRoots(f *testing.F) {
	for _, name := range []string{"test-ak-ca.pem", "other-test-ak-ca.pem"} {
		data, err := os.ReadFile("../testdata/ak-ca/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	a, _ := os.ReadFile("../testdata/ak-ca/test-ak-ca.pem")
	b, _ := os.ReadFile("../testdata/ak-ca/other-test-ak-ca.pem")
	f.Add(append(append([]byte{}, a...), b...))
	f.Add(append(append([]byte{}, a...), "junk"...))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseAKRoots(data)
		if err != nil {
			if certs != nil {
				t.Fatalf("certificates returned with an error: %v", err)
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no certificate and no error")
		}
		for i, c := range certs {
			if c == nil || !c.BasicConstraintsValid || !c.IsCA {
				t.Fatalf("certificate %d is not a CA's", i+1)
			}
			back, err := ParseAKRoots(pemCert(c.Raw))
			if err != nil || len(back) != 1 || !back[0].Equal(c) {
				t.Fatalf("certificate %d does not parse back alone: %v", i+1, err)
			}
		}
	})
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
