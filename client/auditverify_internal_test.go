package client

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
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
