package keys

import (
	"context"
	"crypto"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// envPassword is a PasswordSource that reads only the given password from
// MTUF_PASSWORD and never prompts.
func envPassword(t *testing.T, pw string) PasswordSource {
	return PasswordSource{
		Env: func(k string) string {
			if k == PasswordEnv {
				return pw
			}
			return ""
		},
		Stdin: noTerminal(t),
		tty:   filepath.Join(t.TempDir(), "no-tty"),
	}
}

// noTerminal returns a file that is not a terminal, standing in for a
// standard input that is a pipe.
func noTerminal(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteKeyPair(t *testing.T) {
	t.Parallel()
	for _, typ := range types {
		t.Run(string(typ), func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, "root")
			priv := testKey(t, typ)
			if err := WriteKeyPair(name, priv, []byte(testPassword)); err != nil {
				t.Fatal(err)
			}
			if got, want := dirEntries(t, dir), []string{"root.key", "root.pub"}; !slices.Equal(got, want) {
				t.Fatalf("directory holds %v, want %v (no temporary files)", got, want)
			}
			for file, mode := range map[string]fs.FileMode{"root.key": 0o600, "root.pub": 0o644} {
				fi, err := os.Stat(filepath.Join(dir, file))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != mode {
					t.Errorf("%s has mode %v, want %v", file, fi.Mode().Perm(), mode)
				}
			}
			got, err := LoadPrivate(context.Background(), name+".key", envPassword(t, testPassword))
			if err != nil {
				t.Fatal(err)
			}
			pub, err := LoadPublic(name + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			type equaler interface{ Equal(crypto.PublicKey) bool }
			if !got.Public().(equaler).Equal(priv.Public()) || !pub.(equaler).Equal(priv.Public()) {
				t.Fatal("keys read back differ from the key written")
			}
		})
	}
}

func TestWriteKeyPairRefusesOverwrite(t *testing.T) {
	t.Parallel()
	priv := testKey(t, ED25519)
	for _, existing := range []string{"root.key", "root.pub"} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, existing)
			if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := WriteKeyPair(filepath.Join(dir, "root"), priv, []byte(testPassword))
			if err == nil || !strings.Contains(err.Error(), path+" already exists") {
				t.Fatalf("WriteKeyPair error = %v, want %q already exists", err, path)
			}
			if got, want := dirEntries(t, dir), []string{existing}; !slices.Equal(got, want) {
				t.Fatalf("directory holds %v, want only %v", got, want)
			}
			if b, _ := os.ReadFile(path); string(b) != "precious" {
				t.Fatalf("%s was changed to %q", existing, b)
			}
		})
	}
}

func TestWriteKeyPairFailures(t *testing.T) {
	priv := testKey(t, ED25519)
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, keyName, wantErr string
	}{
		{"missing directory", filepath.Join(dir, "nope", "root"), "key directory: stat " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"parent is a file", filepath.Join(notDir, "root"), "key directory " + notDir + " is not a directory"},
		{"empty name", "", "no key name given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteKeyPair(tt.keyName, priv, []byte(testPassword))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("WriteKeyPair error = %v, want it to contain %q", err, tt.wantErr)
			}
			if got := dirEntries(t, dir); !slices.Equal(got, []string{"file"}) {
				t.Fatalf("directory holds %v after a failed write", got)
			}
		})
	}
}

// childDirEnv tells a re-executed test binary to run the unwritable
// directory check itself, without root's power to write anywhere.
const childDirEnv = "MTUF_KEYS_TEST_UNWRITABLE_DIR"

func TestWriteKeyPairUnwritableDir(t *testing.T) {
	t.Parallel()
	if dir := os.Getenv(childDirEnv); dir != "" {
		checkUnwritable(t, dir)
		return
	}
	base := t.TempDir()
	dir := filepath.Join(base, "keys")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		// An ordinary user: the directory really is read-only.
		checkUnwritable(t, dir)
		return
	}
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	// Root writes through any mode, so run the check in a copy of this test
	// binary as an unprivileged user.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "keys.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^TestWriteKeyPairUnwritableDir$", "-test.v")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	cmd.Dir = base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged run failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestWriteKeyPairUnwritableDir") {
		t.Fatalf("unprivileged run did not pass the check:\n%s", out)
	}
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Fatalf("read-only directory holds %v after a failed write", got)
	}
}

func checkUnwritable(t *testing.T, dir string) {
	err := WriteKeyPair(filepath.Join(dir, "root"), testKey(t, ED25519), []byte(testPassword))
	if err == nil || !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), filepath.Join(dir, "root.key")) {
		t.Fatalf("WriteKeyPair in a read-only directory: error = %v, want permission denied naming root.key", err)
	}
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Fatalf("read-only directory holds %v after a failed write", got)
	}
}

func TestLoadPrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := filepath.Join(dir, "targets")
	priv := testKey(t, ECDSAP256)
	writeTestKeyPair(t, name, ECDSAP256)
	colon := filepath.Join(dir, "ci:key.key")
	if err := os.Link(name+".key", colon); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		ctx       context.Context
		ref       string
		password  string
		wantErr   []string
		wantWrong bool
	}{
		{name: "ok", ref: name + ".key", password: testPassword},
		{name: "path with a colon", ref: colon, password: testPassword},
		{name: "wrong password", ref: name + ".key", password: "guess",
			wantErr: []string{"private key " + name + ".key: ", "wrong password"}, wantWrong: true},
		{name: "missing file", ref: name + ".nope", password: testPassword,
			wantErr: []string{"reading private key", name + ".nope", "no such file"}},
		{name: "public key given", ref: name + ".pub",
			wantErr: []string{"private key " + name + ".pub: this is a public key", "give " + name + ".key"}},
		{name: "missing public key given", ref: name + "-missing.pub",
			wantErr: []string{"private key " + name + "-missing.pub: this names a public key, not a private key: give " + name + "-missing.key"}},
		{name: "unknown scheme", ref: "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/root",
			wantErr: []string{`unsupported key reference scheme "gcpkms"`, "awskms://"}},
		{name: "malformed KMS reference", ref: "awskms://alias/root",
			wantErr: []string{"KMS key awskms://alias/root: kms specification should be in the format awskms://[ENDPOINT]/[ID/ALIAS/ARN]"}},
		{name: "no password", ref: name + ".key",
			wantErr: []string{"no password for " + name + ".key: set MTUF_PASSWORD, use --password-file, or run on a terminal"}},
		{name: "canceled", ctx: canceled, ref: name + ".key", password: testPassword,
			wantErr: []string{context.Canceled.Error()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			got, err := LoadPrivate(ctx, tt.ref, envPassword(t, tt.password))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(priv.Public()) {
					t.Fatal("loaded a different key")
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadPrivate(%s) succeeded, want an error", tt.ref)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("LoadPrivate error = %q, want it to contain %q", err, want)
				}
			}
			if got := errors.Is(err, ErrWrongPassword); got != tt.wantWrong {
				t.Errorf("errors.Is(err, ErrWrongPassword) = %v, want %v", got, tt.wantWrong)
			}
		})
	}
}

func TestLoadPublic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := filepath.Join(dir, "snapshot")
	priv := testKey(t, ED25519)
	writeTestKeyPair(t, name, ED25519)
	garbage := filepath.Join(dir, "garbage.pub")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ref string
		wantErr   string
	}{
		{name: "ok", ref: name + ".pub"},
		{name: "private key given", ref: name + ".key", wantErr: name + ".key is a private key; pass " + name + ".pub"},
		{name: "missing file", ref: name + ".pem", wantErr: "reading public key: open " + name + ".pem: no such file"},
		{name: "not a key", ref: garbage, wantErr: "public key " + garbage + ": not a PEM-encoded key"},
		{name: "unknown scheme", ref: "azurekms://vault.example/root", wantErr: `unsupported key reference scheme "azurekms"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadPublic(tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadPublic error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(priv.Public()) {
				t.Fatal("loaded a different key")
			}
		})
	}
}
