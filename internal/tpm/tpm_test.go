package tpm

import (
	"bytes"
	"crypto"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"
)

func openSim(t *testing.T, spec string) interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
} {
	t.Helper()
	rw, err := Open(spec)
	if err != nil {
		t.Fatalf("Open(%q): %v", spec, err)
	}
	t.Cleanup(func() {
		if err := rw.Close(); err != nil {
			t.Errorf("close %q: %v", spec, err)
		}
	})
	return rw
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "not-a-tpm")
	if err := os.WriteFile(regular, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := l.Addr().String()
	l.Close()
	// A TCP server that is not a TPM: it hangs up at once.
	notTPM, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer notTPM.Close()
	go func() {
		for {
			c, err := notTPM.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	tests := []struct {
		spec string
		want []string
	}{
		{"", []string{"no TPM given", "/dev/tpmrm0", "sim"}},
		{"sim:abc", []string{`"sim:abc"`, "integer"}},
		{"sim:", []string{`"sim:"`, "integer"}},
		{filepath.Join(dir, "missing"), []string{"no such device", "sim"}},
		{regular, []string{regular, "TPM 2.0 device"}},
		{"tcp://localhost", []string{"tcp://HOST:PORT"}},
		{"tcp://127.0.0.1:2321/path", []string{"tcp://HOST:PORT"}},
		{"tcp://" + closedAddr, []string{closedAddr, "swtpm running"}},
		{"tcp://" + notTPM.Addr().String(), []string{notTPM.Addr().String(), "does not answer as a TPM 2.0"}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			rw, err := Open(tc.spec)
			if err == nil {
				rw.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tc.spec)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open(%q) error %q does not mention %q", tc.spec, err, w)
				}
			}
		})
	}
}

func TestIsTestTPM(t *testing.T) {
	for spec, want := range map[string]bool{
		"sim": true, "sim:3": true, "tcp://127.0.0.1:2321": true,
		"/dev/tpmrm0": false, "/dev/tpm0": false, "simulator": false,
	} {
		if got := IsTestTPM(spec); got != want {
			t.Errorf("IsTestTPM(%q) = %v, want %v", spec, got, want)
		}
	}
}

func TestBanksAndReadPCRs(t *testing.T) {
	rw := openSim(t, "sim")
	banks, err := Banks(rw)
	if err != nil {
		t.Fatal(err)
	}
	has := map[crypto.Hash]bool{}
	for _, b := range banks {
		has[b] = true
	}
	if !has[crypto.SHA256] || !has[crypto.SHA384] {
		t.Fatalf("Banks = %v, want sha256 and sha384 among them", banks)
	}
	for _, b := range banks {
		pcrs, err := ReadPCRs(rw, b)
		if err != nil {
			t.Fatalf("ReadPCRs(%s): %v", BankName(b), err)
		}
		if len(pcrs) != NumPCRs {
			t.Fatalf("ReadPCRs(%s) returned %d PCRs, want %d", BankName(b), len(pcrs), NumPCRs)
		}
		zero := make([]byte, b.Size())
		for i := uint32(0); i < NumPCRs; i++ {
			// After TPM2_Startup(CLEAR) at locality 0, PCRs 17-22 hold all
			// ones and the others all zeros.
			want := zero
			if i >= 17 && i <= 22 {
				want = bytes.Repeat([]byte{0xff}, b.Size())
			}
			if !bytes.Equal(pcrs[i], want) {
				t.Errorf("%s PCR %d = %x, want %x", BankName(b), i, pcrs[i], want)
			}
		}
	}

	// ReadPCRs sees an extension made through the TPM directly.
	digest := crypto.SHA256.New()
	digest.Write([]byte("measured"))
	d := digest.Sum(nil)
	if err := tpm2.PCRExtend(rw, 10, tpm2.AlgSHA256, d, ""); err != nil {
		t.Fatal(err)
	}
	h := crypto.SHA256.New()
	h.Write(make([]byte, 32))
	h.Write(d)
	pcrs, err := ReadPCRs(rw, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := h.Sum(nil); !bytes.Equal(pcrs[10], want) {
		t.Errorf("sha256 PCR 10 = %x, want %x", pcrs[10], want)
	}
}

func TestReadPCRsUnallocatedBank(t *testing.T) {
	rw := openSim(t, "sim")
	_, err := ReadPCRs(rw, crypto.SHA224)
	if err == nil {
		t.Fatal("ReadPCRs(sha224) succeeded, want an error")
	}
	for _, w := range []string{"not allocated", "sha256", "sha384"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestParseBank(t *testing.T) {
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		got, err := ParseBank(BankName(h))
		if err != nil || got != h {
			t.Errorf("ParseBank(%q) = %v, %v; want %v", BankName(h), got, err, h)
		}
	}
	if _, err := ParseBank("md5"); err == nil || !strings.Contains(err.Error(), `"md5"`) {
		t.Errorf("ParseBank(md5) error = %v, want one naming md5", err)
	}
}

// akPublic returns the public key of the go-tpm-tools ECC attestation key.
func akPublic(t *testing.T, spec string) crypto.PublicKey {
	t.Helper()
	rw, err := Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	ak, err := client.AttestationKeyECC(rw)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	return ak.PublicKey()
}

func TestFixedSeedGivesStableAK(t *testing.T) {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	a := akPublic(t, "sim:7")
	b := akPublic(t, "sim:7")
	c := akPublic(t, "sim:8")
	fresh := akPublic(t, "sim")
	if !a.(equaler).Equal(b) {
		t.Error("sim:7 gave two different attestation keys")
	}
	if a.(equaler).Equal(c) {
		t.Error("sim:7 and sim:8 gave the same attestation key")
	}
	if a.(equaler).Equal(fresh) {
		t.Error("sim and sim:7 gave the same attestation key")
	}
}
