package s3opts

import (
	"context"
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  Options
	}{
		{"", Options{}},
		{"region=eu-west-1", Options{Region: "eu-west-1"}},
		{"endpoint=http%3A%2F%2F127.0.0.1%3A7070&path-style=true&region=us-east-1", Options{Endpoint: "http://127.0.0.1:7070", Region: "us-east-1", PathStyle: true}},
		{"endpoint=https://s3.example.com&path-style=false", Options{Endpoint: "https://s3.example.com"}},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := Parse(q)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.query, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ query, want string }{
		{"regoin=x", `unknown option "regoin" (known: endpoint, region, path-style)`},
		{"endpoint=127.0.0.1:7070", `endpoint "127.0.0.1:7070" is not an http:// or https:// URL`},
		{"endpoint=ftp://host", `endpoint "ftp://host" is not an http:// or https:// URL`},
		{"path-style=yes", `path-style="yes" is not true or false`},
		{"region=a&region=b", "option region given 2 times"},
		{"region=", "empty region"},
		// Of several mistakes, the first option in name order is named,
		// the same on every run.
		{"zone=1&path-style=maybe&apple=2", `unknown option "apple"`},
	} {
		q, _ := url.ParseQuery(tc.query)
		if _, err := Parse(q); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.query, err, tc.want)
		}
	}
}

// The client reaches the store the options name: the endpoint, path-style
// addressing and the region. (Callers' tests cover a missing region.)
func TestClient(t *testing.T) {
	c, err := Options{Endpoint: "http://127.0.0.1:7070", Region: "eu-west-1", PathStyle: true}.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Options(); o.Region != "eu-west-1" || !o.UsePathStyle || o.BaseEndpoint == nil || *o.BaseEndpoint != "http://127.0.0.1:7070" {
		t.Errorf("client options: region %q, path style %v, endpoint %v", o.Region, o.UsePathStyle, o.BaseEndpoint)
	}
	c, err = Options{Region: "us-west-2"}.Client(context.Background())
	if err != nil || c.Options().Region != "us-west-2" || c.Options().BaseEndpoint != nil || c.Options().UsePathStyle {
		t.Errorf("AWS: %v, %+v", err, c.Options())
	}
}

// BenchmarkClient is what making a client costs (it loads the AWS
// configuration), the reason a caller keeps one for an operation's
// requests.
func BenchmarkClient(b *testing.B) {
	o := Options{Endpoint: "http://127.0.0.1:7070", Region: "us-east-1", PathStyle: true}
	for b.Loop() {
		if _, err := o.Client(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
