package translog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mtuf/mtuf/internal/safefile"
)

// ErrNoQuorum marks a checkpoint that too few witnesses cosigned.
var ErrNoQuorum = errors.New("too few witnesses cosigned the checkpoint")

// maxWitnessBody bounds what a witness reads and what a publisher reads
// back: a checkpoint, a proof of at most 64 hashes, cosignature lines.
const maxWitnessBody = 64 << 10

// Cosign returns a Cosigner that asks each witness of cfg, concurrently,
// to cosign with the C2SP tlog-witness protocol, and fails with
// ErrNoQuorum, naming each witness's failure, when fewer than cfg.Quorum
// cosign. A nil hc means http.DefaultClient.
func Cosign(cfg *Config, hc *http.Client) Cosigner {
	if hc == nil {
		hc = http.DefaultClient
	}
	return func(ctx context.Context, signed []byte, size int64, proof func(old int64) (tlog.TreeProof, error)) ([]byte, error) {
		type result struct {
			lines []byte
			err   error
		}
		results := make([]result, len(cfg.Witnesses))
		var wg sync.WaitGroup
		for i, w := range cfg.Witnesses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lines, err := addCheckpoint(ctx, hc, w, signed, size, proof)
				results[i] = result{lines, err}
			}()
		}
		wg.Wait()
		out := bytes.Clone(signed)
		var failures []string
		got := 0
		for _, r := range results {
			if r.err != nil {
				failures = append(failures, r.err.Error())
				continue
			}
			out = append(out, r.lines...)
			got++
		}
		if got < cfg.Quorum {
			return nil, fmt.Errorf("%w: %d of the %d required (%s); nothing was written", ErrNoQuorum, got, cfg.Quorum, strings.Join(failures, "; "))
		}
		return out, nil
	}
}

// addCheckpoint asks one witness to cosign, first as an extension of the
// previous size, then, if the witness answers that it holds another
// size, from that one.
func addCheckpoint(ctx context.Context, hc *http.Client, w Witness, signed []byte, size int64, proof func(int64) (tlog.TreeProof, error)) ([]byte, error) {
	wv, err := witnessVerifier(w)
	if err != nil {
		return nil, err
	}
	old := size - 1
	for attempt := 0; attempt < 2; attempt++ {
		p, err := proof(old)
		if err != nil {
			return nil, fmt.Errorf("witness %s: %w", w.Name, err)
		}
		var body bytes.Buffer
		fmt.Fprintf(&body, "old %d\n", old)
		for _, h := range p {
			body.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
		}
		body.WriteString("\n")
		body.Write(signed)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(w.URL, "/")+"/add-checkpoint", &body)
		if err != nil {
			return nil, fmt.Errorf("witness %s: %w", w.Name, err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("witness %s unreachable: %w", w.Name, err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxWitnessBody))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("witness %s: %w", w.Name, err)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return checkCosignature(wv, signed, data)
		case http.StatusConflict:
			held, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
			if err != nil || held == old {
				return nil, fmt.Errorf("witness %s refused: conflict: %s", w.Name, strings.TrimSpace(string(data)))
			}
			old = held
			continue
		default:
			return nil, fmt.Errorf("witness %s refused: %s: %s", w.Name, resp.Status, strings.TrimSpace(string(data)))
		}
	}
	return nil, fmt.Errorf("witness %s refused: it holds a checkpoint this log cannot extend", w.Name)
}

// checkCosignature checks a witness's reply: note signature lines, one of
// which is its valid cosignature of signed. It returns that line.
func checkCosignature(wv note.Verifier, signed, reply []byte) ([]byte, error) {
	for _, line := range strings.SplitAfter(string(reply), "\n") {
		if line == "" {
			continue
		}
		n, err := note.Open(append(bytes.Clone(signed), line...), note.VerifierList(wv))
		if err != nil {
			continue
		}
		for _, s := range n.Sigs {
			if s.Name == wv.Name() && s.Hash == wv.KeyHash() {
				if !strings.HasSuffix(line, "\n") {
					line += "\n"
				}
				return []byte(line), nil
			}
		}
	}
	return nil, fmt.Errorf("witness %s replied without a valid cosignature", wv.Name())
}

// WitnessServer is a C2SP tlog-witness: it cosigns a log's checkpoint
// only when it is signed by the log's key and consistent with the last
// checkpoint it cosigned for that log, which it keeps in Dir.
type WitnessServer struct {
	// Signer makes cosignature/v1 signatures (transparency-dev/formats'
	// NewSignerForCosignatureV1).
	Signer note.Signer
	// Logs holds each log's verifier by origin.
	Logs map[string]note.Verifier
	// Dir keeps one file per log: the last checkpoint cosigned.
	Dir string

	mu sync.Mutex
}

// ServeHTTP implements http.Handler: POST /add-checkpoint.
func (s *WitnessServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/add-checkpoint" || r.Method != http.MethodPost {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWitnessBody+1))
	if err != nil || len(body) > maxWitnessBody {
		http.Error(w, "request too large", http.StatusBadRequest)
		return
	}
	status, reply := s.add(body)
	if status == http.StatusConflict {
		w.Header().Set("Content-Type", "text/x.tlog.size")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reply)
}

func (s *WitnessServer) add(body []byte) (int, string) {
	br := bufio.NewReader(bytes.NewReader(body))
	first, err := br.ReadString('\n')
	oldStr, ok := strings.CutPrefix(strings.TrimSuffix(first, "\n"), "old ")
	old, perr := strconv.ParseInt(oldStr, 10, 64)
	if err != nil || !ok || perr != nil || old < 0 {
		return http.StatusBadRequest, "first line must be \"old SIZE\"\n"
	}
	var proof tlog.TreeProof
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return http.StatusBadRequest, "no checkpoint after the proof\n"
		}
		if line == "\n" {
			break
		}
		h, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(line, "\n"))
		if err != nil || len(h) != tlog.HashSize || len(proof) >= 64 {
			return http.StatusBadRequest, "bad proof line\n"
		}
		proof = append(proof, tlog.Hash(h))
	}
	signed, _ := io.ReadAll(br)
	origin, _, _ := strings.Cut(string(signed), "\n")
	v, ok := s.Logs[origin]
	if !ok {
		return http.StatusNotFound, fmt.Sprintf("unknown log %q\n", origin)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return http.StatusForbidden, "checkpoint not signed by the log's key\n"
	}
	cp, err := parseText(n.Text)
	if err != nil || cp.Origin != origin {
		return http.StatusBadRequest, "malformed checkpoint\n"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held, err := s.held(origin)
	if err != nil {
		return http.StatusInternalServerError, "witness state unreadable\n"
	}
	if old != held.Size {
		return http.StatusConflict, fmt.Sprintf("%d\n", held.Size)
	}
	if cp.Size < old {
		return http.StatusBadRequest, "checkpoint is smaller than the old size\n"
	}
	if cp.Size == old {
		if cp.Hash != held.Hash {
			return http.StatusConflict, fmt.Sprintf("%d\n", held.Size)
		}
	} else if old > 0 {
		if err := tlog.CheckTree(proof, cp.Size, cp.Hash, old, held.Hash); err != nil {
			return http.StatusUnprocessableEntity, "consistency proof does not verify\n"
		}
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return http.StatusInternalServerError, "witness state unwritable\n"
	}
	if err := safefile.WriteFile(s.statePath(origin), []byte(cp.Text()), 0o600); err != nil {
		return http.StatusInternalServerError, "witness state unwritable\n"
	}
	cosigned, err := note.Sign(&note.Note{Text: n.Text}, s.Signer)
	if err != nil {
		return http.StatusInternalServerError, "cannot sign\n"
	}
	return http.StatusOK, string(cosigned[len(n.Text)+1:])
}

func (s *WitnessServer) statePath(origin string) string {
	sum := sha256.Sum256([]byte(origin))
	return filepath.Join(s.Dir, hex.EncodeToString(sum[:]))
}

// held returns the last checkpoint cosigned for origin; size 0 if none.
func (s *WitnessServer) held(origin string) (Checkpoint, error) {
	data, err := os.ReadFile(s.statePath(origin))
	if errors.Is(err, fs.ErrNotExist) {
		return Checkpoint{Origin: origin}, nil
	}
	if err != nil {
		return Checkpoint{}, err
	}
	return parseText(string(data))
}
