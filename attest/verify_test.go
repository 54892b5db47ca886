package attest_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-eventlog/tcg"
	attestpb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm-tools/quote"
	"google.golang.org/protobuf/proto"

	"github.com/mtuf/mtuf/attest"
	"github.com/mtuf/mtuf/internal/agent"
	"github.com/mtuf/mtuf/internal/tpm"
	"github.com/mtuf/mtuf/metadata"
)

const (
	bootV1       = "../testdata/boot/image-v1.0.0.yaml"
	bootModified = "../testdata/boot/image-v1.0.0-modified-kernel.yaml"
)

// simNode is one node: an mtuf-agent over the TPM simulator, booted from a
// described boot chain. The simulator is one per process, so tests hold one
// simNode at a time and never run in parallel.
type simNode struct {
	srv   *httptest.Server
	agent *agent.Server
	ak    crypto.PublicKey
	pcrs  map[uint32][]byte // sha256 bank
	log   []byte
	close func()
}

type nodeSpec struct {
	chain string          // boot chain file
	extra []tpm.BootEvent // measured after the chain
	ca    *agent.CA       // certifies the AK
	noLog bool            // serve no event log
	log   []byte          // serve this event log instead of the boot's
}

func loadChain(t testing.TB, path string) *tpm.BootChain {
	t.Helper()
	chain, err := tpm.LoadBootChain(path)
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

func startNode(t testing.TB, spec nodeSpec) *simNode {
	t.Helper()
	rw, err := tpm.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	chain := loadChain(t, spec.chain)
	chain.Events = append(chain.Events, spec.extra...)
	log, err := tpm.Boot(rw, chain)
	if err != nil {
		rw.Close()
		t.Fatal(err)
	}
	pcrs, err := tpm.ReadPCRs(rw, crypto.SHA256)
	if err != nil {
		rw.Close()
		t.Fatal(err)
	}
	switch {
	case spec.noLog:
		log = nil
	case spec.log != nil:
		log = spec.log
	}
	a, err := agent.New(agent.Config{TPM: rw, EventLog: log, AKCA: spec.ca})
	if err != nil {
		rw.Close()
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	n := &simNode{srv: srv, agent: a, ak: a.AKPublic(), pcrs: pcrs, log: log}
	var once sync.Once
	n.close = func() { once.Do(func() { srv.Close(); a.Close(); rw.Close() }) }
	t.Cleanup(n.close)
	return n
}

func startSimNode(t *testing.T) *simNode { return startNode(t, nodeSpec{chain: bootV1}) }

func (n *simNode) addr() string { return strings.TrimPrefix(n.srv.URL, "http://") }

// reference builds measurements from the node's own PCRs: 4, 8 and 9
// enforced, 14 warn-only.
func (n *simNode) reference() *metadata.Measurements {
	return referenceOf(n.pcrs)
}

func referenceOf(pcrs map[uint32][]byte) *metadata.Measurements {
	m := &metadata.Measurements{Image: "v1.0.0", Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{}}
	for _, i := range []uint32{4, 8, 9} {
		m.PCRs[i] = metadata.PCR{Expected: pcrs[i]}
	}
	m.PCRs[14] = metadata.PCR{Expected: pcrs[14], WarnOnly: true}
	return m
}

// referenceBoot boots the release image on the simulator and returns its
// PCRs and event log, as CI would record them; the simulator is free again
// afterwards.
func referenceBoot(t *testing.T) (map[uint32][]byte, []byte) {
	t.Helper()
	n := startNode(t, nodeSpec{chain: bootV1})
	defer n.close()
	return n.pcrs, n.log
}

func verifyOne(t *testing.T, node string, p attest.Policy, o attest.Options) attest.NodeResult {
	t.Helper()
	rep, err := attest.Verify(context.Background(), []string{node}, p, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Nodes) != 1 || rep.Nodes[0].Node != node {
		t.Fatalf("report %+v is not about node %s", rep.Nodes, node)
	}
	return rep.Nodes[0]
}

// expectRefused checks the status, the failed check, and that the reason
// says want.
func expectRefused(t *testing.T, r attest.NodeResult, check attest.Check, want ...string) {
	t.Helper()
	if r.Status != attest.Refused || r.Failed != check {
		t.Fatalf("%s, want refused (%s)", r, check)
	}
	for _, w := range want {
		if !strings.Contains(r.Reason, w) {
			t.Errorf("reason %q does not say %q", r.Reason, w)
		}
	}
	if s := r.String(); !strings.Contains(s, r.Node) || !strings.Contains(s, r.Reason) {
		t.Errorf("String() = %q does not name the node and the reason", s)
	}
}

// proxy sits between the verifier and a node and lets a test play the
// attacker on the wire.
func proxy(t *testing.T, target string, rewrite func(req []byte, att *attestpb.Attestation) *attestpb.Attestation) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		resp, err := http.Post(target+r.URL.Path, "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var att attestpb.Attestation
		if err := proto.Unmarshal(raw, &att); err != nil {
			t.Errorf("proxy: %v", err)
		}
		out, _ := proto.Marshal(rewrite(body, &att))
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func quoteOf(att *attestpb.Attestation, h tpmpb.HashAlgo) *tpmpb.Quote {
	for _, q := range att.GetQuotes() {
		if q.GetPcrs().GetHash() == h {
			return q
		}
	}
	return nil
}

func TestVerify(t *testing.T) {
	n := startSimNode(t)
	ref := n.reference()
	pinned := attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}}

	t.Run("trusted", func(t *testing.T) {
		r := verifyOne(t, n.addr(), pinned, attest.Options{})
		if r.Status != attest.Trusted || r.Failed != "" {
			t.Fatalf("%s", r)
		}
		if len(r.PCRs) != 4 {
			t.Errorf("%d PCRs compared, want 4", len(r.PCRs))
		}
		if r.AKTrust != "pinned" || !strings.HasPrefix(r.AK, "sha256:") {
			t.Errorf("AK %q trusted as %q", r.AK, r.AKTrust)
		}
		if r.EventLog == nil || !r.EventLog.Replayed || r.EventLog.Events != len(loadChain(t, bootV1).Events) {
			t.Errorf("event log result %+v, want all %d events replayed", r.EventLog, len(loadChain(t, bootV1).Events))
		}
	})

	t.Run("enforced PCR differs", func(t *testing.T) {
		m := ref.Clone()
		m.PCRs[4] = metadata.PCR{Expected: bytes.Repeat([]byte{1}, 32)}
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: m, TrustedAKs: pinned.TrustedAKs}, attest.Options{})
		expectRefused(t, r, attest.CheckPCRs, "PCR 4 differs")
		for _, p := range r.PCRs {
			if p.Index == 4 && (p.Match || !bytes.Equal(p.Actual, n.pcrs[4])) {
				t.Errorf("PCR 4 result %+v", p)
			}
		}
	})

	// A cluster in the middle of a rolling upgrade: the node runs one of
	// two trusted images, and the report says which.
	t.Run("rolling upgrade", func(t *testing.T) {
		next := ref.Clone()
		next.Image = "v2.0.0"
		next.PCRs[4] = metadata.PCR{Expected: bytes.Repeat([]byte{2}, 32)}
		for _, tc := range []struct {
			name      string
			primary   *metadata.Measurements
			alts      []*metadata.Measurements
			wantImage string
		}{
			{"matches the first", ref, []*metadata.Measurements{next}, "v1.0.0"},
			{"matches the second", next, []*metadata.Measurements{ref}, "v1.0.0"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rep, err := attest.Verify(context.Background(), []string{n.addr()},
					attest.Policy{Measurements: tc.primary, Alternatives: tc.alts, TrustedAKs: pinned.TrustedAKs}, attest.Options{})
				if err != nil {
					t.Fatal(err)
				}
				r := rep.Nodes[0]
				if r.Status != attest.Trusted || r.Image != tc.wantImage {
					t.Fatalf("%s matched image %q, want trusted on %s", r, r.Image, tc.wantImage)
				}
				if len(rep.Alternatives) != 1 || rep.Alternatives[0] != tc.alts[0].Image {
					t.Errorf("report alternatives %v", rep.Alternatives)
				}
			})
		}
		t.Run("matches neither", func(t *testing.T) {
			other := next.Clone()
			other.Image = "v3.0.0"
			r := verifyOne(t, n.addr(), attest.Policy{Measurements: next, Alternatives: []*metadata.Measurements{other}, TrustedAKs: pinned.TrustedAKs}, attest.Options{})
			expectRefused(t, r, attest.CheckPCRs, "PCR 4 differs", "image v2.0.0", "no other trusted image")
			if r.Image != "v2.0.0" {
				t.Errorf("refused node compared with image %q, want v2.0.0", r.Image)
			}
		})
		t.Run("another bank", func(t *testing.T) {
			sha384 := next.Clone()
			sha384.Hash = "sha384"
			for i, p := range sha384.PCRs {
				p.Expected = bytes.Repeat([]byte{3}, 48)
				sha384.PCRs[i] = p
			}
			_, err := attest.NewVerifier(attest.Policy{Measurements: ref, Alternatives: []*metadata.Measurements{sha384}, TrustedAKs: pinned.TrustedAKs}, attest.Options{})
			if err == nil || !strings.Contains(err.Error(), "one bank") {
				t.Fatalf("NewVerifier with images of two banks: %v", err)
			}
		})
	})

	t.Run("warn-only PCR differs", func(t *testing.T) {
		m := ref.Clone()
		m.PCRs[14] = metadata.PCR{Expected: bytes.Repeat([]byte{1}, 32), WarnOnly: true}
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: m, TrustedAKs: pinned.TrustedAKs}, attest.Options{})
		if r.Status != attest.TrustedWithWarnings || !strings.Contains(r.Reason, "14") || r.Reason != "warn-only PCR 14 differs" {
			t.Fatalf("%s", r)
		}
	})

	t.Run("AK neither pinned nor certified", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{other.Public()}}, attest.Options{})
		expectRefused(t, r, attest.CheckAK, "attestation key sha256:", "not trusted", "no AK certificate")
		ca := newTestCA(t, "some CA", nil, time.Hour)
		r = verifyOne(t, n.addr(), attest.Policy{Measurements: ref, AKRoots: []*x509.Certificate{ca.Cert}}, attest.Options{})
		expectRefused(t, r, attest.CheckAK, "neither pinned", "nor certified")
	})

	t.Run("replayed attestation", func(t *testing.T) {
		var mu sync.Mutex
		var first *attestpb.Attestation
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attestpb.Attestation) *attestpb.Attestation {
			mu.Lock()
			defer mu.Unlock()
			if first == nil {
				first = att
			}
			return first
		})
		if r := verifyOne(t, addr, pinned, attest.Options{}); r.Status != attest.Trusted {
			t.Fatalf("first exchange: %s", r)
		}
		r := verifyOne(t, addr, pinned, attest.Options{})
		expectRefused(t, r, attest.CheckNonce, "another nonce", "replayed")
	})

	t.Run("sha256 quote altered while sha384 valid", func(t *testing.T) {
		// The attacker rewrites the sha256 quote's PCR 4 to the reference
		// of a different image; the sha384 quote stays valid, and must not
		// be used instead.
		m := ref.Clone()
		m.PCRs[4] = metadata.PCR{Expected: bytes.Repeat([]byte{7}, 32)}
		var mu sync.Mutex
		var sent *attestpb.Attestation
		var nonce []byte
		addr := proxy(t, n.srv.URL, func(req []byte, att *attestpb.Attestation) *attestpb.Attestation {
			mu.Lock()
			defer mu.Unlock()
			var body struct{ Nonce []byte }
			json.Unmarshal(req, &body)
			quoteOf(att, tpmpb.HashAlgo_SHA256).Pcrs.Pcrs[4] = bytes.Repeat([]byte{7}, 32)
			sent, nonce = att, body.Nonce
			return att
		})
		r := verifyOne(t, addr, attest.Policy{Measurements: m, TrustedAKs: pinned.TrustedAKs}, attest.Options{})
		expectRefused(t, r, attest.CheckQuote, "sha256 quote does not verify")
		mu.Lock()
		defer mu.Unlock()
		if err := quote.Verify(quoteOf(sent, tpmpb.HashAlgo_SHA384), n.ak, nonce); err != nil {
			t.Fatalf("the sha384 quote the attacker left alone does not verify, so the test proves nothing: %v", err)
		}
	})

	t.Run("no quote of the bank", func(t *testing.T) {
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attestpb.Attestation) *attestpb.Attestation {
			var keep []*tpmpb.Quote
			for _, q := range att.GetQuotes() {
				if q.GetPcrs().GetHash() != tpmpb.HashAlgo_SHA256 {
					keep = append(keep, q)
				}
			}
			att.Quotes = keep
			return att
		})
		expectRefused(t, verifyOne(t, addr, pinned, attest.Options{}), attest.CheckQuote, "no quote over the sha256 bank")
	})

	t.Run("PCR value of another length than the bank's", func(t *testing.T) {
		// The quote signs the digest of the values laid end to end: moving
		// the last byte of PCR 4 to the front of PCR 5 keeps the signature
		// valid and changes both PCRs.
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attestpb.Attestation) *attestpb.Attestation {
			pcrs := quoteOf(att, tpmpb.HashAlgo_SHA256).Pcrs.Pcrs
			p4, p5 := pcrs[4], pcrs[5]
			pcrs[4], pcrs[5] = p4[:len(p4)-1], append([]byte{p4[len(p4)-1]}, p5...)
			return att
		})
		expectRefused(t, verifyOne(t, addr, pinned, attest.Options{}), attest.CheckQuote, "PCR 4 a value of 31 bytes", "digests have 32")
	})

	t.Run("no attestation key", func(t *testing.T) {
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attestpb.Attestation) *attestpb.Attestation {
			att.AkPub = nil
			return att
		})
		expectRefused(t, verifyOne(t, addr, pinned, attest.Options{}), attest.CheckAK, "no attestation key")
	})
}

// testCA is a CA made for one test: a root when parent is nil.
type testCA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

func newTestCA(t testing.TB, name string, parent *testCA, validity time.Duration) *testCA {
	t.Helper()
	return newTestCert(t, name, parent, validity, true)
}

func newTestCert(t testing.TB, name string, parent *testCA, validity time.Duration, isCA bool) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{Cert: cert, Key: key}
}

func (ca *testCA) agentCA(validity time.Duration) *agent.CA {
	return &agent.CA{Cert: ca.Cert, Key: ca.Key, Validity: validity}
}

func TestVerifyAKCertificate(t *testing.T) {
	root := newTestCA(t, "test AK root", nil, 48*time.Hour)
	otherRoot := newTestCA(t, "other AK root", nil, 48*time.Hour)
	n := startNode(t, nodeSpec{chain: bootV1, ca: root.agentCA(time.Hour)})
	ref := n.reference()
	byCA := attest.Policy{Measurements: ref, AKRoots: []*x509.Certificate{root.Cert}}

	t.Run("certified by the trusted CA", func(t *testing.T) {
		r := verifyOne(t, n.addr(), byCA, attest.Options{})
		if r.Status != attest.Trusted {
			t.Fatalf("%s", r)
		}
		if !strings.Contains(r.AKTrust, "certified by CN=test AK root") {
			t.Errorf("AK trusted as %q", r.AKTrust)
		}
	})

	t.Run("another CA", func(t *testing.T) {
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: ref, AKRoots: []*x509.Certificate{otherRoot.Cert}}, attest.Options{})
		expectRefused(t, r, attest.CheckAK, "issued by CN=test AK root", "does not chain to a trusted CA")
	})

	t.Run("expired", func(t *testing.T) {
		later := func() time.Time { return time.Now().Add(2 * time.Hour) }
		r := verifyOne(t, n.addr(), byCA, attest.Options{Now: later})
		expectRefused(t, r, attest.CheckAK, "AK certificate", "expired on")
	})

	t.Run("certificate of another key", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cert, err := root.agentCA(time.Hour).Issue(other.Public())
		if err != nil {
			t.Fatal(err)
		}
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attestpb.Attestation) *attestpb.Attestation {
			att.AkCert = cert.Raw
			return att
		})
		expectRefused(t, verifyOne(t, addr, byCA, attest.Options{}), attest.CheckAK, "for another key")
	})

	t.Run("malformed certificate", func(t *testing.T) {
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attestpb.Attestation) *attestpb.Attestation {
			att.AkCert = []byte("not DER")
			return att
		})
		expectRefused(t, verifyOne(t, addr, byCA, attest.Options{}), attest.CheckAK, "AK certificate is malformed")
	})

	t.Run("certificate but no trusted CA", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{other.Public()}}, attest.Options{})
		expectRefused(t, r, attest.CheckAK, "not pinned", "no CA is trusted")
	})

	t.Run("pinned wins without a CA", func(t *testing.T) {
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}}, attest.Options{})
		if r.Status != attest.Trusted || r.AKTrust != "pinned" {
			t.Fatalf("%s (%s)", r, r.AKTrust)
		}
	})
	n.close()

	t.Run("through an intermediate the node sends", func(t *testing.T) {
		inter := newTestCA(t, "test AK intermediate", root, 24*time.Hour)
		n := startNode(t, nodeSpec{chain: bootV1, ca: inter.agentCA(time.Hour)})
		defer n.close()
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: n.reference(), AKRoots: []*x509.Certificate{root.Cert}}, attest.Options{})
		if r.Status != attest.Trusted || !strings.Contains(r.AKTrust, "test AK intermediate") {
			t.Fatalf("%s (%s)", r, r.AKTrust)
		}
		// Without the intermediate, the chain does not reach the root.
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attestpb.Attestation) *attestpb.Attestation {
			att.IntermediateCerts = nil
			return att
		})
		expectRefused(t, verifyOne(t, addr, attest.Policy{Measurements: n.reference(), AKRoots: []*x509.Certificate{root.Cert}}, attest.Options{}),
			attest.CheckAK, "does not chain to a trusted CA")
	})
}

func TestVerifyEventLog(t *testing.T) {
	refPCRs, refLog := referenceBoot(t)
	ref := referenceOf(refPCRs)

	t.Run("altered log does not replay", func(t *testing.T) {
		n := startSimNode(t)
		defer n.close()
		pinned := attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}}
		// The attacker swaps the debug kernel's name for the release's in
		// the log, data and digests alike: the log now tells another boot
		// than the quoted PCRs.
		for _, tc := range []struct {
			name  string
			edit  func([]byte) []byte
			check attest.Check
			want  []string
		}{
			{"event replaced", func(log []byte) []byte {
				return replaceEvent(t, log, "vmlinuz-6.6.30-mtuf", "vmlinuz-6.6.30-evil")
			}, attest.CheckEventLog, []string{"event log does not replay", "PCR 4"}},
			{"garbage", func([]byte) []byte { return []byte("\x01\x02 not an event log") }, attest.CheckEventLog, []string{"event log is malformed"}},
			{"truncated", func(log []byte) []byte { return log[:len(log)-7] }, attest.CheckEventLog, []string{"event log is malformed"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				addr := proxy(t, n.srv.URL, func(_ []byte, att *attestpb.Attestation) *attestpb.Attestation {
					att.EventLog = tc.edit(att.EventLog)
					return att
				})
				r := verifyOne(t, addr, pinned, attest.Options{})
				expectRefused(t, r, tc.check, tc.want...)
			})
		}
	})

	modified := startNode(t, nodeSpec{chain: bootModified})
	pinned := attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{modified.ak}}

	t.Run("reference holds only PCR values", func(t *testing.T) {
		r := verifyOne(t, modified.addr(), pinned, attest.Options{})
		expectRefused(t, r, attest.CheckPCRs, "PCR 4 differs")
		d := onlyDifference(t, r)
		if d.PCR != 4 || d.Node != nil || !strings.Contains(d.Explanation, "--reference-log") {
			t.Errorf("difference %+v: want PCR 4 without an event, pointing to --reference-log", d)
		}
	})

	t.Run("reference event log names the event", func(t *testing.T) {
		p := pinned
		p.ReferenceEventLog = refLog
		r := verifyOne(t, modified.addr(), p, attest.Options{})
		expectRefused(t, r, attest.CheckPCRs, "PCR 4 differs", `"vmlinuz-6.6.30-mtuf-debug-unsigned"`, `reference has EV_EFI_BOOT_SERVICES_APPLICATION "vmlinuz-6.6.30-mtuf"`)
		d := onlyDifference(t, r)
		// PCR 4 of the release: boot option, separator, shim, bootloader,
		// kernel: the kernel is its fifth event.
		if d.PCR != 4 || d.Position != 5 || d.Node == nil || d.Reference == nil {
			t.Fatalf("difference %+v", d)
		}
		if d.Node.Data != "vmlinuz-6.6.30-mtuf-debug-unsigned" || d.Reference.Data != "vmlinuz-6.6.30-mtuf" || d.Node.Type != "EV_EFI_BOOT_SERVICES_APPLICATION" {
			t.Errorf("node event %+v, reference event %+v", d.Node, d.Reference)
		}
		if d.Node.Digest == d.Reference.Digest || len(d.Node.Digest) != 64 {
			t.Errorf("digests %s and %s", d.Node.Digest, d.Reference.Digest)
		}
	})
	modified.close()

	t.Run("extra event named from PCR values alone", func(t *testing.T) {
		n := startNode(t, nodeSpec{chain: bootV1, extra: []tpm.BootEvent{
			{PCR: 8, Type: tcg.Ipl, Description: "extra command line", Data: []byte("init=/bin/sh")},
		}})
		defer n.close()
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}}, attest.Options{})
		expectRefused(t, r, attest.CheckPCRs, "PCR 8 differs", `"init=/bin/sh"`)
		d := onlyDifference(t, r)
		if d.PCR != 8 || d.Position != 2 || d.Node == nil || d.Node.Data != "init=/bin/sh" || d.Reference != nil {
			t.Errorf("difference %+v", d)
		}
	})

	t.Run("reference log of another boot is refused", func(t *testing.T) {
		other := ref.Clone()
		other.PCRs[4] = metadata.PCR{Expected: bytes.Repeat([]byte{3}, 32)}
		_, err := attest.NewVerifier(attest.Policy{Measurements: other, TrustedAKs: []crypto.PublicKey{modified.ak}, ReferenceEventLog: refLog}, attest.Options{})
		if err == nil || !strings.Contains(err.Error(), "reference event log does not replay to the reference measurements") || !strings.Contains(err.Error(), "PCR 4") {
			t.Fatalf("NewVerifier: %v", err)
		}
		_, err = attest.NewVerifier(attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{modified.ak}, ReferenceEventLog: []byte("junk")}, attest.Options{})
		if err == nil || !strings.Contains(err.Error(), "reference event log is not a TCG event log") {
			t.Fatalf("NewVerifier with junk: %v", err)
		}
	})

	t.Run("log without the events of a PCR", func(t *testing.T) {
		// The log of the same boot without PCR 9's event replays for every
		// PCR it has events for; PCR 9 is left unexplained.
		chain := loadChain(t, bootV1)
		var kept []tpm.BootEvent
		for _, ev := range chain.Events {
			if ev.PCR != 9 {
				kept = append(kept, ev)
			}
		}
		chain.Events = kept
		rw, err := tpm.Open("sim")
		if err != nil {
			t.Fatal(err)
		}
		dropped, err := tpm.Boot(rw, chain)
		rw.Close()
		if err != nil {
			t.Fatal(err)
		}
		n := startNode(t, nodeSpec{chain: bootV1, log: dropped})
		defer n.close()
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}}, attest.Options{})
		expectRefused(t, r, attest.CheckEventLog, "no event for PCR 9", "unexplained")
		if r.EventLog == nil || r.EventLog.Replayed || len(r.EventLog.NotReplayed) != 1 || r.EventLog.NotReplayed[0] != 9 {
			t.Errorf("event log result %+v, want PCR 9 not replayed", r.EventLog)
		}
	})

	t.Run("PCR outside the reference explained by another log", func(t *testing.T) {
		// The kernel's IMA extends PCR 10 and logs it in its own log, not
		// the firmware's: the reference holds no PCR 10, so its value
		// needs no explaining, and the node is trusted.
		n := startNode(t, nodeSpec{chain: bootV1, extra: []tpm.BootEvent{{PCR: 10, Type: tcg.Ipl, Description: "IMA boot_aggregate", Data: []byte("boot_aggregate")}}, log: refLog})
		defer n.close()
		if bytes.Equal(n.pcrs[10], make([]byte, 32)) {
			t.Fatal("PCR 10 was not extended")
		}
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}}, attest.Options{})
		if r.Status != attest.Trusted {
			t.Fatalf("%s", r)
		}
		// Once the reference holds PCR 10, the firmware's log must explain it.
		withIMA := referenceOf(refPCRs)
		withIMA.PCRs[10] = metadata.PCR{Expected: n.pcrs[10]}
		expectRefused(t, verifyOne(t, n.addr(), attest.Policy{Measurements: withIMA, TrustedAKs: []crypto.PublicKey{n.ak}}, attest.Options{}),
			attest.CheckEventLog, "no event for PCR 10", "unexplained")
	})

	t.Run("event data that does not hash to its digest", func(t *testing.T) {
		// EV_EFI_ACTION's digest is the hash of its data: an attacker who
		// rewrites the data keeps the log replaying, and must not have
		// the report show the rewritten data as what the node measured.
		n := startNode(t, nodeSpec{chain: bootV1, extra: []tpm.BootEvent{
			{PCR: 8, Type: tcg.EFIAction, Description: "extra action", Data: []byte("init=/bin/sh")},
		}})
		defer n.close()
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attestpb.Attestation) *attestpb.Attestation {
			att.EventLog = bytes.Replace(att.EventLog, []byte("init=/bin/sh"), []byte("init=/bin/ok"), 1)
			return att
		})
		r := verifyOne(t, addr, attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}}, attest.Options{})
		expectRefused(t, r, attest.CheckPCRs, "PCR 8 differs", "EV_EFI_ACTION", "unverified")
		d := onlyDifference(t, r)
		if d.PCR != 8 || d.Position != 2 || d.Node == nil || !d.Node.DataUnverified || d.Node.Data != "" {
			t.Errorf("difference %+v, node event %+v: want PCR 8's second event, its data unverified and not shown", d, d.Node)
		}
		if strings.Contains(r.Reason, "init=/bin/ok") || strings.Contains(d.Explanation, "init=/bin/ok") {
			t.Errorf("the report shows the rewritten data as measured: %q, %q", r.Reason, d.Explanation)
		}
	})

	t.Run("node without a log", func(t *testing.T) {
		n := startNode(t, nodeSpec{chain: bootV1, noLog: true})
		defer n.close()
		r := verifyOne(t, n.addr(), attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}}, attest.Options{})
		if r.Status != attest.Trusted || r.EventLog != nil {
			t.Fatalf("%s, event log %+v", r, r.EventLog)
		}
	})
}

func onlyDifference(t *testing.T, r attest.NodeResult) attest.EventDifference {
	t.Helper()
	if r.EventLog == nil || !r.EventLog.Replayed || len(r.EventLog.Differences) != 1 {
		t.Fatalf("event log result %+v, want one difference", r.EventLog)
	}
	return r.EventLog.Differences[0]
}

// replaceEvent rewrites the data of the event holding old, and its digests,
// so that the log is well formed but tells another boot.
func replaceEvent(t *testing.T, log []byte, old, new string) []byte {
	t.Helper()
	if len(old) != len(new) {
		t.Fatal("replaceEvent keeps the log's layout: same length only")
	}
	i := bytes.Index(log, []byte(old))
	if i < 0 {
		t.Fatalf("no event %q in the log", old)
	}
	out := bytes.Clone(log)
	copy(out[i:], new)
	// The digests precede the data; replace each one that is the digest
	// of old by that of new.
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		d := h.New()
		d.Write([]byte(old))
		od := d.Sum(nil)
		d = h.New()
		d.Write([]byte(new))
		out = bytes.Replace(out, od, d.Sum(nil), 1)
	}
	return out
}

func TestVerifyClusterID(t *testing.T) {
	const id = "prod-eu-1"
	n := startNode(t, nodeSpec{chain: bootV1, extra: []tpm.BootEvent{
		{PCR: metadata.ClusterIDPCRIndex, Type: tcg.Ipl, Description: "cluster ID", Data: []byte(id)},
	}})
	p := attest.Policy{Measurements: n.reference(), TrustedAKs: []crypto.PublicKey{n.ak}, ClusterID: id}

	r := verifyOne(t, n.addr(), p, attest.Options{})
	if r.Status != attest.Trusted {
		t.Fatalf("%s", r)
	}
	var saw bool
	for _, pr := range r.PCRs {
		if pr.Index == metadata.ClusterIDPCRIndex {
			want, _ := metadata.ClusterIDPCR("sha256", id)
			saw = pr.Match && bytes.Equal(pr.Expected, want)
		}
	}
	if !saw {
		t.Errorf("PCR 15 not enforced to the cluster ID's value: %+v", r.PCRs)
	}

	p.ClusterID = "prod-us-1"
	r = verifyOne(t, n.addr(), p, attest.Options{})
	expectRefused(t, r, attest.CheckPCRs, "PCR 15 differs", `not bound to cluster ID "prod-us-1"`, `"prod-eu-1"`)
	d := onlyDifference(t, r)
	if d.Node == nil || d.Node.Data != id || d.Reference == nil || d.Reference.Data != "prod-us-1" {
		t.Errorf("difference %+v", d)
	}

	// A document that already pins PCR 15 cannot be bound.
	m := p.Measurements.Clone()
	m.PCRs[15] = metadata.PCR{Expected: bytes.Repeat([]byte{1}, 32)}
	if _, err := attest.NewVerifier(attest.Policy{Measurements: m, TrustedAKs: p.TrustedAKs, ClusterID: id}, attest.Options{}); err == nil || !strings.Contains(err.Error(), "PCR 15") {
		t.Errorf("NewVerifier with a pinned PCR 15: %v", err)
	}
}

func TestVerifyBadNodes(t *testing.T) {
	n := startSimNode(t)
	ref := n.reference()
	p := attest.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}}
	const timeout = 2 * time.Second

	hang := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-hang
	}))
	defer silent.Close()
	defer close(hang) // before Close, which waits for the handler
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write([]byte("\xff\xff\xff not a protobuf"))
	}))
	defer garbage.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(make([]byte, 2<<20))
	}))
	defer huge.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error":"TPM attestation failed: TPM busy"}`))
	}))
	defer failing.Close()

	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	nodes := []string{host(silent), n.addr(), host(garbage), host(huge), "127.0.0.1:1", host(failing), n.srv.URL}
	want := []struct {
		status attest.Status
		check  attest.Check
		reason string
	}{
		{attest.Unreachable, attest.CheckFetch, "no answer within 2s (timeout)"},
		{attest.Trusted, "", ""},
		{attest.Refused, attest.CheckResponse, "malformed response: attestation is not a valid protobuf"},
		{attest.Refused, attest.CheckResponse, "exceeds the limit of 1048576 bytes"},
		{attest.Unreachable, attest.CheckFetch, "connection refused"},
		{attest.Unreachable, attest.CheckFetch, "500 Internal Server Error: TPM attestation failed: TPM busy"},
		{attest.Trusted, "", ""},
	}
	start := time.Now()
	// Two at a time: the silent node holds one slot for its timeout while
	// the others pass through the other.
	rep, err := attest.Verify(context.Background(), nodes, p, attest.Options{Timeout: timeout, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if rep.AllTrusted() {
		t.Error("AllTrusted with bad nodes")
	}
	for i, r := range rep.Nodes {
		if r.Node != nodes[i] {
			t.Errorf("result %d is for %s, want %s", i, r.Node, nodes[i])
		}
		if r.Status != want[i].status || r.Failed != want[i].check || !strings.Contains(r.Reason, want[i].reason) {
			t.Errorf("%s: got %s (%s): %q, want %s (%s): %q", r.Node, r.Status, r.Failed, r.Reason, want[i].status, want[i].check, want[i].reason)
		}
		if !strings.Contains(r.String(), nodes[i]) {
			t.Errorf("String() %q does not name the node", r)
		}
	}
	if got := rep.Count(attest.Trusted); got != 2 {
		t.Errorf("Count(Trusted) = %d, want 2", got)
	}
	// The silent node costs its own timeout, once, not one per node.
	if elapsed > 2*timeout+5*time.Second {
		t.Errorf("verification took %v with one silent node and a %v timeout", elapsed, timeout)
	}

	// A cancelled run reports every node, none as trusted.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err = attest.Verify(ctx, []string{n.addr(), n.addr()}, p, attest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Nodes {
		if r.Status != attest.Unreachable || !strings.Contains(r.Reason, "cancelled") {
			t.Errorf("cancelled run: %s", r)
		}
	}
}

func TestVerifyConcurrencyBound(t *testing.T) {
	var cur, peak atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := cur.Add(1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		cur.Add(-1)
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer slow.Close()
	nodes := make([]string, 12)
	for i := range nodes {
		nodes[i] = slow.URL
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	m := &metadata.Measurements{Image: "v1", Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{4: {Expected: make([]byte, 32)}}}
	rep, err := attest.Verify(context.Background(), nodes, attest.Policy{Measurements: m, TrustedAKs: []crypto.PublicKey{k.Public()}}, attest.Options{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := peak.Load(); got > 3 || got < 2 {
		t.Errorf("at most %d nodes were asked at once, want 3 (the bound) or close to it", got)
	}
	if rep.Count(attest.Unreachable) != len(nodes) {
		t.Errorf("%d of %d nodes unreachable", rep.Count(attest.Unreachable), len(nodes))
	}
}

func TestVerifyPolicyErrors(t *testing.T) {
	m := &metadata.Measurements{Image: "v1", Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{4: {Expected: make([]byte, 32)}}}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []crypto.PublicKey{k.Public()}
	leaf := newTestCert(t, "leaf", nil, time.Hour, false)
	expired := newTestCA(t, "expired CA", nil, -time.Minute)
	for _, tc := range []struct {
		name  string
		nodes []string
		p     attest.Policy
		o     attest.Options
		want  string
	}{
		{"no measurements", []string{"x:1"}, attest.Policy{TrustedAKs: keys}, attest.Options{}, "client update"},
		{"bad measurements", []string{"x:1"}, attest.Policy{Measurements: &metadata.Measurements{Hash: "sha256"}, TrustedAKs: keys}, attest.Options{}, "reference measurements"},
		{"no way to trust keys", []string{"x:1"}, attest.Policy{Measurements: m}, attest.Options{}, "(--ak-ca CA.pem)"},
		{"no nodes", nil, attest.Policy{Measurements: m, TrustedAKs: keys}, attest.Options{}, "--node"},
		{"CA that is not a CA", []string{"x:1"}, attest.Policy{Measurements: m, AKRoots: []*x509.Certificate{leaf.Cert}}, attest.Options{}, "not a CA certificate"},
		{"expired CA", []string{"x:1"}, attest.Policy{Measurements: m, AKRoots: []*x509.Certificate{expired.Cert}}, attest.Options{}, "expired on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attest.Verify(context.Background(), tc.nodes, tc.p, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadAKRoots(t *testing.T) {
	certs, err := attest.LoadAKRoots("../testdata/ak-ca/test-ak-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 || !certs[0].IsCA {
		t.Fatalf("loaded %d certificates", len(certs))
	}
	dir := t.TempDir()
	ca := newTestCA(t, "ca", nil, time.Hour)
	leaf := newTestCert(t, "leaf", ca, time.Hour, false)
	pemOf := func(c *x509.Certificate) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	two := pemOf(ca.Cert) + pemOf(certs[0])
	keyFile, _ := os.ReadFile("../testdata/ak-ca/test-ak-ca.key")
	for _, tc := range []struct {
		name, data, want string
		n                int
	}{
		{"bundle", two, "", 2},
		{"empty", "", "no PEM CERTIFICATE block", 0},
		{"private key", string(keyFile), `PEM block "ENCRYPTED SIGSTORE PRIVATE KEY"`, 0},
		{"trailing junk", two + "junk", "data after the last PEM block", 0},
		{"bad DER", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1", 0},
		{"leaf certificate", pemOf(leaf.Cert), "is not a CA certificate", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".pem")
			os.WriteFile(p, []byte(tc.data), 0o644)
			got, err := attest.LoadAKRoots(p)
			if tc.want == "" {
				if err != nil || len(got) != tc.n {
					t.Fatalf("LoadAKRoots: %d certificates, %v", len(got), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("LoadAKRoots: %v, want an error naming %s and saying %q", err, p, tc.want)
			}
		})
	}
	if _, err := attest.LoadAKRoots(filepath.Join(dir, "none.pem")); err == nil || !strings.Contains(err.Error(), "none.pem") {
		t.Errorf("missing file: %v", err)
	}
}
