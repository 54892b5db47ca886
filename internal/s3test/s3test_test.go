package s3test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The server behaves as the repository tests assume: root credentials
// work, and readers that a policy names see the objects under its prefix
// only, get 403 for the keys it denies, and cannot write.
func TestServer(t *testing.T) {
	ctx := context.Background()
	s := Start(t)
	c := s.Client()
	for _, key := range []string{"repo/metadata/timestamp.json", "repo/metadata/1.root.json", "private/secret.json"} {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key), Body: strings.NewReader("{}")}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get(s.HTTPURL("repo") + "/metadata/timestamp.json"); code != http.StatusForbidden {
		t.Errorf("anonymous read of a private bucket: %d, want 403", code)
	}

	access, secret, err := s.CreateUser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReadPolicy(ctx, "repo", []string{Anyone, access}, "metadata/1.root.json", "metadata/2.root.json"); err != nil {
		t.Fatal(err)
	}
	user := s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint), Region: s.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, ""),
	})
	for _, tc := range []struct {
		key  string
		code int
	}{
		{"repo/metadata/timestamp.json", http.StatusOK},
		{"repo/metadata/3.root.json", http.StatusNotFound},
		{"repo/metadata/2.root.json", http.StatusForbidden}, // missing and denied
		{"repo/metadata/1.root.json", http.StatusForbidden}, // present and denied
		{"private/secret.json", http.StatusForbidden},
	} {
		if code, body := get(s.HTTPURL("") + "/" + tc.key); code != tc.code {
			t.Errorf("anonymous GET %s: %d, want %d (%s)", tc.key, code, tc.code, body)
		}
		_, err := user.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(tc.key)})
		var re *smithyhttp.ResponseError
		switch {
		case tc.code == http.StatusOK && err != nil:
			t.Errorf("user GET %s: %v", tc.key, err)
		case tc.code != http.StatusOK && (!errors.As(err, &re) || re.HTTPStatusCode() != tc.code):
			t.Errorf("user GET %s: %v, want status %d", tc.key, err, tc.code)
		}
	}
	// Root is not bound by the policy.
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String("repo/metadata/1.root.json")}); err != nil {
		t.Errorf("root GET of a denied key: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPut, s.HTTPURL("repo")+"/metadata/timestamp.json", bytes.NewReader([]byte("x")))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("anonymous PUT: %d, want 403", resp.StatusCode)
	}
	if _, err := user.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String("repo/x"), Body: strings.NewReader("x")}); err == nil {
		t.Error("a reader could write")
	}

	env := strings.Join(s.Environ(t.TempDir()), "\n")
	for _, want := range []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey + "\n", "AWS_SECRET_ACCESS_KEY=" + s.SecretKey + "\n", "AWS_PROFILE=\n", "AWS_EC2_METADATA_DISABLED=true"} {
		if !strings.Contains(env, want) {
			t.Errorf("Environ lacks %q", want)
		}
	}
}

// Close stops the server: nothing answers on its address afterwards.
func TestRunClose(t *testing.T) {
	s := Start(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(s.Endpoint + "/health"); err == nil {
		resp.Body.Close()
		t.Errorf("server still answers after Close: %s", resp.Status)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
