package keys

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPasswordSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lf := write("lf", "from file\n")
	crlf := write("crlf", "from file\r\n")
	two := write("two", "from file\n\n")
	spaces := write("spaces", " from file \n")
	cr := write("cr", "from file\r")
	empty := write("empty", "")
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name    string
		env     string
		file    string
		confirm bool
		want    string
		wantErr string
	}{
		{name: "env wins over file", env: "from env", file: lf, want: "from env"},
		{name: "env with confirm", env: "from env", confirm: true, want: "from env"},
		{name: "file, newline trimmed", file: lf, want: "from file"},
		{name: "file, CRLF trimmed", file: crlf, want: "from file"},
		{name: "file, only one newline trimmed", file: two, want: "from file\n"},
		{name: "file, spaces kept", file: spaces, want: " from file "},
		{name: "file, lone CR kept", file: cr, want: "from file\r"},
		{name: "empty file to read a key", file: empty, want: ""},
		{name: "empty file for a new key", file: empty, confirm: true, wantErr: "empty password for root: a new key must be encrypted with a password"},
		{name: "missing file", file: missing, wantErr: "reading password file: open " + missing},
		{name: "no source, no terminal", wantErr: "no password for root: set MTUF_PASSWORD, use --password-file, or run on a terminal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := envPassword(t, tt.env)
			src.File = tt.file
			var prompt bytes.Buffer
			src.Prompt = &prompt
			got, err := src.Password("root", tt.confirm)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Password error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("Password = %q, want %q", got, tt.want)
			}
			if prompt.Len() != 0 {
				t.Fatalf("prompted %q although a password source was set", prompt.String())
			}
		})
	}
}

func TestPasswordSourceDefaultEnv(t *testing.T) {
	t.Setenv(PasswordEnv, "from the real environment")
	src := PasswordSource{Stdin: noTerminal(t), tty: filepath.Join(t.TempDir(), "no-tty")}
	got, err := src.Password("root", false)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "from the real environment" {
		t.Fatalf("Password = %q, want the value of %s", got, PasswordEnv)
	}
}
