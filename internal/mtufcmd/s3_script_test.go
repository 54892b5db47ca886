package mtufcmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mtuf/mtuf/internal/s3test"
)

// scriptS3Key holds a script's S3 server in its testscript values.
type scriptS3Key struct{}

// scriptS3 is the S3 server of one script, once s3server started it.
type scriptS3 struct{ srv *s3test.Server }

// setupS3 prepares a script to start an S3 server with s3server.
func setupS3(env *testscript.Env) {
	env.Values[scriptS3Key{}] = &scriptS3{}
}

// s3Condition is the script condition [s3]: an S3 server can be started.
// Scripts skip without one ([!s3] skip), except under CI=true, where the
// condition holds so that s3server fails instead.
func s3Condition(cond string) (bool, error) {
	if cond != "s3" {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	return os.Getenv("CI") == "true" || s3test.Installed(), nil
}

// s3server starts versitygw, with an empty bucket, for the rest of the
// script, and sets:
//
//	S3_ENDPOINT   the server's base URL
//	S3_BUCKET     the bucket
//	AWS_*         the root credentials, and nothing from elsewhere
//
// A repository under PREFIX is then s3://$S3_BUCKET/PREFIX?endpoint=$S3_ENDPOINT&path-style=true
// and is read over plain HTTP at $S3_ENDPOINT/$S3_BUCKET/PREFIX once
// s3readers has opened it. It fails when versitygw is not installed:
// scripts guard it with [!s3] skip.
func cmdS3Server(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: s3server")
	}
	st := ts.Value(scriptS3Key{}).(*scriptS3)
	if st.srv != nil {
		ts.Fatalf("s3server: already started")
	}
	srv, err := s3test.Run(context.Background())
	ts.Check(err)
	st.srv = srv
	ts.Defer(func() {
		if err := srv.Close(); err != nil {
			ts.Logf("stop versitygw: %v", err)
		}
	})
	ts.Setenv("S3_ENDPOINT", srv.Endpoint)
	ts.Setenv("S3_BUCKET", srv.Bucket)
	for _, kv := range srv.Environ(ts.MkAbs(".aws-none")) {
		k, v, _ := strings.Cut(kv, "=")
		ts.Setenv(k, v)
	}
}

// s3readers PREFIX [KEY...] lets anyone, and a new user whose credentials
// it puts in READER_ACCESS_KEY_ID and READER_SECRET_ACCESS_KEY, read (not
// list) the objects under PREFIX, except the KEYs under PREFIX, which they
// are refused with 403, as a store answers for a missing key to a reader
// who may not list the bucket.
func cmdS3Readers(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: s3readers PREFIX [DENIED-KEY...]")
	}
	st := ts.Value(scriptS3Key{}).(*scriptS3)
	if st.srv == nil {
		ts.Fatalf("s3readers: run s3server first")
	}
	ctx := context.Background()
	access, secret, err := st.srv.CreateUser(ctx)
	ts.Check(err)
	ts.Check(st.srv.SetReadPolicy(ctx, args[0], []string{s3test.Anyone, access}, args[1:]...))
	ts.Setenv("READER_ACCESS_KEY_ID", access)
	ts.Setenv("READER_SECRET_ACCESS_KEY", secret)
}

// s3get KEY FILE copies an object of the bucket to FILE, with the root
// credentials: the maintainer handing out the initial root, say.
func cmdS3Get(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: s3get KEY FILE")
	}
	st := ts.Value(scriptS3Key{}).(*scriptS3)
	if st.srv == nil {
		ts.Fatalf("s3get: run s3server first")
	}
	out, err := st.srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(st.srv.Bucket), Key: aws.String(args[0])})
	ts.Check(err)
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), data, 0o644))
}
