// Package cli holds what the mtuf, mtuf-agent and pcr-reader commands share
// about how they end: the exit statuses scripts rely on, and the error that
// carries one from deep in a command to its Main.
package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// Exit statuses of every command. Scripts rely on them: 0 only on success.
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitFailed: the command ran and failed: a node was refused, a check
	// did not pass, a TPM could not be read, the agent failed while
	// serving. An error that carries no status also ends with it.
	ExitFailed = 1
	// ExitUsage: the command could not run as asked: bad flags or
	// arguments, configuration or input.
	ExitUsage = 2
)

// ExitError is an error with the exit status it ends the command with. An
// ExitError without Err is silent: the command already explained the
// failure (a table of refused nodes, say) and only the status remains.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Usage marks err as a usage error (ExitUsage).
func Usage(err error) error { return &ExitError{Code: ExitUsage, Err: err} }

// Usagef is Usage of a formatted error.
func Usagef(format string, args ...any) error {
	return Usage(fmt.Errorf(format, args...))
}

// Silent ends the command with code and no message.
func Silent(code int) error { return &ExitError{Code: code} }

// Code returns the exit status err carries, ExitFailed when it carries none,
// and ExitOK for a nil error. silent tells that the failure was already
// explained and err is not to be printed.
func Code(err error) (code int, silent bool) {
	if err == nil {
		return ExitOK, false
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code, ee.Err == nil
	}
	return ExitFailed, false
}

// IsUsage tells whether err is a usage error.
func IsUsage(err error) bool {
	code, _ := Code(err)
	return code == ExitUsage
}

// NoArgs is the Args check of a command that takes only flags: an
// argument is a usage error that points at the command's help.
func NoArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usage(fmt.Errorf("unexpected argument %q (see '%s --help')", args[0], c.CommandPath()))
	}
	return nil
}

// FlagError is the flag error function of a command (SetFlagErrorFunc):
// a bad flag is a usage error that points at the command's help.
func FlagError(c *cobra.Command, err error) error {
	return Usage(fmt.Errorf("%w (see '%s --help')", err, c.CommandPath()))
}
