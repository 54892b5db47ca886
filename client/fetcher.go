package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// fetcher downloads repository files over http(s)://, s3:// and file://. It
// implements go-tuf's fetcher.Fetcher.
type fetcher struct {
	ctx  context.Context
	http *http.Client
	// metadataURL is the repository's metadata base URL, without a
	// trailing slash: the files directly under it are metadata, checked
	// to parse as the role they are fetched for.
	metadataURL string
	// s3 holds the clients of the buckets this fetcher reads.
	s3 s3Clients
}

// DownloadFile implements go-tuf's fetcher.Fetcher. A missing file is
// reported as an HTTP 404 for every scheme, which go-tuf's root probe reads
// as "no newer root".
func (f *fetcher) DownloadFile(rawURL string, maxLength int64, timeout time.Duration) ([]byte, error) {
	data, err := f.download(rawURL, maxLength, timeout)
	if err != nil {
		return nil, err
	}
	// go-tuf reports metadata that does not parse with the bare JSON
	// error, which names neither the file nor the role: check here, where
	// both are known.
	if name, ok := strings.CutPrefix(rawURL, f.metadataURL+"/"); ok && f.metadataURL != "" && !strings.Contains(name, "/") {
		if role, ok := metadataRole(name); ok {
			if err := parseMetadata(role, data); err != nil {
				return nil, &MalformedMetadataError{Role: role, File: name, Err: err}
			}
		}
	}
	return data, nil
}

func (f *fetcher) download(rawURL string, maxLength int64, _ time.Duration) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("repository URL %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		return f.file(u, rawURL, maxLength)
	case "http", "https":
		return f.httpGet(rawURL, maxLength)
	case "s3":
		return f.s3Get(rawURL, maxLength)
	default:
		return nil, fmt.Errorf("repository URL %q: unsupported scheme %q (use http, https or file)", rawURL, u.Scheme)
	}
}

func (f *fetcher) file(u *url.URL, rawURL string, maxLength int64) ([]byte, error) {
	fh, err := os.Open(u.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &tuf.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: rawURL}
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u.Path, err)
	}
	defer fh.Close()
	var size int64
	if st, err := fh.Stat(); err == nil {
		size = st.Size()
	}
	return readLimited(fh, size, maxLength, rawURL)
}

func (f *fetcher) httpGet(rawURL string, maxLength int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "mtuf")
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusForbidden && isRootProbe(rawURL) {
		// Object stores that do not allow listing answer 403 for a key
		// that does not exist; for the next root version that means
		// there is none. Any other 403 is still an error.
		return nil, &tuf.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: rawURL}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &tuf.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: rawURL}
	}
	if resp.ContentLength > maxLength {
		return nil, &tuf.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is %d bytes, more than the %d expected", rawURL, resp.ContentLength, maxLength)}
	}
	return readLimited(resp.Body, resp.ContentLength, maxLength, rawURL)
}

// readLimited reads at most maxLength bytes of r. size, when known (a
// file's, a Content-Length), sizes the buffer at once, which saves the
// reads and copies of a buffer grown as it fills.
func readLimited(r io.Reader, size, maxLength int64, what string) ([]byte, error) {
	var buf bytes.Buffer
	if size > 0 && size <= maxLength {
		buf.Grow(int(size) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(r, maxLength+1))
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", what, err)
	}
	data := buf.Bytes()
	if int64(len(data)) > maxLength {
		return nil, &tuf.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is more than the %d bytes expected", what, maxLength)}
	}
	return data, nil
}

// isRootProbe tells whether a URL names a versioned root, N.root.json.
func isRootProbe(rawURL string) bool {
	base := rawURL[strings.LastIndex(rawURL, "/")+1:]
	v, ok := strings.CutSuffix(base, ".root.json")
	if !ok {
		return false
	}
	_, err := strconv.ParseUint(v, 10, 63)
	return err == nil
}
