package repo

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// testDoc is a measurements document as pcr-reader writes it.
func testDoc(t testing.TB, image string, fill byte) []byte {
	t.Helper()
	data, err := testMeasurements(image, "qemu-vtpm", fill).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(data, '\n')
}

// readLink is the link pcr-reader --link-key writes for doc.
func readLink(t testing.TB, doc []byte, key crypto.Signer) LinkFile {
	t.Helper()
	data, keyID, err := intoto.NewLink(intoto.StepReadMeasurements, nil, map[string][]byte{metadata.MeasurementsFile: doc}, key)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := metadata.LinkFileName(intoto.StepReadMeasurements, keyID)
	return LinkFile{Source: name, Data: data}
}

func linkName(t testing.TB, image, step string, key crypto.Signer) string {
	t.Helper()
	id, err := intoto.KeyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	name, err := metadata.LinkTarget(image, "qemu-vtpm", step, id)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// listedLinks reads the link names in the custom metadata of the
// measurements target, as the repository now publishes it.
func listedLinksOf(t *testing.T, ws *Workspace, image string) []string {
	t.Helper()
	ctx := context.Background()
	s, err := loadState(ctx, ws.Storage)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := metadata.MeasurementsTarget(image, "qemu-vtpm")
	bin, _, err := s.binFor(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	md, err := s.role(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	tf := md.Signed.Targets[name]
	if tf == nil || tf.Custom == nil {
		t.Fatalf("%s has no custom metadata", name)
	}
	var c metadata.MeasurementsCustom
	if err := json.Unmarshal(*tf.Custom, &c); err != nil {
		t.Fatal(err)
	}
	if c.Kind != metadata.KindMeasurements || c.Image != image || c.Platform != "qemu-vtpm" {
		t.Errorf("custom metadata = %+v", c)
	}
	return c.Links
}

func TestPublishWithLinks(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	ci := loadTestKey(t, r.signers, r.keys["measurements"])
	doc := testDoc(t, "v1.0.0", 0x10)
	readName, publishName := linkName(t, "v1.0.0", intoto.StepReadMeasurements, ci), linkName(t, "v1.0.0", intoto.StepPublish, ci)

	// First the read link alone, in a repository without a layout.
	res, err := r.ws.PublishWithLinks(ctx, LinkedPublishRequest{Document: doc, Source: "m.json", Image: "v1.0.0", Platform: "qemu-vtpm",
		Links: []LinkFile{readLink(t, doc, ci)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.LayoutVerified || res.PublishLink != "" || !slices.Equal(res.Links, []string{readName}) {
		t.Fatalf("result = %+v", res)
	}
	measName, _ := metadata.MeasurementsTarget("v1.0.0", "qemu-vtpm")
	// Byte for byte: the link's product is this exact file.
	if got := fetch(t, r.storage, measName); string(got) != string(doc) {
		t.Fatalf("clients fetch %q, want the document as given", got)
	}
	if got := fetch(t, r.storage, readName); got == nil {
		t.Fatalf("link %s is not published", readName)
	}
	if got := listedLinksOf(t, r.ws, "v1.0.0"); !slices.Equal(got, []string{readName}) {
		t.Fatalf("listed links = %v", got)
	}

	// The same document again, now with this publish's link: the target
	// keeps its content and lists both links.
	res, err = r.ws.PublishWithLinks(ctx, LinkedPublishRequest{Document: doc, Links: []LinkFile{readLink(t, doc, ci)}, PublishSigner: ci})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{publishName, readName}
	if res.Unchanged || res.PublishLink != publishName || !slices.Equal(res.Links, want) {
		t.Fatalf("result = %+v", res)
	}
	if got := listedLinksOf(t, r.ws, "v1.0.0"); !slices.Equal(got, want) {
		t.Fatalf("listed links = %v, want %v", got, want)
	}

	// Now with a layout: the publish is verified against it first.
	owner := genKey(t, keys.ED25519)
	layout := testLayout(t, owner, time.Now().Add(time.Hour), ci.Public())
	if _, err := r.ws.PublishLayout(ctx, layout, []crypto.PublicKey{owner.Public()}, []crypto.Signer{loadTestKey(t, r.signers, r.keys["targets"])}); err != nil {
		t.Fatal(err)
	}
	res, err = r.ws.PublishWithLinks(ctx, LinkedPublishRequest{Document: doc, Links: []LinkFile{readLink(t, doc, ci)}, PublishSigner: ci})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Unchanged || !res.LayoutVerified {
		t.Fatalf("publishing the same again: %+v", res)
	}
	// What was published verifies as a client would verify it.
	links := map[string][]byte{readName: fetch(t, r.storage, readName), publishName: fetch(t, r.storage, publishName)}
	if err := intoto.VerifySupplyChain(layout, []crypto.PublicKey{owner.Public()}, links, fetch(t, r.storage, measName), time.Now()); err != nil {
		t.Fatalf("the published supply chain does not verify: %v", err)
	}

	// A new image, with an ECDSA functionary whose signatures differ on
	// every run: publishing twice keeps the first links.
	ec := genKey(t, keys.ECDSAP256)
	layout = testLayout(t, owner, time.Now().Add(time.Hour), ci.Public(), ec.Public())
	if _, err := r.ws.PublishLayout(ctx, layout, []crypto.PublicKey{owner.Public()}, []crypto.Signer{loadTestKey(t, r.signers, r.keys["targets"])}); err != nil {
		t.Fatal(err)
	}
	doc2 := testDoc(t, "v2.0.0", 0x20)
	req := LinkedPublishRequest{Document: doc2, Links: []LinkFile{readLink(t, doc2, ec)}, PublishSigner: ec}
	if res, err = r.ws.PublishWithLinks(ctx, req); err != nil || !res.LayoutVerified {
		t.Fatalf("%+v, %v", res, err)
	}
	req.Links = []LinkFile{readLink(t, doc2, ec)}
	if res, err = r.ws.PublishWithLinks(ctx, req); err != nil || !res.Unchanged {
		t.Fatalf("publishing new signatures over the same document: %+v, %v", res, err)
	}
}

func TestPublishWithLinksRefuses(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	ci := loadTestKey(t, r.signers, r.keys["measurements"])
	other := genKey(t, keys.ED25519)
	doc := testDoc(t, "v1.0.0", 0x10)
	otherDoc := testDoc(t, "v1.0.0", 0x30)
	read := readLink(t, doc, ci)
	publishOnly, _, err := intoto.NewLink(intoto.StepPublish, map[string][]byte{metadata.MeasurementsFile: doc}, nil, ci)
	if err != nil {
		t.Fatal(err)
	}
	noProduct, _, err := intoto.NewLink(intoto.StepReadMeasurements, nil, map[string][]byte{"other.json": doc}, ci)
	if err != nil {
		t.Fatal(err)
	}
	unknownStep, _, err := intoto.NewLink("build", nil, map[string][]byte{metadata.MeasurementsFile: doc}, ci)
	if err != nil {
		t.Fatal(err)
	}
	yaml := []byte("image: v1.0.0\nplatform: qemu-vtpm\npcrs:\n  4: " + strings.Repeat("ab", 32) + "\n")

	type refusal struct {
		name   string
		req    LinkedPublishRequest
		want   string
		wantIs error
	}
	check := func(t *testing.T, tc refusal) {
		t.Helper()
		if tc.req.Source == "" {
			tc.req.Source = "m.json"
		}
		_, err := r.ws.PublishWithLinks(ctx, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.wantIs != nil && !errors.Is(err, tc.wantIs)) {
			t.Fatalf("error = %v, want %q", err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(r.storage, "targets", "measurements", "v1.0.0")); err == nil {
			t.Fatal("something was published despite the error")
		}
	}
	for _, tc := range []refusal{
		{"document differs from the product", LinkedPublishRequest{Document: otherDoc, Links: []LinkFile{read}},
			"measurements file m.json is not the measurements.json that link " + read.Source + " (step read-measurements, key", nil},
		{"no read link", LinkedPublishRequest{Document: doc, Links: []LinkFile{{Source: "p.link", Data: publishOnly}}},
			"no link of step read-measurements was given", nil},
		{"no links at all", LinkedPublishRequest{Document: doc, PublishSigner: ci}, "no link of step read-measurements was given", nil},
		{"read link without the document", LinkedPublishRequest{Document: doc, Links: []LinkFile{{Source: "np.link", Data: noProduct}}},
			"link np.link (step read-measurements, key", nil},
		{"unknown step", LinkedPublishRequest{Document: doc, Links: []LinkFile{read, {Source: "b.link", Data: unknownStep}}},
			`link b.link is of step "build"`, nil},
		{"not a link", LinkedPublishRequest{Document: doc, Links: []LinkFile{{Source: "x.link", Data: []byte("not json")}}},
			"link x.link: in-toto link: not JSON", nil},
		{"same link twice", LinkedPublishRequest{Document: doc, Links: []LinkFile{read, {Source: "copy.link", Data: read.Data}}},
			"are both links of step read-measurements", nil},
		{"YAML document", LinkedPublishRequest{Document: yaml, Links: []LinkFile{read}}, "is not JSON", nil},
		{"other image", LinkedPublishRequest{Document: doc, Image: "v9", Platform: "qemu-vtpm", Links: []LinkFile{read}},
			"is for image v1.0.0 on qemu-vtpm, not image v9", nil},
		{"invalid document", LinkedPublishRequest{Document: []byte(`{"image": "v1.0.0"}`), Links: []LinkFile{read}}, "measurements file m.json", nil},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, tc) })
	}

	// With a layout naming ci as the only functionary.
	owner := genKey(t, keys.ED25519)
	layout := testLayout(t, owner, time.Now().Add(time.Hour), ci.Public())
	if _, err := r.ws.PublishLayout(ctx, layout, []crypto.PublicKey{owner.Public()}, []crypto.Signer{loadTestKey(t, r.signers, r.keys["targets"])}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []refusal{
		{"read link by a non-functionary", LinkedPublishRequest{Document: doc, Links: []LinkFile{readLink(t, doc, other)}, PublishSigner: ci},
			"which is not a functionary of step read-measurements", intoto.ErrLinkUnauthorized},
		{"publish link by a non-functionary", LinkedPublishRequest{Document: doc, Links: []LinkFile{read}, PublishSigner: other},
			"which is not a functionary of step publish", intoto.ErrLinkUnauthorized},
		{"no publish link", LinkedPublishRequest{Document: doc, Links: []LinkFile{read}},
			"step publish needs 1 link(s) signed by distinct functionaries, found 0", intoto.ErrLinkMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, tc)
			if !strings.Contains(tc.want, "publish needs") {
				return
			}
			_, err := r.ws.PublishWithLinks(ctx, tc.req)
			if !strings.Contains(err.Error(), "--link-key") || !strings.Contains(err.Error(), "refuses these measurements, as clients would") {
				t.Errorf("the refusal does not say what to do: %v", err)
			}
		})
	}
	// Nothing above touched the measurements bins.
	s, err := loadState(ctx, r.ws.Storage)
	if err != nil {
		t.Fatal(err)
	}
	if v := s.snapshot.Signed.Meta[tuf.TARGETS+".json"].Version; v != 2 {
		t.Errorf("targets version %d, want 2 (the layout only)", v)
	}
}
