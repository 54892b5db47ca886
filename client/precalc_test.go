package client_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/repo"
)

// twoFunctionaryDocs returns what a booted node reads (with firmware PCR 0,
// warn-only) and what pcr-precalc computes from the same image, which
// differs from the reading in PCR 9 when initrd is not the image's.
func twoFunctionaryDocs(t *testing.T, image string, initrd byte) (read, pre []byte) {
	t.Helper()
	enc := func(pcrs map[uint32]metadata.PCR) []byte {
		m := &metadata.Measurements{Image: image, Platform: "qemu-vtpm", Hash: "sha256", PCRs: pcrs}
		data, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return append(data, '\n')
	}
	image4, image11 := bytes.Repeat([]byte{4}, 32), bytes.Repeat([]byte{11}, 32)
	read = enc(map[uint32]metadata.PCR{
		0: {Expected: bytes.Repeat([]byte{0xf0}, 32), WarnOnly: true},
		4: {Expected: image4}, 9: {Expected: bytes.Repeat([]byte{initrd}, 32)}, 11: {Expected: image11}, 12: {Expected: make([]byte, 32)},
	})
	pre = enc(map[uint32]metadata.PCR{
		4: {Expected: image4}, 9: {Expected: bytes.Repeat([]byte{9}, 32)}, 11: {Expected: image11}, 12: {Expected: make([]byte, 32)},
	})
	return read, pre
}

// twoFunctionaryLinks are the links of the reading (pcr-reader), of the
// precalculation (pcr-precalc, with the image as material) and of nothing
// else: the publish signs its own.
func twoFunctionaryLinks(t *testing.T, read, pre []byte, reader, precalc crypto.Signer) []repo.LinkFile {
	t.Helper()
	var out []repo.LinkFile
	for _, l := range []struct {
		step      string
		materials map[string][]byte
		doc       []byte
		key       crypto.Signer
	}{
		{intoto.StepReadMeasurements, nil, read, reader},
		{intoto.StepPrecalculateMeasurements, map[string][]byte{"uki.efi": []byte("MZ the image")}, pre, precalc},
	} {
		products, err := intoto.MeasurementsProducts(l.doc)
		if err != nil {
			t.Fatal(err)
		}
		data, keyID, err := intoto.NewLink(l.step, l.materials, products, l.key)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := metadata.LinkFileName(l.step, keyID)
		out = append(out, repo.LinkFile{Source: name, Data: data})
	}
	return out
}

// TestUpdateRequiresAgreeingFunctionaries checks a layout that demands the
// reading and the precalculation agree: the repository refuses to publish
// measurements they disagree on, and a client refuses such measurements
// when they were published before the layout, naming the PCR.
func TestUpdateRequiresAgreeingFunctionaries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newChainRepo(t)
	precalc, err := keys.Generate(keys.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(image string, initrd byte) error {
		read, pre := twoFunctionaryDocs(t, image, initrd)
		_, err := r.ws.PublishWithLinks(ctx, repo.LinkedPublishRequest{
			Document: read, Links: twoFunctionaryLinks(t, read, pre, r.ci, precalc), PublishSigner: r.ci,
		})
		return err
	}
	// Published while the repository has no layout: unverified.
	if err := publish("v1.0.0", 9); err != nil {
		t.Fatal(err)
	}
	if err := publish("v0.9.0", 0x99); err != nil {
		t.Fatal(err)
	}
	layout, err := intoto.NewLayout(r.owner, intoto.LayoutOptions{
		ReadFunctionaries: []crypto.PublicKey{r.ci.Public()}, PublishFunctionaries: []crypto.PublicKey{r.ci.Public()},
		PrecalcFunctionaries: []crypto.PublicKey{precalc.Public()}, Expires: time.Now().Add(24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ws.PublishLayout(ctx, layout, []crypto.PublicKey{r.owner.Public()}, []crypto.Signer{r.targets}); err != nil {
		t.Fatal(err)
	}

	// With the layout, the repository refuses what the two disagree on.
	err = publish("v1.1.0", 0x77)
	if !errors.Is(err, intoto.ErrFunctionariesDisagree) || !strings.Contains(err.Error(), "PCR 9 (sha256) differs") {
		t.Fatalf("publish of disagreeing measurements: %v, want PCR 9 named", err)
	}
	if err := publish("v1.2.0", 9); err != nil {
		t.Fatalf("publish of agreeing measurements: %v", err)
	}

	c, _ := r.client(t)
	for _, image := range []string{"v1.0.0", "v1.2.0"} {
		if _, err := c.Update(ctx, image, "qemu-vtpm"); err != nil {
			t.Fatalf("update %s (the functionaries agree): %v", image, err)
		}
	}
	_, err = c.Update(ctx, "v0.9.0", "qemu-vtpm")
	if !errors.Is(err, intoto.ErrFunctionariesDisagree) || !strings.Contains(err.Error(), "PCR 9 (sha256) differs") {
		t.Fatalf("update v0.9.0 (PCR 9 disagrees): %v, want PCR 9 named", err)
	}
	if cfg := c.Config(); cfg.Image != "v1.2.0" {
		t.Errorf("a refused update changed the trusted measurements to %s", cfg.Image)
	}
}
