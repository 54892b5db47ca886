package metadata

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestClusterIDPCR(t *testing.T) {
	// Computed independently of this package, e.g. for sha256:
	//   printf test-cluster | openssl dgst -sha256 -binary \
	//     | cat <(head -c 32 /dev/zero) - | openssl dgst -sha256
	// and with Python's hashlib for all rows:
	//   hashlib.new(h, bytes(n) + hashlib.new(h, id.encode()).digest()).hexdigest()
	tests := []struct {
		hash, id, want string
	}{
		{HashSHA256, "test-cluster", "d3979fddb7d513f527259c984780ec00b5748356b5b4a277e39c4cc973d83445"},
		{HashSHA256, "c2VjcmV0IGNsdXN0ZXI=", "2b3f251639fcb5c7d4300e817f5ba611b98b87b1a8d9e33b82bfd1989754140c"},
		{HashSHA384, "test-cluster", "7f3d110f7fa355434b15d39c3b6022d06fa210cbead671f0bca31f3976a3569f1c31155b8e818132ee59059c93c49db4"},
		{HashSHA384, "c2VjcmV0IGNsdXN0ZXI=", "5d52f4ba9620e31a8c79cd1ac866862a6e52b7d625e8090f68f77053143407981676875686367d4bd9be8791e5fd1f64"},
	}
	for _, tt := range tests {
		got, err := ClusterIDPCR(tt.hash, tt.id)
		if err != nil {
			t.Fatalf("ClusterIDPCR(%s, %q): %v", tt.hash, tt.id, err)
		}
		if want := mustHex(t, tt.want); !bytes.Equal(got, want) {
			t.Errorf("ClusterIDPCR(%s, %q) = %x, want %x", tt.hash, tt.id, got, want)
		}
	}

	for _, bad := range []struct{ hash, id string }{{HashSHA256, ""}, {"sha1", "x"}} {
		if _, err := ClusterIDPCR(bad.hash, bad.id); err == nil {
			t.Errorf("ClusterIDPCR(%q, %q) succeeded", bad.hash, bad.id)
		}
	}
}

func TestBindClusterID(t *testing.T) {
	m := sampleDoc()
	orig := m.Clone()
	bound, err := m.BindClusterID("test-cluster")
	if err != nil {
		t.Fatal(err)
	}
	want := mustHex(t, "d3979fddb7d513f527259c984780ec00b5748356b5b4a277e39c4cc973d83445")
	if p := bound.PCRs[ClusterIDPCRIndex]; !bytes.Equal(p.Expected, want) || p.WarnOnly {
		t.Errorf("PCR 15 = %+v, want enforced %x", p, want)
	}
	if err := bound.Validate(); err != nil {
		t.Error(err)
	}
	if !reflect.DeepEqual(m, orig) {
		t.Error("BindClusterID changed the original document")
	}

	// Binding the same ID again is harmless; a different one contradicts.
	if _, err := bound.BindClusterID("test-cluster"); err != nil {
		t.Errorf("rebinding the same ID: %v", err)
	}
	_, err = bound.BindClusterID("other-cluster")
	var pe *PCRError
	if !errors.As(err, &pe) || pe.Index != ClusterIDPCRIndex {
		t.Errorf("conflicting PCR 15 not refused as a PCR 15 error: %v", err)
	}
	if _, err := m.BindClusterID(""); err == nil {
		t.Error("empty cluster ID accepted")
	}
}
