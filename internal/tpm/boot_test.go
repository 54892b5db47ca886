package tpm

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-eventlog/extract"
	pb "github.com/google/go-eventlog/proto/state"
	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	"github.com/google/go-eventlog/tpmeventlog"
	"github.com/google/go-tpm/legacy/tpm2"
)

var fixtures = []string{"image-v1.0.0.yaml", "image-v1.0.0-modified-kernel.yaml", "image-v1.1.0.yaml"}

func loadFixture(t *testing.T, name string) *BootChain {
	t.Helper()
	c, err := LoadBootChain(filepath.Join("..", "..", "testdata", "boot", name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pcrBank turns PCR values into the bank go-eventlog replays against.
func pcrBank(t *testing.T, bank crypto.Hash, pcrs map[uint32][]byte) register.PCRBank {
	t.Helper()
	alg, err := tpm2.HashToAlgorithm(bank)
	if err != nil {
		t.Fatal(err)
	}
	b := register.PCRBank{TCGHashAlgo: pb.HashAlgo(alg)}
	for idx, d := range pcrs {
		b.PCRs = append(b.PCRs, register.PCR{Index: int(idx), Digest: d, DigestAlg: bank})
	}
	return b
}

// replay checks the log against the PCRs the way go-tpm-tools' server does
// (replay, then extraction of the firmware state).
func replay(t *testing.T, log []byte, bank crypto.Hash, pcrs map[uint32][]byte) (*pb.FirmwareLogState, error) {
	t.Helper()
	return tpmeventlog.ReplayAndExtract(log, pcrBank(t, bank, pcrs), extract.Opts{})
}

func TestBootFixturesReplay(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			chain := loadFixture(t, name)
			rw := openSim(t, "sim")
			log, err := Boot(rw, chain)
			if err != nil {
				t.Fatal(err)
			}
			banks, err := Banks(rw)
			if err != nil {
				t.Fatal(err)
			}
			for _, bank := range banks {
				pcrs, err := ReadPCRs(rw, bank)
				if err != nil {
					t.Fatal(err)
				}
				// The TPM holds what an independent computation of the
				// chain gives, and the PCRs the chain leaves alone are reset.
				want, err := chain.ExpectedPCRs(bank)
				if err != nil {
					t.Fatal(err)
				}
				for idx := uint32(0); idx < 16; idx++ {
					w, ok := want[idx]
					if !ok {
						w = make([]byte, bank.Size())
					}
					if !bytes.Equal(pcrs[idx], w) {
						t.Errorf("%s PCR %d = %x, want %x", BankName(bank), idx, pcrs[idx], w)
					}
				}
				if bank == crypto.SHA512 {
					continue // go-eventlog replays sha1, sha256 and sha384 only
				}
				state, err := replay(t, log, bank, pcrs)
				if err != nil {
					t.Fatalf("replay %s: %v", BankName(bank), err)
				}
				if got := len(state.GetRawEvents()); got != len(chain.Events) {
					t.Errorf("replay %s: %d events, want %d", BankName(bank), got, len(chain.Events))
				}
				for i, ev := range state.GetRawEvents() {
					if !ev.GetDigestVerified() {
						t.Errorf("replay %s: event %d data does not match its digest", BankName(bank), i)
					}
				}
				if v := string(state.GetPlatform().GetScrtmVersionId()); v != "OVMF 2024.02-2" {
					t.Errorf("replay %s: S-CRTM version %q, want the firmware's", BankName(bank), v)
				}
				if n := len(state.GetEfi().GetApps()); n != 3 {
					t.Errorf("replay %s: %d EFI applications, want 3 (shim, bootloader, kernel)", BankName(bank), n)
				}
			}
		})
	}
}

// eventOffsets returns the offset of each TCG_PCR_EVENT2 in a log written by
// Boot for the given banks.
func eventOffsets(t *testing.T, log []byte, banks []crypto.Hash) []int {
	t.Helper()
	le := binary.LittleEndian
	off := 32 + int(le.Uint32(log[28:32])) // Spec ID event
	var offs []int
	for off < len(log) {
		offs = append(offs, off)
		p := off + 12
		for _, b := range banks {
			p += 2 + b.Size()
		}
		p += 4 + int(le.Uint32(log[p:p+4]))
		off = p
	}
	return offs
}

func TestTamperedLogDoesNotReplay(t *testing.T) {
	chain := loadFixture(t, "image-v1.0.0.yaml")
	rw := openSim(t, "sim")
	log, err := Boot(rw, chain)
	if err != nil {
		t.Fatal(err)
	}
	banks, err := Banks(rw)
	if err != nil {
		t.Fatal(err)
	}
	pcrs, err := ReadPCRs(rw, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replay(t, log, crypto.SHA256, pcrs); err != nil {
		t.Fatalf("untampered log: %v", err)
	}
	kernel := slices.IndexFunc(chain.Events, func(e BootEvent) bool { return e.Description == "kernel" })
	offs := eventOffsets(t, log, banks)
	if len(offs) != len(chain.Events) {
		t.Fatalf("found %d events in the log, want %d", len(offs), len(chain.Events))
	}
	sha256At := offs[kernel] + 12
	for _, b := range banks {
		if b == crypto.SHA256 {
			break
		}
		sha256At += 2 + b.Size()
	}
	sha256At += 2

	modified := loadFixture(t, "image-v1.0.0-modified-kernel.yaml")
	tests := map[string]func([]byte) []byte{
		"kernel digest changed": func(l []byte) []byte {
			l[sha256At] ^= 1
			return l
		},
		"kernel event removed": func(l []byte) []byte {
			return append(l[:offs[kernel]:offs[kernel]], l[offs[kernel+1]:]...)
		},
		"kernel event moved to PCR 5": func(l []byte) []byte {
			binary.LittleEndian.PutUint32(l[offs[kernel]:], 5)
			return l
		},
		"log of another boot": func([]byte) []byte {
			var buf bytes.Buffer
			if err := writeSpecIDEvent(&buf, banks); err != nil {
				t.Fatal(err)
			}
			for _, ev := range modified.Events {
				var algs []tpm2.Algorithm
				var ds [][]byte
				for _, b := range banks {
					a, _ := tpm2.HashToAlgorithm(b)
					algs = append(algs, a)
					h := b.New()
					h.Write(ev.Data)
					ds = append(ds, h.Sum(nil))
				}
				writeEvent2(&buf, ev, algs, ds)
			}
			return buf.Bytes()
		},
	}
	for name, tamper := range tests {
		t.Run(name, func(t *testing.T) {
			bad := tamper(bytes.Clone(log))
			_, err := replay(t, bad, crypto.SHA256, pcrs)
			if err == nil {
				t.Fatal("tampered log replayed")
			}
			// go-eventlog names the PCRs that failed to replay, among
			// them PCR 4, where the kernel is measured.
			if !strings.Contains(err.Error(), "failed to replay") || !strings.Contains(err.Error(), "4") {
				t.Fatalf("error %q is not a replay failure naming PCR 4", err)
			}
		})
	}
}

func TestBootRefusesBootedTPM(t *testing.T) {
	chain := loadFixture(t, "image-v1.0.0.yaml")
	rw := openSim(t, "sim")
	if _, err := Boot(rw, chain); err != nil {
		t.Fatal(err)
	}
	_, err := Boot(rw, chain)
	if err == nil || !strings.Contains(err.Error(), "not in its reset state") {
		t.Fatalf("second Boot error = %v, want one saying the PCRs are not reset", err)
	}
}

func TestBootRejectsInvalidChain(t *testing.T) {
	rw := openSim(t, "sim")
	for name, c := range map[string]*BootChain{
		"nil":      nil,
		"empty":    {Name: "x"},
		"drtm pcr": {Name: "x", Events: []BootEvent{{PCR: 17, Type: tcg.Ipl, Description: "d", Data: []byte("x")}}},
		"no data":  {Name: "x", Events: []BootEvent{{PCR: 8, Type: tcg.Ipl, Description: "d"}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Boot(rw, c); err == nil {
				t.Fatal("Boot succeeded, want an error")
			}
		})
	}
	// Nothing was extended.
	pcrs, err := ReadPCRs(rw, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pcrs[8], make([]byte, 32)) {
		t.Error("an invalid chain extended PCR 8")
	}
}

func TestFixturesDifferWhereTheyShould(t *testing.T) {
	base := loadFixture(t, "image-v1.0.0.yaml")
	for name, wantDiff := range map[string][]uint32{
		"image-v1.0.0-modified-kernel.yaml": {4},
		"image-v1.1.0.yaml":                 {4, 8, 9},
	} {
		other := loadFixture(t, name)
		for _, bank := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
			a, err := base.ExpectedPCRs(bank)
			if err != nil {
				t.Fatal(err)
			}
			b, err := other.ExpectedPCRs(bank)
			if err != nil {
				t.Fatal(err)
			}
			var diff []uint32
			for idx := uint32(0); idx < NumPCRs; idx++ {
				if !bytes.Equal(a[idx], b[idx]) {
					diff = append(diff, idx)
				}
			}
			if !slices.Equal(diff, wantDiff) {
				t.Errorf("%s vs image-v1.0.0.yaml (%s): PCRs %v differ, want %v", name, BankName(bank), diff, wantDiff)
			}
		}
	}
}
