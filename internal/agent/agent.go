// Package agent serves a node's TPM attestations over HTTP (see agentapi for
// the protocol): a nonce in, a go-tpm-tools attest.Attestation out, with a
// quote of every allocated PCR bank signed by the node's attestation key.
package agent

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/keys"
)

// KeyType selects the attestation key's algorithm.
type KeyType int

const (
	// ECC is a NIST P-256 ECDSA key: small signatures, fast to create.
	ECC KeyType = iota
	// RSA is an RSA-2048 RSASSA key, for verifiers that accept only RSA.
	RSA
)

func (k KeyType) String() string {
	switch k {
	case ECC:
		return "ecc"
	case RSA:
		return "rsa"
	default:
		return fmt.Sprintf("KeyType(%d)", int(k))
	}
}

// ParseKeyType parses "ecc" or "rsa".
func ParseKeyType(s string) (KeyType, error) {
	switch s {
	case "ecc":
		return ECC, nil
	case "rsa":
		return RSA, nil
	}
	return 0, fmt.Errorf("unknown attestation key type %q: use ecc or rsa", s)
}

// Config configures a Server.
type Config struct {
	// TPM is the node's TPM. The Server uses it exclusively while it runs,
	// and does not close it.
	TPM io.ReadWriteCloser
	// EventLog is the TCG event log attached to every attestation, as the
	// verifier replays it against the quoted PCRs; nil attaches none.
	EventLog []byte
	// KeyType selects the attestation key; ECC by default.
	KeyType KeyType
	// AKCA, when set, issues the attestation key a certificate at start-up,
	// which every attestation carries, so that verifiers can trust the key
	// through the CA instead of pinning it.
	AKCA *CA
	// ObserveQuote, when set, is told of every quote the TPM was asked
	// for: how long it took, and its error (nil when it succeeded). It
	// feeds the agent's metrics.
	ObserveQuote func(d time.Duration, err error)
}

// Server is an http.Handler serving agentapi.AttestationPath and
// agentapi.AKPath.
type Server struct {
	mu       sync.Mutex // serializes TPM access: a TPM runs one command at a time
	tpm      io.ReadWriter
	ak       *client.Key
	akPEM    []byte
	eventLog []byte
	// intermediates are the DER certificates between the AK certificate
	// and its root: the issuing CA when it is not a root itself.
	intermediates [][]byte
	closed        bool
	observe       func(time.Duration, error)
}

// New creates the attestation key and returns a Server using it.
//
// The key is a primary key made from go-tpm-tools' AK template in the owner
// hierarchy: the same key as client.AttestationKeyECC (or RSA) gives, and the
// same on every start of the same TPM until its owner hierarchy is cleared, so
// verifiers can pin it. It is kept transient (not persisted to a handle), so
// the agent writes nothing to the TPM's non-volatile memory.
func New(cfg Config) (*Server, error) {
	if cfg.TPM == nil {
		return nil, errors.New("agent: no TPM given")
	}
	var tmpl tpm2.Public
	switch cfg.KeyType {
	case ECC:
		tmpl = client.AKTemplateECC()
	case RSA:
		tmpl = client.AKTemplateRSA()
	default:
		return nil, fmt.Errorf("agent: unknown attestation key type %v", cfg.KeyType)
	}
	ak, err := client.NewKey(cfg.TPM, tpm2.HandleOwner, tmpl)
	if err != nil {
		return nil, fmt.Errorf("create %s attestation key in the TPM's owner hierarchy: %w (a TPM whose owner hierarchy has a password cannot be used)", cfg.KeyType, err)
	}
	akPEM, err := keys.MarshalPublic(ak.PublicKey())
	if err != nil {
		ak.Close()
		return nil, fmt.Errorf("encode attestation key: %w", err)
	}
	log := cfg.EventLog
	if log == nil {
		// A nil log makes go-tpm-tools read the running machine's log,
		// which belongs to another TPM when this one is a simulator.
		log = []byte{}
	}
	s := &Server{tpm: cfg.TPM, ak: ak, akPEM: akPEM, eventLog: log, observe: cfg.ObserveQuote}
	if cfg.AKCA != nil {
		cert, err := cfg.AKCA.Issue(ak.PublicKey())
		if err == nil {
			err = ak.SetCert(cert)
		}
		if err != nil {
			ak.Close()
			return nil, fmt.Errorf("agent: certify the attestation key: %w", err)
		}
		if !selfSigned(cfg.AKCA.Cert) {
			s.intermediates = [][]byte{cfg.AKCA.Cert.Raw}
		}
	}
	return s, nil
}

// AKCertificate returns the attestation key's certificate, or nil when the
// agent has none.
func (s *Server) AKCertificate() *x509.Certificate {
	return s.ak.Cert()
}

// AKPublic returns the attestation key's public key.
func (s *Server) AKPublic() crypto.PublicKey {
	return s.ak.PublicKey()
}

// AKPublicPEM returns the attestation key's public key as PEM.
func (s *Server) AKPublicPEM() []byte {
	return append([]byte(nil), s.akPEM...)
}

// Close flushes the attestation key from the TPM. Requests after Close are
// answered 503.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.ak.Close()
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case agentapi.AttestationPath:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes POST", agentapi.AttestationPath))
			return
		}
		s.serveAttestation(w, r)
	case agentapi.AKPath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes GET", agentapi.AKPath))
			return
		}
		w.Header().Set("Content-Type", agentapi.ContentTypePEM)
		_, _ = w.Write(s.akPEM)
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such path %q: the agent serves %s and %s", r.URL.Path, agentapi.AttestationPath, agentapi.AKPath))
	}
}

func (s *Server) serveAttestation(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != agentapi.ContentTypeJSON {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("send the request as %s", agentapi.ContentTypeJSON))
		return
	}
	body := http.MaxBytesReader(w, r.Body, agentapi.MaxRequestBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	var req agentapi.Request
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", agentapi.MaxRequestBytes))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Sprintf("request is not a JSON object with a base64 nonce: %v", err))
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "request holds more than one JSON object")
		return
	}
	if err := agentapi.CheckNonce(req.Nonce); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	att, err := s.Attest(req.Nonce)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, errClosed) {
			status = http.StatusServiceUnavailable
		}
		writeError(w, status, err.Error())
		return
	}
	data, err := proto.Marshal(att)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("encode attestation: %v", err))
		return
	}
	w.Header().Set("Content-Type", agentapi.ContentTypeProtobuf)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(data)
}

var errClosed = errors.New("the agent is shutting down")

// Attest quotes every allocated PCR bank over nonce and returns the
// attestation the agent serves for it: the quotes, the AK's public area and
// certificate, and the event log.
func (s *Server) Attest(nonce []byte) (*attest.Attestation, error) {
	if err := agentapi.CheckNonce(nonce); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	start := time.Now()
	att, err := s.ak.Attest(client.AttestOpts{
		Nonce:       nonce,
		TCGEventLog: s.eventLog,
		// The verifier checks the TPM quote only; probing for SEV-SNP or
		// TDX devices on every request would be wasted work.
		SkipTeeAttestation: true,
	})
	if s.observe != nil {
		s.observe(time.Since(start), err)
	}
	if err != nil {
		return nil, fmt.Errorf("TPM attestation failed: %w", err)
	}
	att.IntermediateCerts = s.intermediates
	return att, nil
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", agentapi.ContentTypeJSON)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(agentapi.ErrorResponse{Error: msg})
}
