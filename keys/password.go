package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// PasswordEnv is the environment variable that holds the key password for
// unattended use (CI, scripts).
const PasswordEnv = "MTUF_PASSWORD"

// PasswordSource says where a key password comes from, in this order: the
// MTUF_PASSWORD environment variable, the file File, then a prompt on the
// terminal. The zero value reads the real environment and terminal.
type PasswordSource struct {
	// File holds the password (a --password-file flag); one trailing
	// newline is dropped, any other byte is part of the password.
	File string
	// Env looks up environment variables; nil means os.Getenv.
	Env func(string) string
	// Stdin is prompted on when it is a terminal; nil means os.Stdin.
	Stdin *os.File
	// Prompt receives the prompt text; nil means standard error when
	// prompting on Stdin and the terminal itself when prompting on /dev/tty.
	Prompt io.Writer

	// tty is the controlling terminal tried when Stdin is not one; ""
	// means /dev/tty.
	tty string
}

// Password returns the password for what (a key name or file, shown in the
// prompt). With confirm, as when a new key is generated, a prompt asks twice
// and the answers must match, and an empty password is refused.
func (p PasswordSource) Password(what string, confirm bool) ([]byte, error) {
	pw, err := p.password(what, confirm)
	if err != nil {
		return nil, err
	}
	if confirm && len(pw) == 0 {
		return nil, fmt.Errorf("empty password for %s: a new key must be encrypted with a password", what)
	}
	return pw, nil
}

func (p PasswordSource) password(what string, confirm bool) ([]byte, error) {
	getenv := p.Env
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := getenv(PasswordEnv); v != "" {
		return []byte(v), nil
	}
	if p.File != "" {
		data, err := os.ReadFile(p.File)
		if err != nil {
			return nil, fmt.Errorf("reading password file: %w", err)
		}
		if b, ok := bytes.CutSuffix(data, []byte("\r\n")); ok {
			return b, nil
		}
		return bytes.TrimSuffix(data, []byte("\n")), nil
	}
	return p.prompt(what, confirm)
}

// prompt reads the password from a terminal with echo off.
func (p PasswordSource) prompt(what string, confirm bool) ([]byte, error) {
	in, out, done, err := p.terminal()
	if err != nil {
		return nil, fmt.Errorf("no password for %s: set %s, use --password-file, or run on a terminal", what, PasswordEnv)
	}
	defer done()
	pw, err := readPassword(in, out, fmt.Sprintf("Enter password for %s: ", what))
	if err != nil {
		return nil, err
	}
	if !confirm {
		return pw, nil
	}
	again, err := readPassword(in, out, fmt.Sprintf("Enter password for %s again: ", what))
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, fmt.Errorf("the two passwords for %s do not match", what)
	}
	return pw, nil
}

// terminal finds a terminal to prompt on: standard input if it is one,
// otherwise the controlling terminal, so that a prompt still works while
// standard input is a pipe.
func (p PasswordSource) terminal() (in *os.File, out io.Writer, done func(), err error) {
	stdin := p.Stdin
	if stdin == nil {
		stdin = os.Stdin
	}
	if term.IsTerminal(int(stdin.Fd())) {
		out = p.Prompt
		if out == nil {
			out = os.Stderr
		}
		return stdin, out, func() {}, nil
	}
	path := p.tty
	if path == "" {
		path = "/dev/tty"
	}
	tty, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	if !term.IsTerminal(int(tty.Fd())) {
		tty.Close()
		return nil, nil, nil, errors.New(path + " is not a terminal")
	}
	out = p.Prompt
	if out == nil {
		out = tty
	}
	return tty, out, func() { tty.Close() }, nil
}

func readPassword(in *os.File, out io.Writer, prompt string) ([]byte, error) {
	if _, err := io.WriteString(out, prompt); err != nil {
		return nil, fmt.Errorf("writing password prompt: %w", err)
	}
	pw, err := term.ReadPassword(int(in.Fd()))
	// The newline typed by the user was not echoed; end the prompt line.
	_, _ = io.WriteString(out, "\n")
	if err != nil {
		return nil, fmt.Errorf("reading password from terminal: %w", err)
	}
	return pw, nil
}
