package agentapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/proto/attest"
	"google.golang.org/protobuf/proto"

	"github.com/mtuf/mtuf/keys"
)

// fakeAgent answers attestation requests with a fixed attestation after
// checking the request as an agent would.
func fakeAgent(t *testing.T, att *attest.Attestation) *httptest.Server {
	t.Helper()
	data, err := proto.Marshal(att)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != AttestationPath || r.Method != http.MethodPost || r.Header.Get("Content-Type") != ContentTypeJSON {
			http.Error(w, "unexpected request "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		var req Request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Nonce) != 32 {
			http.Error(w, "bad request body", http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", ContentTypeProtobuf)
		w.Write(data)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestFetchDecodesAttestation(t *testing.T) {
	t.Parallel()
	want := &attest.Attestation{AkPub: []byte("ak"), EventLog: []byte("log")}
	ts := fakeAgent(t, want)
	got, err := Fetch(context.Background(), ts.Client(), ts.URL, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("Fetch = %v, want %v", got, want)
	}
	// A trailing slash on the base URL is fine.
	if _, err := Fetch(context.Background(), ts.Client(), ts.URL+"/", make([]byte, 32)); err != nil {
		t.Errorf("base URL with a trailing slash: %v", err)
	}
}

func TestFetchErrors(t *testing.T) {
	t.Parallel()
	handler := func(status int, ctype string, body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if ctype != "" {
				w.Header().Set("Content-Type", ctype)
			}
			w.WriteHeader(status)
			w.Write(body)
		}
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    []string
		status  int
		bad     bool // the answer is held against the agent (ErrBadResponse)
	}{
		{"agent error", handler(400, "application/json", []byte(`{"error":"nonce of 3 bytes: want 16 to 64 bytes"}`)),
			[]string{"400 Bad Request", "nonce of 3 bytes"}, 400, false},
		{"plain error", handler(502, "text/html", []byte("<html>\n<b>Bad   gateway</b></html>")),
			[]string{"502", "<html> <b>Bad gateway</b></html>"}, 502, false},
		{"long plain error", handler(500, "text/plain", bytes.Repeat([]byte("x"), 10000)),
			[]string{"500", strings.Repeat("x", 200) + "..."}, 500, false},
		{"wrong content type", handler(200, "text/html", []byte("<html>")),
			[]string{`Content-Type "text/html"`, "application/x-protobuf", "mtuf-agent"}, 0, true},
		{"no content type", handler(200, "", nil),
			[]string{"Content-Type", "application/x-protobuf"}, 0, true},
		{"not protobuf", handler(200, ContentTypeProtobuf, []byte{0xff, 0xff, 0xff}),
			[]string{"not a valid protobuf"}, 0, true},
		{"oversized with length", handler(200, ContentTypeProtobuf, make([]byte, MaxResponseBytes+1)),
			[]string{"exceeds the limit of 1048576 bytes"}, 0, true},
		{"oversized streamed", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ContentTypeProtobuf)
			w.WriteHeader(200)
			chunk := make([]byte, 64<<10)
			for i := 0; i < 20; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}, []string{"exceeds the limit of 1048576 bytes"}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(tc.handler)
			defer ts.Close()
			_, err := Fetch(context.Background(), ts.Client(), ts.URL, make([]byte, 32))
			if err == nil {
				t.Fatal("Fetch succeeded, want an error")
			}
			for _, w := range append(tc.want, ts.URL) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			var se *StatusError
			if tc.status != 0 {
				if !errors.As(err, &se) || se.StatusCode != tc.status {
					t.Errorf("error %v is not a StatusError with status %d", err, tc.status)
				}
			} else if errors.As(err, &se) {
				t.Errorf("error %v is a StatusError for a 200 answer", err)
			}
			if got := errors.Is(err, ErrBadResponse); got != tc.bad {
				t.Errorf("errors.Is(%v, ErrBadResponse) = %v, want %v", err, got, tc.bad)
			}
		})
	}
}

func TestFetchRefusesBadArguments(t *testing.T) {
	t.Parallel()
	ts := fakeAgent(t, &attest.Attestation{})
	for name, tc := range map[string]struct {
		url   string
		nonce []byte
		want  string
	}{
		"short nonce":   {ts.URL, make([]byte, MinNonce-1), "nonce of 15 bytes: want 16 to 64 bytes"},
		"long nonce":    {ts.URL, make([]byte, MaxNonce+1), "nonce of 65 bytes"},
		"no scheme":     {"127.0.0.1:8733", make([]byte, 32), "want http://HOST:PORT"},
		"ftp":           {"ftp://127.0.0.1:8733", make([]byte, 32), "want http://HOST:PORT"},
		"no host":       {"http://", make([]byte, 32), "want http://HOST:PORT"},
		"query":         {ts.URL + "?x=1", make([]byte, 32), "without query"},
		"refused":       {"http://127.0.0.1:1", make([]byte, 32), "agent http://127.0.0.1:1"},
		"bad url chars": {"http://%zz", make([]byte, 32), "want http://HOST:PORT"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Fetch(context.Background(), ts.Client(), tc.url, tc.nonce)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Fetch error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestFetchHonoursContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer ts.Close()
	defer close(release)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Fetch(ctx, ts.Client(), ts.URL, make([]byte, 32))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch error = %v, want the context deadline", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("Fetch did not return when its context expired")
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := FetchAK(ctx, ts.Client(), ts.URL); !errors.Is(err, context.Canceled) {
		t.Fatalf("FetchAK error = %v, want context.Canceled", err)
	}
}

func TestFetchAK(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := keys.MarshalPublic(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(ctype string, body []byte) *httptest.Server {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != AKPath || r.Method != http.MethodGet {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", ctype)
			w.Write(body)
		}))
		t.Cleanup(ts.Close)
		return ts
	}

	ts := serve(ContentTypePEM, pemBytes)
	got, err := FetchAK(context.Background(), ts.Client(), ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(got) {
		t.Fatal("FetchAK returned another key")
	}

	for name, tc := range map[string]struct {
		ctype string
		body  []byte
		want  string
	}{
		"not pem":      {ContentTypePEM, []byte("hello"), "no PEM block"},
		"private key":  {ContentTypePEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), `"PRIVATE KEY", want PUBLIC KEY`},
		"trailing":     {ContentTypePEM, append(append([]byte{}, pemBytes...), pemBytes...), "data after the PEM block"},
		"bad der":      {ContentTypePEM, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "attestation key"},
		"content type": {"text/plain", pemBytes, "application/x-pem-file"},
		"too large":    {ContentTypePEM, bytes.Repeat([]byte("a"), 70<<10), "exceeds the limit"},
	} {
		t.Run(name, func(t *testing.T) {
			ts := serve(tc.ctype, tc.body)
			_, err := FetchAK(context.Background(), ts.Client(), ts.URL)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("FetchAK error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestRequestJSON(t *testing.T) {
	t.Parallel()
	// The nonce travels as standard base64, as encoding/json writes []byte.
	b, err := json.Marshal(Request{Nonce: []byte{0xfb, 0xff, 0x00}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"nonce":"+/8A"}` {
		t.Errorf("Request JSON = %s", b)
	}
}

func TestCheckNonce(t *testing.T) {
	t.Parallel()
	for n := 0; n <= MaxNonce+1; n++ {
		err := CheckNonce(make([]byte, n))
		if ok := n >= MinNonce && n <= MaxNonce; ok != (err == nil) {
			t.Errorf("CheckNonce(%d bytes) = %v", n, err)
		}
	}
}
