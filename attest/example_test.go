package attest_test

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"log"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/mtuf/mtuf/attest"
	"github.com/mtuf/mtuf/internal/agent"
	"github.com/mtuf/mtuf/internal/tpm"
	"github.com/mtuf/mtuf/metadata"
)

// exampleNode starts a node for the examples: an mtuf-agent on the TPM
// simulator, booted with the release image. It returns the node's address,
// its attestation key (which an operator would pin from a channel they
// trust), and reference measurements of the release (which client.Client.Update
// would have fetched through TUF).
func exampleNode() (addr string, ak crypto.PublicKey, ref *metadata.Measurements, stop func()) {
	rw, err := tpm.Open("sim")
	if err != nil {
		log.Fatal(err)
	}
	chain, err := tpm.LoadBootChain("../testdata/boot/image-v1.0.0.yaml")
	if err != nil {
		log.Fatal(err)
	}
	eventLog, err := tpm.Boot(rw, chain)
	if err != nil {
		log.Fatal(err)
	}
	pcrs, err := tpm.ReadPCRs(rw, crypto.SHA256)
	if err != nil {
		log.Fatal(err)
	}
	a, err := agent.New(agent.Config{TPM: rw, EventLog: eventLog})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(a)
	ref = &metadata.Measurements{Image: "v1.0.0", Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{
		4:  {Expected: pcrs[4]},
		8:  {Expected: pcrs[8]},
		9:  {Expected: pcrs[9]},
		14: {Expected: pcrs[14], WarnOnly: true},
	}}
	return strings.TrimPrefix(srv.URL, "http://"), a.AKPublic(), ref, func() { srv.Close(); a.Close(); rw.Close() }
}

// Verify a cluster: one call, with a policy that says what trusted means,
// and a result per node and per PCR.
func ExampleVerify() {
	node, ak, reference, stop := exampleNode()
	defer stop()

	rep, err := attest.Verify(context.Background(), []string{node}, attest.Policy{
		// The reference values, as client.Client.Update verified them through TUF.
		Measurements: reference,
		// Attestation keys pinned here; AKRoots would trust a CA instead.
		TrustedAKs: []crypto.PublicKey{ak},
		// ClusterID: "prod-eu-1" would also enforce PCR 15.
	}, attest.Options{Timeout: 5 * time.Second, Concurrency: 32})
	if err != nil {
		log.Fatal(err) // the policy is unusable: nothing was verified
	}
	for _, n := range rep.Nodes {
		fmt.Printf("%s, AK %s, event log replayed: %v\n", n.Status, n.AKTrust, n.EventLog.Replayed)
		for _, p := range n.PCRs {
			fmt.Printf("  PCR %2d warnOnly=%-5v match=%v\n", p.Index, p.WarnOnly, p.Match)
		}
	}
	fmt.Println("all trusted:", rep.AllTrusted())
	// Output:
	// trusted, AK pinned, event log replayed: true
	//   PCR  4 warnOnly=false match=true
	//   PCR  8 warnOnly=false match=true
	//   PCR  9 warnOnly=false match=true
	//   PCR 14 warnOnly=true  match=true
	// all trusted: true
}

// A Verifier checks its policy once and then verifies nodes, here one whose
// kernel is not the reference's: the result names the check that failed.
func ExampleNewVerifier() {
	node, ak, reference, stop := exampleNode()
	defer stop()

	other := reference.Clone()
	other.PCRs[4] = metadata.PCR{Expected: bytes.Repeat([]byte{0x4b}, 32)} // another kernel
	v, err := attest.NewVerifier(attest.Policy{Measurements: other, TrustedAKs: []crypto.PublicKey{ak}}, attest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	r := v.VerifyNode(context.Background(), node)
	fmt.Println(r.Status, r.Failed)
	fmt.Println(r.Reason)
	// Output:
	// refused pcrs
	// PCR 4 differs from the reference measurements
}
