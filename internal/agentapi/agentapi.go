// Package agentapi is the wire protocol between a verifier and mtuf-agent:
// the paths, the request, the limits, and a client that fetches an
// attestation or the attestation key (AK) of a node.
//
// It has no TPM dependency, so that verifiers build without cgo.
//
// The protocol: POST AttestationPath with a JSON Request holding a fresh
// nonce; the agent answers 200 with a protobuf attest.Attestation
// (Content-Type application/x-protobuf) holding a quote of every allocated PCR
// bank over the nonce, the AK public area and the TCG event log. GET AKPath
// returns the AK public key as PEM. Errors are JSON objects {"error": "..."}.
package agentapi

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-tpm-tools/proto/attest"
	"google.golang.org/protobuf/proto"

	"github.com/mtuf/mtuf/internal/pemkey"
)

// Paths served by the agent.
const (
	AttestationPath = "/v1/attestation"
	AKPath          = "/v1/ak"
)

// Nonce length bounds, in bytes.
//
// MinNonce: 128 bits, so that an agent cannot have precomputed a quote for a
// nonce the verifier will pick (a collision among 2^64 requests is needed).
//
// MaxNonce: the nonce becomes the quote's qualifyingData, a TPM2B_DATA that a
// TPM accepts only up to the size of its largest digest (sizeof(TPMU_HA):
// 64 bytes with SHA-512); a longer nonce would be refused by the TPM.
const (
	MinNonce = 16
	MaxNonce = 64
)

// MaxResponseBytes bounds what a verifier reads from an agent. An attestation
// is a few kilobytes of quotes (one per bank, 24 PCRs of at most 64 bytes
// each), the AK and its certificates, and the firmware event log, which is
// tens of kilobytes on real machines and a few hundred with large Secure Boot
// databases. One MiB is well above that, and small enough that a verifier
// checking hundreds of nodes at once cannot be made to run out of memory by a
// hostile node.
const MaxResponseBytes = 1 << 20

// MaxRequestBytes bounds a request body an agent reads: a JSON object with a
// base64 nonce of at most MaxNonce bytes fits many times over.
const MaxRequestBytes = 4 << 10

// maxErrorBytes bounds the error body of a failed request and the PEM of the
// AK: both are short texts.
const maxErrorBytes = 64 << 10

// Content types.
const (
	ContentTypeProtobuf = "application/x-protobuf"
	ContentTypeJSON     = "application/json"
	ContentTypePEM      = "application/x-pem-file"
)

// ErrBadResponse marks an answer that arrived but is not what the protocol
// allows: the wrong content type, more than the size limit, or a body that
// does not decode. A verifier holds that against the node, unlike a network
// failure or an error status, which only say that no answer could be had.
var ErrBadResponse = errors.New("bad response")

// badResponse is an error that matches ErrBadResponse while keeping its own
// message.
type badResponse struct{ msg string }

func (e *badResponse) Error() string        { return e.msg }
func (e *badResponse) Is(target error) bool { return target == ErrBadResponse }

func badResponsef(format string, args ...any) error {
	return &badResponse{msg: fmt.Sprintf(format, args...)}
}

// Request asks for an attestation over Nonce (base64 in JSON).
type Request struct {
	Nonce []byte `json:"nonce"`
}

// ErrorResponse is the body of every error answer of the agent.
type ErrorResponse struct {
	Error string `json:"error"`
}

// CheckNonce returns an error if a nonce's length is outside
// [MinNonce, MaxNonce].
func CheckNonce(nonce []byte) error {
	if len(nonce) < MinNonce || len(nonce) > MaxNonce {
		return fmt.Errorf("nonce of %d bytes: want %d to %d bytes", len(nonce), MinNonce, MaxNonce)
	}
	return nil
}

// endpoint joins an agent base URL (http://HOST:PORT) and a path.
func endpoint(baseURL, path string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("agent URL %q: want http://HOST:PORT", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("agent URL %q: want http://HOST:PORT without query, fragment or user", baseURL)
	}
	return u.JoinPath(path).String(), nil
}

// Fetch asks the agent at baseURL (http://HOST:PORT) for an attestation over
// nonce. It does not verify the attestation: that is the verifier's job.
func Fetch(ctx context.Context, hc *http.Client, baseURL string, nonce []byte) (*attest.Attestation, error) {
	if err := CheckNonce(nonce); err != nil {
		return nil, err
	}
	u, err := endpoint(baseURL, AttestationPath)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(Request{Nonce: nonce})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", baseURL, err)
	}
	req.Header.Set("Content-Type", ContentTypeJSON)
	req.Header.Set("Accept", ContentTypeProtobuf)
	data, err := do(hc, req, baseURL, ContentTypeProtobuf, MaxResponseBytes)
	if err != nil {
		return nil, err
	}
	var att attest.Attestation
	if err := proto.Unmarshal(data, &att); err != nil {
		return nil, badResponsef("agent %s: attestation is not a valid protobuf: %v", baseURL, err)
	}
	return &att, nil
}

// FetchAK fetches the agent's attestation key, for pinning. Trusting the key
// fetched this way is trust on first use: pin it from a channel you trust.
func FetchAK(ctx context.Context, hc *http.Client, baseURL string) (crypto.PublicKey, error) {
	u, err := endpoint(baseURL, AKPath)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", baseURL, err)
	}
	data, err := do(hc, req, baseURL, ContentTypePEM, maxErrorBytes)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("agent %s: attestation key: %w", baseURL, err)
	}
	return pub, nil
}

// ParsePublicKeyPEM parses one PEM "PUBLIC KEY" block (PKIX).
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	return pemkey.Decode(data)
}

// do sends req and returns the body of a 200 answer of content type want,
// read up to limit bytes.
func do(hc *http.Client, req *http.Request, baseURL, want string, limit int64) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", baseURL, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, baseURL)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != want {
		return nil, badResponsef("agent %s: %s answered with Content-Type %q, want %s: is this an mtuf-agent?", baseURL, req.URL.Path, resp.Header.Get("Content-Type"), want)
	}
	if resp.ContentLength > limit {
		return nil, badResponsef("agent %s: response of %d bytes exceeds the limit of %d bytes", baseURL, resp.ContentLength, limit)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("agent %s: read response: %w", baseURL, err)
	}
	if int64(len(data)) > limit {
		return nil, badResponsef("agent %s: response exceeds the limit of %d bytes", baseURL, limit)
	}
	return data, nil
}

// StatusError is an answer of the agent other than 200 OK.
type StatusError struct {
	Agent      string // base URL
	Method     string
	Path       string
	StatusCode int
	Status     string
	// Message is the agent's error message, or an excerpt of the body of a
	// server that is not an agent.
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("agent %s: %s %s: %s", e.Agent, e.Method, e.Path, e.Status)
	}
	return fmt.Sprintf("agent %s: %s %s: %s: %s", e.Agent, e.Method, e.Path, e.Status, e.Message)
}

// statusError turns a non-200 answer into a *StatusError carrying the agent's
// message when it sent one.
func statusError(resp *http.Response, baseURL string) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	msg := ""
	var e ErrorResponse
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == ContentTypeJSON && json.Unmarshal(data, &e) == nil {
		msg = e.Error
	}
	if msg == "" {
		// Not an agent error: keep a bounded, single-line excerpt.
		msg = strings.Join(strings.Fields(string(data)), " ")
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
	}
	return &StatusError{
		Agent:      baseURL,
		Method:     resp.Request.Method,
		Path:       resp.Request.URL.Path,
		StatusCode: resp.StatusCode,
		Status:     resp.Status,
		Message:    msg,
	}
}
