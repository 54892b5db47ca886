package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// canonicalJSON makes, byte for byte, what go-tuf signs: cjson's
// canonical form; what it cannot canonicalize directly it refuses.
func TestCanonicalJSONMatchesCJSON(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"signed":{"_type":"snapshot","version":3,"meta":{"b.json":{"version":1},"a.json":{"version":2,"hashes":{"sha256":"ab"}}}}}`,
		` { "z" : [ 1 , -2 , true , false , null , [ ] , { } ] , "a\"b" : "c\\d" , "é" : "\u00e9\n\t<>&" , "A" : 0 } `,
		`["\ud83d\ude00", "x\u0000y", {"k":{"l":{"m":[{"n":"o"}]}}}]`,
		`"plain"`,
		`{"length":3,"hashes":{"sha256":"ab"},"custom":{"z":1,"y":{"b":"\"","a":"\\"}}}`,
	} {
		var v any
		if err := json.Unmarshal([]byte(in), &v); err != nil {
			t.Fatal(err)
		}
		want, err := cjson.EncodeCanonical(json.RawMessage(in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := canonicalJSON([]byte(in))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("canonicalJSON(%s) = %s, %v; cjson makes %s", in, got, err, want)
		}
	}
	for _, in := range []string{`{"a":1,"a":2}`, `{"b":1,"a":2,"b":3}`, `{"a":1.5}`, `[1e3]`, "[\"\xff\"]", `{"a":1} x`, `[1,]`} {
		if got, err := canonicalJSON([]byte(in)); err == nil {
			t.Errorf("canonicalJSON(%s) = %s, not refused", in, got)
		}
	}
}

// The one-pass reader of the audit must read, whenever it accepts a
// file, what encoding/json and cjson read of it: the same signatures,
// the same fields, and the canonical form cjson makes of the signed part.
// What it refuses goes to go-tuf, so refusing is always safe.
func FuzzAuditReader(f *testing.F) {
	sig := `"signatures":[{"keyid":"ab","sig":"0a0B"},{"keyid":"c\u0064","sig":""}]`
	for _, s := range []string{
		`{` + sig + `,"signed":{"_type":"snapshot","expires":"2030-01-01T00:00:00Z","meta":{"targets.json":{"version":3},"a-bin-0.json":{"version":1,"length":9,"hashes":{"sha256":"00"}}},"spec_version":"1.0.31","version":7}}`,
		`{"signed":{"version":7,"meta":{"b.json":{"version":2},"a.json":{"version":1}},"_type":"snapshot","spec_version":"1.0","expires":"2030-01-01T00:00:00+01:00"},` + sig + `}`,
		`{` + sig + `,"signed":{"_type":"targets","expires":"2030-01-01T00:00:00Z","spec_version":"1.0.31","targets":{"measurements/v1/x/measurements.json":{"custom":{"image":"v1"},"hashes":{"sha256":"AbCd","sha512":"00"},"length":3}},"version":2}}`,
		`{` + sig + `,"signed":{"_type":"targets","expires":"2030-01-01T00:00:00Z","targets":{},"version":1,"delegations":{"keys":{},"roles":[]}}}`,
		`{"signatures":[],"signed":{"_type":"snapshot","Version":2,"version":1,"meta":{}}}`,
		`{"signatures":[],"signed":{"_type":"snapshot","version":1,"meta":{"a":{"version":"1"}}}}`,
		`{"signatures":[],"signed":{"_type":"snapshot","expires":"2030-01-01T24:00:00Z","version":1,"meta":{}}}`,
		`{"signatures":[{"keyid":"a","sig":"\u0030\u0030"}],"signed":{"_type":"targets","targets":{"t":{"hashes":{"sha256":"0\u0030"}}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if out, err := canonicalJSON(data); err == nil {
			want, cerr := cjson.EncodeCanonical(json.RawMessage(data))
			if !json.Valid(data) || cerr != nil || !bytes.Equal(out, want) {
				t.Fatalf("canonicalJSON(%q) = %q; cjson makes %q, %v", data, out, want, cerr)
			}
		}
		var ref struct {
			Signatures []struct {
				KeyID string       `json:"keyid"`
				Sig   tuf.HexBytes `json:"sig"`
			} `json:"signatures"`
			Signed json.RawMessage `json:"signed"`
		}
		check := func(env *envelope, wantFields any) {
			t.Helper()
			if err := json.Unmarshal(data, &ref); err != nil {
				t.Fatalf("accepted %q, which encoding/json refuses: %v", data, err)
			}
			if err := json.Unmarshal(ref.Signed, wantFields); err != nil {
				t.Fatalf("accepted %q, whose signed part encoding/json refuses: %v", data, err)
			}
			canon, err := cjson.EncodeCanonical(ref.Signed)
			if err != nil || !bytes.Equal(canon, env.Canonical) {
				t.Fatalf("canonical form of %q: %q, cjson makes %q, %v", data, env.Canonical, canon, err)
			}
			if len(env.Signatures) != len(ref.Signatures) {
				t.Fatalf("%q: %d signatures, encoding/json reads %d", data, len(env.Signatures), len(ref.Signatures))
			}
			for i, s := range ref.Signatures {
				if env.Signatures[i].KeyID != s.KeyID || !bytes.Equal(env.Signatures[i].Sig, s.Sig) {
					t.Fatalf("%q: signature %d differs", data, i)
				}
			}
		}
		if env, s, err := parseSnapshot(data); err == nil {
			var want struct {
				signedHeader
				Meta map[string]struct {
					Version int64 `json:"version"`
				} `json:"meta"`
			}
			got := map[string]int64{}
			for _, m := range s.Meta {
				got[string(m.Name)] = m.Version
			}
			check(env, &want)
			wantMeta := map[string]int64{}
			for name, m := range want.Meta {
				wantMeta[name] = m.Version
			}
			if fmt.Sprint(got) != fmt.Sprint(wantMeta) || !sameHeader(s.signedHeader, want.signedHeader) {
				t.Fatalf("%q: read %v %v, encoding/json reads %v %v", data, s.signedHeader, got, want.signedHeader, wantMeta)
			}
		}
		if env, tg, err := parseTargets(data); err == nil {
			var want struct {
				signedHeader
				Targets map[string]struct {
					Hashes map[string]tuf.HexBytes `json:"hashes"`
				} `json:"targets"`
			}
			check(env, &want)
			got := map[string]string{}
			for _, e := range tg.Targets {
				got[e.Name] = fmt.Sprintf("%x", e.SHA256)
			}
			wantTargets := map[string]string{}
			for name, e := range want.Targets {
				wantTargets[name] = fmt.Sprintf("%x", e.Hashes["sha256"])
			}
			if fmt.Sprint(got) != fmt.Sprint(wantTargets) || !sameHeader(tg.signedHeader, want.signedHeader) {
				t.Fatalf("%q: read %v %v, encoding/json reads %v %v", data, tg.signedHeader, got, want.signedHeader, wantTargets)
			}
		}
	})
}

func sameHeader(a, b signedHeader) bool {
	return a.Type == b.Type && a.SpecVersion == b.SpecVersion && a.Version == b.Version && a.Expires.Equal(b.Expires) && a.Expires.String() == b.Expires.String()
}

// A file the one-pass reader leaves to go-tuf (here a member outside
// "signed" and "signatures", which go-tuf keeps aside) is read by go-tuf,
// and its signatures are judged by go-tuf, not reported as invalid.
func TestAuditFallsBackToGoTUF(t *testing.T) {
	t.Parallel()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signature.LoadED25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tuf.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	snap := tuf.Snapshot(time.Now().Add(time.Hour))
	snap.Signed.Meta["targets.json"] = tuf.MetaFile(3)
	if _, err := snap.Sign(signer); err != nil {
		t.Fatal(err)
	}
	data, err := snap.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	data = append(bytes.TrimSuffix(bytes.TrimSpace(data), []byte("}")), []byte(`,"x-note":"kept aside"}`)...)
	if _, _, err := parseSnapshot(data); err == nil {
		t.Fatal("the one-pass reader read a member it does not know")
	}
	if _, err := (&tuf.Metadata[tuf.SnapshotType]{}).FromBytes(data); err != nil {
		t.Fatalf("go-tuf refuses the file: %v", err)
	}
	a := &auditor{files: map[string]*cachedFile{}, fetch: func(context.Context, string) ([]byte, error) { return data, nil }}
	_, f := a.load(context.Background(), tuf.SNAPSHOT, 1)
	if f.parseErr != nil || f.env != nil {
		t.Fatalf("go-tuf's reading not used: %v", f.parseErr)
	}
	if v, ok := f.snap.version("targets.json"); !ok || v != 3 {
		t.Fatalf("targets.json in meta: %d, %v", v, ok)
	}
	id, err := key.ID()
	if err != nil {
		t.Fatal(err)
	}
	if ids := f.sigKeyIDs(); len(ids) != 1 || ids[0] != id {
		t.Fatalf("signatures %v, want one by %s", ids, id)
	}
	root := tuf.Root(time.Now().Add(time.Hour))
	if err := root.Signed.AddKey(key, tuf.SNAPSHOT); err != nil {
		t.Fatal(err)
	}
	if a.keys.signedByThreshold(f.env, root.Signed.Keys, root.Signed.Roles[tuf.SNAPSHOT].KeyIDs, 1) {
		t.Fatal("the direct check judged a file it did not read")
	}
	full, _, err := f.full(tuf.SNAPSHOT)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(tuf.SNAPSHOT, full); err != nil {
		t.Fatalf("go-tuf's check of the file: %v", err)
	}
}
