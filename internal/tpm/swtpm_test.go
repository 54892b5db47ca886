package tpm

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/internal/tpm/tpmtest"
)

// tpm2PCRRead reads banks with tpm2_pcrread and parses its YAML output:
//
//	sha256:
//	  0 : 0x00...
func tpm2PCRRead(t *testing.T, tcti string, banks ...crypto.Hash) map[crypto.Hash]map[uint32][]byte {
	t.Helper()
	var sel []string
	for _, b := range banks {
		sel = append(sel, BankName(b)+":all")
	}
	out, err := exec.Command("tpm2_pcrread", "-T", tcti, strings.Join(sel, "+")).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, out)
	}
	res := map[crypto.Hash]map[uint32][]byte{}
	var cur map[uint32][]byte
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasSuffix(line, ":") {
			h, err := ParseBank(strings.TrimSuffix(line, ":"))
			if err != nil {
				t.Fatalf("tpm2_pcrread output line %q: %v", line, err)
			}
			cur = map[uint32][]byte{}
			res[h] = cur
			continue
		}
		idx, val, ok := strings.Cut(line, ":")
		if !ok || cur == nil {
			t.Fatalf("unexpected tpm2_pcrread output line %q", line)
		}
		i, err := strconv.ParseUint(strings.TrimSpace(idx), 10, 32)
		if err != nil {
			t.Fatalf("tpm2_pcrread output line %q: %v", line, err)
		}
		d, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(val), "0x"))
		if err != nil {
			t.Fatalf("tpm2_pcrread output line %q: %v", line, err)
		}
		cur[uint32(i)] = d
	}
	return res
}

func TestSwtpmAgreesWithTPM2Tools(t *testing.T) {
	// No simulator: this runs beside the tests that hold the process-wide one.
	t.Parallel()
	tpmtest.RequireTools(t, "swtpm", "tpm2_pcrextend", "tpm2_pcrread")
	sw := tpmtest.StartSwtpm(t)

	digest := func(h crypto.Hash, s string) []byte {
		d := h.New()
		d.Write([]byte(s))
		return d.Sum(nil)
	}
	d256, d384 := digest(crypto.SHA256, "tpm2-tools"), digest(crypto.SHA384, "tpm2-tools")
	arg := fmt.Sprintf("10:sha256=%x,sha384=%x", d256, d384)
	if out, err := exec.Command("tpm2_pcrextend", "-T", sw.TCTI, arg).CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}

	// swtpm serves one client at a time: close before tpm2-tools reads.
	rw, err := Open(sw.Spec)
	if err != nil {
		t.Fatal(err)
	}
	banks, err := Banks(rw)
	if err != nil {
		t.Fatal(err)
	}
	var compared []crypto.Hash
	ours := map[crypto.Hash]map[uint32][]byte{}
	for _, b := range banks {
		if b != crypto.SHA256 && b != crypto.SHA384 {
			continue
		}
		if ours[b], err = ReadPCRs(rw, b); err != nil {
			t.Fatal(err)
		}
		compared = append(compared, b)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	if len(compared) == 0 || compared[0] != crypto.SHA256 {
		t.Fatalf("swtpm banks %v lack sha256", banks)
	}

	theirs := tpm2PCRRead(t, sw.TCTI, compared...)
	for _, b := range compared {
		if len(theirs[b]) != NumPCRs || len(ours[b]) != NumPCRs {
			t.Fatalf("%s: tpm2_pcrread gave %d PCRs, ReadPCRs %d; want %d", BankName(b), len(theirs[b]), len(ours[b]), NumPCRs)
		}
		for i := uint32(0); i < NumPCRs; i++ {
			if !bytes.Equal(ours[b][i], theirs[b][i]) {
				t.Errorf("%s PCR %d: ReadPCRs %x, tpm2_pcrread %x", BankName(b), i, ours[b][i], theirs[b][i])
			}
		}
		// PCR 10 holds the extension made by tpm2_pcrextend.
		h := b.New()
		h.Write(make([]byte, b.Size()))
		if b == crypto.SHA256 {
			h.Write(d256)
		} else {
			h.Write(d384)
		}
		if want := h.Sum(nil); !bytes.Equal(ours[b][10], want) {
			t.Errorf("%s PCR 10 = %x, want the extension by tpm2_pcrextend %x", BankName(b), ours[b][10], want)
		}
	}

	// Boot over TCP, then replay the log against what tpm2-tools reads.
	chain := loadFixture(t, "image-v1.0.0.yaml")
	rw, err = Open(sw.Spec)
	if err != nil {
		t.Fatal(err)
	}
	log, err := Boot(rw, chain)
	if cerr := rw.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	after := tpm2PCRRead(t, sw.TCTI, compared...)
	for _, b := range compared {
		if _, err := replay(t, log, b, after[b]); err != nil {
			t.Errorf("%s: the boot log does not replay against tpm2_pcrread's PCRs: %v", BankName(b), err)
		}
	}
}
