package client_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"google.golang.org/protobuf/proto"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/internal/agent"
	"github.com/mtuf/mtuf/internal/tpm"
	"github.com/mtuf/mtuf/metadata"
)

// simNode is one node: an mtuf-agent over the TPM simulator, booted from
// the release image's boot chain. The simulator is one per process, so
// tests share it through simNode and never run in parallel.
type simNode struct {
	srv   *httptest.Server
	ak    crypto.PublicKey
	pcrs  map[uint32][]byte
	close func()
}

func startSimNode(t *testing.T) *simNode {
	t.Helper()
	rw, err := tpm.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := tpm.LoadBootChain("../testdata/boot/image-v1.0.0.yaml")
	if err != nil {
		t.Fatal(err)
	}
	log, err := tpm.Boot(rw, chain)
	if err != nil {
		t.Fatal(err)
	}
	pcrs, err := tpm.ReadPCRs(rw, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{TPM: rw, EventLog: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	n := &simNode{srv: srv, ak: a.AKPublic(), pcrs: pcrs}
	n.close = func() { srv.Close(); a.Close(); rw.Close() }
	t.Cleanup(n.close)
	return n
}

func (n *simNode) addr() string { return strings.TrimPrefix(n.srv.URL, "http://") }

// reference builds measurements from the node's own PCRs: 4, 8 and 9
// enforced, 14 warn-only.
func (n *simNode) reference() *metadata.Measurements {
	m := &metadata.Measurements{Image: "v1.0.0", Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{}}
	for _, i := range []uint32{4, 8, 9} {
		m.PCRs[i] = metadata.PCR{Expected: n.pcrs[i]}
	}
	m.PCRs[14] = metadata.PCR{Expected: n.pcrs[14], WarnOnly: true}
	return m
}

func verifyOne(t *testing.T, node string, p client.Policy) client.NodeResult {
	t.Helper()
	rep, err := client.Verify(context.Background(), []string{node}, p)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Nodes[0]
}

// proxy sits between the verifier and a node and lets a test play the
// attacker on the wire.
func proxy(t *testing.T, target string, rewrite func(req []byte, att *attest.Attestation) *attest.Attestation) string {
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
		var att attest.Attestation
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

func TestVerify(t *testing.T) {
	n := startSimNode(t)
	ref := n.reference()
	trustedAK := []crypto.PublicKey{n.ak}

	t.Run("trusted", func(t *testing.T) {
		r := verifyOne(t, n.addr(), client.Policy{Measurements: ref, TrustedAKs: trustedAK})
		if r.Status != client.Trusted {
			t.Fatalf("status %s: %s", r.Status, r.Reason)
		}
		if len(r.PCRs) != 4 {
			t.Errorf("%d PCRs compared, want 4", len(r.PCRs))
		}
	})

	t.Run("enforced PCR differs", func(t *testing.T) {
		m := ref.Clone()
		m.PCRs[4] = metadata.PCR{Expected: bytes.Repeat([]byte{1}, 32)}
		r := verifyOne(t, n.addr(), client.Policy{Measurements: m, TrustedAKs: trustedAK})
		if r.Status != client.Refused || !strings.Contains(r.Reason, "PCR 4 differ") {
			t.Fatalf("%s: %s", r.Status, r.Reason)
		}
		for _, p := range r.PCRs {
			if p.Index == 4 && (p.Match || !bytes.Equal(p.Actual, n.pcrs[4])) {
				t.Errorf("PCR 4 result %+v", p)
			}
		}
	})

	t.Run("warn-only PCR differs", func(t *testing.T) {
		m := ref.Clone()
		m.PCRs[14] = metadata.PCR{Expected: bytes.Repeat([]byte{1}, 32), WarnOnly: true}
		r := verifyOne(t, n.addr(), client.Policy{Measurements: m, TrustedAKs: trustedAK})
		if r.Status != client.TrustedWithWarnings || !strings.Contains(r.Reason, "14") {
			t.Fatalf("%s: %s", r.Status, r.Reason)
		}
	})

	t.Run("unknown attestation key", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		r := verifyOne(t, n.addr(), client.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{other.Public()}})
		if r.Status != client.Refused || !strings.Contains(r.Reason, "not trusted") {
			t.Fatalf("%s: %s", r.Status, r.Reason)
		}
	})

	t.Run("replayed attestation", func(t *testing.T) {
		var mu sync.Mutex
		var first *attest.Attestation
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attest.Attestation) *attest.Attestation {
			mu.Lock()
			defer mu.Unlock()
			if first == nil {
				first = att
			}
			return first
		})
		if r := verifyOne(t, addr, client.Policy{Measurements: ref, TrustedAKs: trustedAK}); r.Status != client.Trusted {
			t.Fatalf("first exchange: %s: %s", r.Status, r.Reason)
		}
		r := verifyOne(t, addr, client.Policy{Measurements: ref, TrustedAKs: trustedAK})
		if r.Status != client.Refused || !strings.Contains(r.Reason, "extraData") {
			t.Fatalf("replay: %s: %s", r.Status, r.Reason)
		}
	})

	t.Run("sha256 quote altered", func(t *testing.T) {
		// The attacker rewrites the sha256 quote's PCR 4 to the reference
		// of a different image; other banks' quotes stay valid, and must
		// not be used instead.
		m := ref.Clone()
		m.PCRs[4] = metadata.PCR{Expected: bytes.Repeat([]byte{7}, 32)}
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attest.Attestation) *attest.Attestation {
			for _, q := range att.GetQuotes() {
				if q.GetPcrs().GetHash() == tpmpb.HashAlgo_SHA256 {
					q.Pcrs.Pcrs[4] = bytes.Repeat([]byte{7}, 32)
				}
			}
			return att
		})
		r := verifyOne(t, addr, client.Policy{Measurements: m, TrustedAKs: trustedAK})
		if r.Status != client.Refused || !strings.Contains(r.Reason, "sha256 quote does not verify") {
			t.Fatalf("%s: %s", r.Status, r.Reason)
		}
	})

	t.Run("no quote of the bank", func(t *testing.T) {
		addr := proxy(t, n.srv.URL, func(_ []byte, att *attest.Attestation) *attest.Attestation {
			var keep []*tpmpb.Quote
			for _, q := range att.GetQuotes() {
				if q.GetPcrs().GetHash() != tpmpb.HashAlgo_SHA256 {
					keep = append(keep, q)
				}
			}
			att.Quotes = keep
			return att
		})
		r := verifyOne(t, addr, client.Policy{Measurements: ref, TrustedAKs: trustedAK})
		if r.Status != client.Refused || !strings.Contains(r.Reason, "no quote over the sha256 bank") {
			t.Fatalf("%s: %s", r.Status, r.Reason)
		}
	})
}

func TestVerifyBadNodes(t *testing.T) {
	n := startSimNode(t)
	ref := n.reference()
	p := client.Policy{Measurements: ref, TrustedAKs: []crypto.PublicKey{n.ak}, Timeout: 2 * time.Second}

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

	nodes := []string{
		strings.TrimPrefix(silent.URL, "http://"),
		n.addr(),
		strings.TrimPrefix(garbage.URL, "http://"),
		strings.TrimPrefix(huge.URL, "http://"),
		"127.0.0.1:1",
	}
	start := time.Now()
	rep, err := client.Verify(context.Background(), nodes, p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AllTrusted() {
		t.Error("AllTrusted with bad nodes")
	}
	want := []client.Status{client.Unreachable, client.Trusted, client.Unreachable, client.Unreachable, client.Unreachable}
	for i, r := range rep.Nodes {
		if r.Node != nodes[i] {
			t.Errorf("result %d is for %s, want %s", i, r.Node, nodes[i])
		}
		if r.Status != want[i] {
			t.Errorf("%s: status %s (%s), want %s", r.Node, r.Status, r.Reason, want[i])
		}
		if r.Status != client.Trusted && r.Reason == "" {
			t.Errorf("%s: no reason given", r.Node)
		}
	}
	if !strings.Contains(rep.Nodes[3].Reason, "limit") && !strings.Contains(rep.Nodes[3].Reason, "large") {
		t.Errorf("oversized response reason: %s", rep.Nodes[3].Reason)
	}
	// The silent node costs its own timeout, not one per node.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("verification took %v", d)
	}
}

func TestVerifyPolicyErrors(t *testing.T) {
	m := &metadata.Measurements{Image: "v1", Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{4: {Expected: make([]byte, 32)}}}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name  string
		nodes []string
		p     client.Policy
		want  string
	}{
		{"no measurements", []string{"x:1"}, client.Policy{TrustedAKs: []crypto.PublicKey{k.Public()}}, "client update"},
		{"no keys", []string{"x:1"}, client.Policy{Measurements: m}, "--trusted-ak"},
		{"no nodes", nil, client.Policy{Measurements: m, TrustedAKs: []crypto.PublicKey{k.Public()}}, "--node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Verify(context.Background(), tc.nodes, tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
