package mtufcmd

import (
	"context"
	"os"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mtuf/mtuf/internal/kmstest"
)

// scriptKMSKey holds a script's KMS server in its testscript values.
type scriptKMSKey struct{}

// scriptKMS is the KMS of one script, once kmsserver started it.
type scriptKMS struct{ srv *kmstest.Server }

// setupKMS prepares a script to start a KMS with kmsserver.
func setupKMS(env *testscript.Env) {
	env.Values[scriptKMSKey{}] = &scriptKMS{}
}

// scriptCondition adds [kms] (local-kms can be started) to the [s3] of
// s3Condition. Under CI=true it holds, so that kmsserver fails instead of
// the script skipping.
func scriptCondition(cond string) (bool, error) {
	if cond == "kms" {
		return os.Getenv("CI") == "true" || kmstest.Installed(), nil
	}
	return s3Condition(cond)
}

// kmsserver starts local-kms for the rest of the script and points the
// AWS environment (endpoint of KMS only, dummy credentials, no shared
// configuration) at it; KMS_ENDPOINT is its address.
func cmdKMSServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: kmsserver")
	}
	st := ts.Value(scriptKMSKey{}).(*scriptKMS)
	if st.srv != nil {
		ts.Fatalf("kmsserver: already started")
	}
	srv, err := kmstest.Run(context.Background())
	ts.Check(err)
	st.srv = srv
	ts.Defer(func() {
		if err := srv.Close(); err != nil {
			ts.Logf("stop local-kms: %v", err)
		}
	})
	ts.Setenv("KMS_ENDPOINT", srv.Endpoint)
	for _, kv := range srv.Environ(ts.MkAbs(".aws-none")) {
		k, v, _ := strings.Cut(kv, "=")
		ts.Setenv(k, v)
	}
}

// kmskey ALIAS... creates an ECDSA P-256 signing key under each alias
// (alias/NAME) in the script's KMS.
func cmdKMSKey(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: kmskey alias/NAME...")
	}
	srv := ts.Value(scriptKMSKey{}).(*scriptKMS).srv
	if srv == nil {
		ts.Fatalf("kmskey: no KMS: run kmsserver first")
	}
	for _, alias := range args {
		_, err := srv.CreateKey(context.Background(), alias)
		ts.Check(err)
	}
}
