//go:build unix

package attest_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	attestpb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/mtuf/mtuf/attest"
	"github.com/mtuf/mtuf/internal/agent"
	"github.com/mtuf/mtuf/internal/cputime"
	"github.com/mtuf/mtuf/internal/tpm"
	"github.com/mtuf/mtuf/metadata"
)

// The benchmark's cluster: benchNodes simulated nodes booted with the
// release image, each giving benchPerNode attestations over distinct
// nonces, with their AKs certified by one CA.
const (
	benchNodes   = 10
	benchPerNode = 100
)

type benchSet struct {
	nodes  []string
	atts   []*attestpb.Attestation
	nonces [][]byte
	aks    []crypto.PublicKey
	root   *x509.Certificate
	ref    *metadata.Measurements
}

var (
	benchOnce sync.Once
	benchData *benchSet
	benchErr  error
)

// loadBenchSet generates the attestations once per process: the simulator
// is slow next to verification, and every benchmark verifies the same ones.
func loadBenchSet(b *testing.B) *benchSet {
	b.Helper()
	benchOnce.Do(func() { benchData, benchErr = generateBenchSet(b) })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchData
}

func generateBenchSet(b *testing.B) (*benchSet, error) {
	chain, err := tpm.LoadBootChain(bootV1)
	if err != nil {
		return nil, err
	}
	ca := newTestCA(b, "bench AK CA", nil, 48*time.Hour)
	s := &benchSet{root: ca.Cert}
	for n := range benchNodes {
		if err := func() error {
			rw, err := tpm.Open("sim")
			if err != nil {
				return err
			}
			defer rw.Close()
			log, err := tpm.Boot(rw, chain)
			if err != nil {
				return err
			}
			if s.ref == nil {
				pcrs, err := tpm.ReadPCRs(rw, crypto.SHA256)
				if err != nil {
					return err
				}
				s.ref = referenceOf(pcrs)
			}
			a, err := agent.New(agent.Config{TPM: rw, EventLog: log, AKCA: &agent.CA{Cert: ca.Cert, Key: ca.Key, Validity: 24 * time.Hour}})
			if err != nil {
				return err
			}
			defer a.Close()
			s.aks = append(s.aks, a.AKPublic())
			for range benchPerNode {
				nonce := make([]byte, 32)
				if _, err := rand.Read(nonce); err != nil {
					return err
				}
				att, err := a.Attest(nonce)
				if err != nil {
					return err
				}
				s.nodes = append(s.nodes, fmt.Sprintf("node-%d", n))
				s.atts = append(s.atts, att)
				s.nonces = append(s.nonces, nonce)
			}
			return nil
		}(); err != nil {
			return nil, fmt.Errorf("simulated node %d: %w", n, err)
		}
	}
	return s, nil
}

// verifierFunc verifies attestation i of the set, failing on a refusal:
// every attestation of the set is genuine and fresh.
type verifierFunc func(i int) error

func (s *benchSet) verifiers(b *testing.B) map[string]verifierFunc {
	b.Helper()
	pinned, err := attest.NewVerifier(attest.Policy{Measurements: s.ref, TrustedAKs: s.aks}, attest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	byCA, err := attest.NewVerifier(attest.Policy{Measurements: s.ref, AKRoots: []*x509.Certificate{s.root}}, attest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	mtuf := func(v *attest.Verifier) verifierFunc {
		return func(i int) error {
			if r := v.VerifyAttestation(s.nodes[i], s.atts[i], s.nonces[i]); r.Status != attest.Trusted {
				return fmt.Errorf("%s", r)
			}
			return nil
		}
	}
	// go-tpm-tools' verifier, on the same bank: it verifies the quote and
	// replays the event log too, then extracts the firmware state from it,
	// where mtuf compares the PCRs with the reference.
	gotpm := func(opts server.VerifyOpts) verifierFunc {
		return func(i int) error {
			o := opts
			o.Nonce = s.nonces[i]
			_, err := server.VerifyAttestation(s.atts[i], o)
			return err
		}
	}
	return map[string]verifierFunc{
		"mtuf/pinned":         mtuf(pinned),
		"mtuf/ak-ca":          mtuf(byCA),
		"go-tpm-tools/pinned": gotpm(server.VerifyOpts{TrustedAKs: s.aks, HashAlgo: tpm2.AlgSHA256}),
		"go-tpm-tools/ak-ca":  gotpm(server.VerifyOpts{TrustedRootCerts: []*x509.Certificate{s.root}, HashAlgo: tpm2.AlgSHA256}),
	}
}

var benchOrder = []string{"mtuf/pinned", "go-tpm-tools/pinned", "mtuf/ak-ca", "go-tpm-tools/ak-ca"}

// BenchmarkVerifyAttestation is the verifier's cost for one attestation, one
// at a time: ns/op is wall time, cpu-ns/op the CPU time the process spent
// (garbage collection included), against go-tpm-tools'
// server.VerifyAttestation on the same attestations.
func BenchmarkVerifyAttestation(b *testing.B) {
	s := loadBenchSet(b)
	vs := s.verifiers(b)
	for _, name := range benchOrder {
		verify := vs[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			runtime.GC() // no garbage of another benchmark is collected on this one's time
			cpu0 := cputime.Self()
			i := 0
			for b.Loop() {
				if err := verify(i % len(s.atts)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(cputime.Self()-cpu0)/float64(i), "cpu-ns/op")
		})
	}
}

// BenchmarkVerifyCluster verifies the 1,000 attestations of the cluster on
// every core, as Verifier.Verify does once the attestations have arrived,
// and reports nodes verified per second.
func BenchmarkVerifyCluster(b *testing.B) {
	s := loadBenchSet(b)
	vs := s.verifiers(b)
	workers := runtime.GOMAXPROCS(0)
	for _, name := range benchOrder {
		verify := vs[name]
		b.Run(name, func(b *testing.B) {
			runtime.GC()
			cpu0 := cputime.Self()
			start := time.Now()
			rounds := 0
			for b.Loop() {
				work := make(chan int)
				errs := make(chan error, workers)
				var wg sync.WaitGroup
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range work {
							if err := verify(i); err != nil {
								select {
								case errs <- err:
								default:
								}
							}
						}
					}()
				}
				for i := range s.atts {
					work <- i
				}
				close(work)
				wg.Wait()
				select {
				case err := <-errs:
					b.Fatal(err)
				default:
				}
				rounds++
			}
			n := float64(rounds * len(s.atts))
			b.ReportMetric(n/time.Since(start).Seconds(), "nodes/s")
			b.ReportMetric(float64(cputime.Self()-cpu0)/n, "cpu-ns/node")
		})
	}
}
