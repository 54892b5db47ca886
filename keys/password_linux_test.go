package keys

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: what the test writes to master is
// typed on the terminal slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	// The master is opened non-blocking and never has Fd called on it, so
	// that read deadlines work on it.
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		t.Fatalf("unlocking pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		t.Fatalf("naming pseudo-terminal: %v", err)
	}
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { m.Close() })
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening pseudo-terminal slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// readTerminal returns what the terminal shows within half a second.
func readTerminal(t *testing.T, master *os.File) string {
	t.Helper()
	if err := master.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var shown []byte
	buf := make([]byte, 4096)
	for {
		n, err := master.Read(buf)
		shown = append(shown, buf[:n]...)
		if err != nil {
			return string(shown)
		}
	}
}

func TestPasswordPrompt(t *testing.T) {
	tests := []struct {
		name       string
		typed      string
		confirm    bool
		viaTTY     bool // standard input is not a terminal; prompt on the tty
		want       string
		wantErr    string
		wantPrompt string
	}{
		{name: "stdin terminal", typed: "s3cret\n", want: "s3cret", wantPrompt: "Enter password for root.key: \n"},
		{name: "confirmed", typed: "s3cret\ns3cret\n", confirm: true, want: "s3cret",
			wantPrompt: "Enter password for root.key: \nEnter password for root.key again: \n"},
		{name: "confirmation differs", typed: "s3cret\nsecret\n", confirm: true, wantErr: "the two passwords for root.key do not match"},
		{name: "empty new password", typed: "\n\n", confirm: true, wantErr: "empty password for root.key"},
		{name: "controlling terminal", typed: "s3cret\n", viaTTY: true, want: "s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			master, slave := openPTY(t)
			var prompt bytes.Buffer
			src := PasswordSource{Env: func(string) string { return "" }, Stdin: slave, Prompt: &prompt}
			if tt.viaTTY {
				src.Stdin = noTerminal(t)
				src.tty = slave.Name()
				src.Prompt = nil
			}
			if _, err := master.WriteString(tt.typed); err != nil {
				t.Fatal(err)
			}
			got, err := src.Password("root.key", tt.confirm)
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
			if tt.viaTTY {
				// The prompt went to the terminal itself.
				if shown := readTerminal(t, master); !strings.Contains(shown, "Enter password for root.key: ") {
					t.Fatalf("terminal shows %q, want the prompt", shown)
				}
				return
			}
			if prompt.String() != tt.wantPrompt {
				t.Fatalf("prompt = %q, want %q", prompt.String(), tt.wantPrompt)
			}
		})
	}
}

// TestPasswordNotEchoed types the password only once the terminal has echo
// off, as a person would after seeing the prompt, and checks that the
// terminal shows nothing of it.
func TestPasswordNotEchoed(t *testing.T) {
	master, slave := openPTY(t)
	src := PasswordSource{Env: func(string) string { return "" }, Stdin: slave, Prompt: &bytes.Buffer{}}
	type result struct {
		pw  []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		pw, err := src.Password("root.key", false)
		done <- result{pw, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("terminal echo was never turned off")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := master.WriteString("s3cret\n"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || string(r.pw) != "s3cret" {
		t.Fatalf("Password = %q, %v; want s3cret", r.pw, r.err)
	}
	if shown := readTerminal(t, master); strings.Contains(shown, "s3cret") {
		t.Fatalf("the password was echoed: terminal shows %q", shown)
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&unix.ECHO == 0 {
		t.Fatal("terminal echo was not restored after the prompt")
	}
}
