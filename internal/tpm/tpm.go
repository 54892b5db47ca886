// Package tpm opens TPMs (a device, a TCP TPM such as swtpm, or the in-process
// simulator), reads their PCR banks, and boots a simulated or test TPM through a
// described boot chain while writing the TCG event log that a verifier replays.
//
// Everything here speaks the legacy io.ReadWriter interface of go-tpm, which is
// what go-tpm-tools' client package (attestation keys, quotes) expects.
package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"
)

// Spec prefixes understood by Open.
const (
	specSim = "sim"
	specTCP = "tcp://"
)

// IsSimulator reports whether spec names the in-process simulator, which
// starts with every PCR in its reset state.
func IsSimulator(spec string) bool {
	return spec == specSim || strings.HasPrefix(spec, specSim+":")
}

// IsTestTPM reports whether spec names a TPM whose PCRs belong to no real
// machine (the simulator or a TCP TPM such as swtpm), so that extending them
// with a described boot chain harms nothing.
func IsTestTPM(spec string) bool {
	return spec == specSim || strings.HasPrefix(spec, specSim+":") || strings.HasPrefix(spec, specTCP)
}

// Open opens the TPM named by spec:
//
//   - "sim": a fresh in-process simulator (go-tpm-tools), started and ready;
//   - "sim:SEED": a simulator whose hierarchy seeds derive from the integer
//     SEED, so that its keys (and so the attestation key) are the same on every
//     run; for demos and tests only, since anyone knowing SEED knows the keys;
//   - "tcp://HOST:PORT": a TCP TPM speaking the TPM simulator protocol on its
//     command port, such as swtpm started with
//     `socket --tpm2 --server type=tcp,port=PORT --flags not-need-init,startup-clear`.
//     swtpm serves one client connection at a time: while a process holds
//     the TPM open (mtuf-agent does for as long as it runs), every other
//     client's commands wait, and fail on their own timeout;
//   - anything else: a TPM character device such as /dev/tpmrm0.
//
// The simulator is only in builds with the build tag "simulator" (and cgo),
// as tests and demos are made: a node's production agent has no TPM but its
// own. Elsewhere "sim" is an error that says how to get a build with it.
//
// The simulator is a process-wide resource: a second Open of "sim" waits until
// the first one is closed. A TCP TPM serves one client at a time, so other
// tools cannot use it while the returned handle is open.
//
// The returned handle is not safe for concurrent use.
func Open(spec string) (io.ReadWriteCloser, error) {
	switch {
	case spec == "":
		return nil, errors.New("no TPM given: use a device such as /dev/tpmrm0, tcp://HOST:PORT for swtpm, or sim for the simulator")
	case spec == specSim || strings.HasPrefix(spec, specSim+":"):
		return openSimulator(spec)
	case strings.HasPrefix(spec, specTCP):
		return openTCP(spec)
	default:
		return openDevice(spec)
	}
}

func openDevice(path string) (io.ReadWriteCloser, error) {
	if _, err := os.Stat(path); err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("TPM %q: no such device: give the TPM device of this machine (usually /dev/tpmrm0), tcp://HOST:PORT for swtpm, or sim for the simulator", path)
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("TPM %q: permission denied: run as a member of the group owning the device (often tss) or as root", path)
		default:
			return nil, fmt.Errorf("TPM %q: %w", path, err)
		}
	}
	rwc, err := tpm2.OpenTPM(path)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("TPM %q: permission denied: run as a member of the group owning the device (often tss) or as root", path)
		}
		return nil, fmt.Errorf("TPM %q: %w: give a TPM 2.0 device such as /dev/tpmrm0", path, err)
	}
	return rwc, nil
}

// tcpCommandTimeout bounds one TPM command over TCP. Creating a primary RSA
// key on a software TPM takes seconds; a TPM that has not answered in this
// time is hung, and the caller (an HTTP request) should fail, not wait forever.
const tcpCommandTimeout = 2 * time.Minute

// maxTPMResponse is the largest response accepted from a TCP TPM. TPM 2.0
// responses are bounded by the TPM's MAX_RESPONSE_SIZE, 4096 bytes on
// PC Client TPMs; anything much larger is a broken or hostile peer.
const maxTPMResponse = 64 << 10

// tpmSendCommand is TPM_SEND_COMMAND of the TPM simulator's TCP protocol
// (TpmTcpProtocol.h). swtpm accepts it on its server port alongside bare
// command bytes, and the reference simulator requires it, so speaking it
// reaches both. Only the command port is used: swtpm's control port speaks a
// different protocol, and a TPM started with startup-clear needs no power-on.
const tpmSendCommand = 8

// tcpTPM is a TPM reached over TCP. Each Write sends one command and reads its
// whole response, which Read then hands out, the way the simulator and
// go-tpm's tpmutil expect.
type tcpTPM struct {
	spec string
	mu   sync.Mutex
	conn net.Conn
	resp bytes.Buffer
}

func openTCP(spec string) (io.ReadWriteCloser, error) {
	addr := strings.TrimPrefix(spec, specTCP)
	if _, _, err := net.SplitHostPort(addr); err != nil || strings.Contains(addr, "/") {
		return nil, fmt.Errorf("TPM %q: want tcp://HOST:PORT with the TPM's command port, as in tcp://127.0.0.1:2321", spec)
	}
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("TPM %q: %w: is swtpm running with --server type=tcp,port=PORT on that address?", spec, err)
	}
	t := &tcpTPM{spec: spec, conn: conn}
	// A TPM that was never started answers TPM_RC_INITIALIZE to everything;
	// catch that here rather than on the first real command.
	if _, err := tpm2.GetManufacturer(t); err != nil {
		_ = conn.Close()
		var rc tpm2.Error
		if errors.As(err, &rc) && rc.Code == tpm2.RCInitialize {
			return nil, fmt.Errorf("TPM %q has not been started: run swtpm with --flags not-need-init,startup-clear", spec)
		}
		return nil, fmt.Errorf("TPM %q does not answer as a TPM 2.0: %w", spec, err)
	}
	return t, nil
}

// Write sends one TPM command and reads its response.
func (t *tcpTPM) Write(cmd []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// A response not fully read belongs to the previous command.
	t.resp.Reset()
	if err := t.conn.SetDeadline(time.Now().Add(tcpCommandTimeout)); err != nil {
		return 0, fmt.Errorf("TPM %q: %w", t.spec, err)
	}
	frame := make([]byte, 9, 9+len(cmd))
	binary.BigEndian.PutUint32(frame[0:4], tpmSendCommand)
	frame[4] = 0 // locality
	binary.BigEndian.PutUint32(frame[5:9], uint32(len(cmd)))
	frame = append(frame, cmd...)
	if _, err := t.conn.Write(frame); err != nil {
		return 0, fmt.Errorf("TPM %q: send command: %w", t.spec, err)
	}
	var size uint32
	if err := binary.Read(t.conn, binary.BigEndian, &size); err != nil {
		return 0, fmt.Errorf("TPM %q: read response: %w", t.spec, err)
	}
	if size > maxTPMResponse {
		return 0, fmt.Errorf("TPM %q: response of %d bytes exceeds the %d-byte limit", t.spec, size, maxTPMResponse)
	}
	// The response is followed by a 4-byte acknowledgement (0 on success).
	buf := make([]byte, int(size)+4)
	if _, err := io.ReadFull(t.conn, buf); err != nil {
		return 0, fmt.Errorf("TPM %q: read response: %w", t.spec, err)
	}
	if ack := binary.BigEndian.Uint32(buf[size:]); ack != 0 {
		return 0, fmt.Errorf("TPM %q: command refused by the TPM server (code %d)", t.spec, ack)
	}
	if size == 0 {
		return 0, fmt.Errorf("TPM %q: empty response: is the TPM powered on and started?", t.spec)
	}
	t.resp.Write(buf[:size])
	return len(cmd), nil
}

// Read returns the response of the last command.
func (t *tcpTPM) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.resp.Read(p)
}

// tpmSessionEnd tells a TPM server that the client is leaving, so that it
// closes its side at once and can serve the next client.
const tpmSessionEnd = 20

// Close ends the session and closes the connection; the TPM keeps running.
func (t *tcpTPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.conn.SetDeadline(time.Now().Add(5 * time.Second))
	_ = binary.Write(t.conn, binary.BigEndian, uint32(tpmSessionEnd))
	return t.conn.Close()
}

var _ io.ReadWriteCloser = (*tcpTPM)(nil)
