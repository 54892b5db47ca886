// Package precalc computes, from a boot image alone, the PCR values that
// UEFI firmware, systemd-stub and the Linux EFI stub will measure when they
// boot it: the reference values of a measured boot, reproduced without
// booting anything.
//
// The image is a unified kernel image (UKI: systemd-stub with the kernel,
// initrd and command line in PE sections), an EFI System Partition holding
// one as EFI/BOOT/BOOTX64.EFI (a FAT file system image or a directory), or a
// raw disk image whose GPT holds such an ESP.
//
// What is modelled, per PCR (each event is extended in every bank with that
// bank's hash of the same data):
//
//   - PCR 4: the firmware's EV_EFI_ACTION "Calling EFI Application from Boot
//     Option" and EV_SEPARATOR, then the Authenticode hash of each EFI
//     application it loads: the UKI, then the kernel of its .linux section,
//     which systemd-stub (252 and later) starts with LoadImage.
//   - PCR 11: systemd-stub measures each UKI section present, in the order
//     .linux .osrel .cmdline .initrd .splash .dtb .pcrpkey: the section's
//     name with its NUL, then its VirtualSize bytes.
//   - PCR 9: the Linux EFI stub (6.1) measures its load options, the command
//     line systemd-stub hands it as UTF-16LE with a terminating NUL, then
//     the initrd it loads through LoadFile2.
//   - PCR 12: left at zero, since systemd-stub measures nothing there when
//     the UKI's own .cmdline is used and no credentials are found.
//
// PCRs the firmware alone decides (0-3, 5, 6) are left to the platform's
// profile.
package precalc

import (
	"crypto"
	_ "crypto/sha256" // the sha256 bank
	_ "crypto/sha512" // the sha384 bank
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
)

// Event types of the TCG PC Client event log that the model produces.
const (
	EvSeparator                  = 0x00000004
	EvEventTag                   = 0x00000006
	EvIPL                        = 0x0000000d
	EvEFIBootServicesApplication = 0x80000003
	EvEFIAction                  = 0x80000007
	callingEFIApplication        = "Calling EFI Application from Boot Option"
	maxCmdline                   = 1 << 20
	// maxZeroFill bounds how far a measured section's VirtualSize may
	// exceed its file data. Tools that build UKIs write every byte (the
	// excess is alignment at most); a larger gap only makes a corrupt file
	// hash gigabytes of zeros.
	maxZeroFill                   = 1 << 20
	sectionLinux, sectionInitrd   = ".linux", ".initrd"
	sectionCmdline                = ".cmdline"
	sectionPCRSig, sectionPCRPKey = ".pcrsig", ".pcrpkey"
	sectionOSRel, sectionSplash   = ".osrel", ".splash"
	sectionDTB                    = ".dtb"
)

// measuredSections are the UKI sections systemd-stub measures into PCR 11,
// in its order (its unified_sections table without .pcrsig, which holds
// signatures of the PCR values and so cannot be part of them).
var measuredSections = []string{sectionLinux, sectionOSRel, sectionCmdline, sectionInitrd, sectionSplash, sectionDTB, sectionPCRPKey}

// Event is one measurement the boot makes: the digest of the same data in
// every bank computed.
type Event struct {
	PCR         uint32
	Type        uint32
	Description string
	Digests     map[crypto.Hash][]byte
}

// Result is the precalculation of one image.
type Result struct {
	// Source says what was read, e.g. "UKI" or "GPT disk image, ESP
	// partition 1, EFI/BOOT/BOOTX64.EFI".
	Source string
	// Sections are the UKI's sections measured into PCR 11, in order.
	Sections []string
	// Cmdline is the kernel command line as systemd-stub hands it on.
	Cmdline string
	// Banks are the hash algorithms computed.
	Banks []crypto.Hash
	// Events are the measurements in the order they happen.
	Events []Event
}

// PCRs replays the events in bank h from the PCRs' reset value (zeros) and
// returns the PCRs the image determines: 4, 9, 11 and 12.
func (r *Result) PCRs(h crypto.Hash) (map[uint32][]byte, error) {
	found := false
	for _, b := range r.Banks {
		found = found || b == h
	}
	if !found {
		return nil, fmt.Errorf("the %v bank was not computed", h)
	}
	pcrs := map[uint32][]byte{}
	for _, idx := range []uint32{4, 9, 11, 12} {
		pcrs[idx] = make([]byte, h.Size())
	}
	for _, e := range r.Events {
		d := h.New()
		d.Write(pcrs[e.PCR])
		d.Write(e.Digests[h])
		pcrs[e.PCR] = d.Sum(nil)
	}
	return pcrs, nil
}

// UKI precalculates the measurements of booting the UKI held in r (size
// bytes), in the banks given (sha256 and sha384 when none are).
func UKI(r io.ReaderAt, size int64, banks ...crypto.Hash) (*Result, error) {
	if len(banks) == 0 {
		banks = []crypto.Hash{crypto.SHA256, crypto.SHA384}
	}
	for _, b := range banks {
		if b != crypto.SHA256 && b != crypto.SHA384 {
			return nil, fmt.Errorf("PCR bank %v: only sha256 and sha384 are modelled", b)
		}
	}
	uki, err := parsePE(r, size)
	if err != nil {
		return nil, fmt.Errorf("UKI: %w", err)
	}
	linux := uki.section(sectionLinux)
	if linux == nil || linux.VirtualSize == 0 {
		return nil, errors.New("UKI: no .linux section: this PE image is not a unified kernel image")
	}
	// systemd-stub 252 wraps .pcrsig and .pcrpkey into a cpio archive that it
	// appends to the initrd, which would change what Linux measures into PCR
	// 9; that is not modelled, so refuse rather than predict a wrong value.
	for _, name := range []string{sectionPCRSig, sectionPCRPKey} {
		if uki.section(name) != nil {
			return nil, fmt.Errorf("UKI: has a %s section, which systemd-stub appends to the initrd as a cpio archive; predicting PCR 9 for that is not supported", name)
		}
	}
	ukiRanges, err := uki.authenticodeRanges()
	if err != nil {
		return nil, fmt.Errorf("UKI: %w", err)
	}
	if int64(linux.VirtualSize) > int64(linux.SizeOfRaw)+maxZeroFill {
		return nil, fmt.Errorf("UKI: section .linux is %d bytes in memory but only %d in the file", linux.VirtualSize, linux.SizeOfRaw)
	}
	kernelData := uki.sectionData(linux)
	kernel, err := parsePE(kernelData, int64(linux.VirtualSize))
	if err != nil {
		return nil, fmt.Errorf("UKI: the kernel in its .linux section: %w", err)
	}
	kernelRanges, err := kernel.authenticodeRanges()
	if err != nil {
		return nil, fmt.Errorf("UKI: the kernel in its .linux section: %w", err)
	}
	cmdline, loadOptions, err := stubCmdline(uki)
	if err != nil {
		return nil, err
	}

	// Every large digest is independent of the others: compute them
	// concurrently, each reading its own ranges, so that the whole takes
	// about as long as hashing the image once.
	type job struct {
		r      io.ReaderAt
		ranges [][2]int64
		h      crypto.Hash
		out    *[]byte
	}
	var jobs []job
	res := &Result{Source: "UKI", Cmdline: cmdline, Banks: banks}
	ukiDigest := map[crypto.Hash]*[]byte{}
	kernelDigest := map[crypto.Hash]*[]byte{}
	sectionDigest := map[string]map[crypto.Hash]*[]byte{}
	var present []*peSection
	for _, name := range measuredSections {
		s := uki.section(name)
		if s == nil || s.VirtualSize == 0 {
			continue
		}
		if int64(s.VirtualSize) > int64(s.SizeOfRaw)+maxZeroFill {
			return nil, fmt.Errorf("UKI: section %s is %d bytes in memory but only %d in the file: more zero fill than the %d bytes a UKI section can have", name, s.VirtualSize, s.SizeOfRaw, maxZeroFill)
		}
		present = append(present, s)
		res.Sections = append(res.Sections, name)
		sectionDigest[name] = map[crypto.Hash]*[]byte{}
	}
	for _, h := range banks {
		ukiDigest[h], kernelDigest[h] = new([]byte), new([]byte)
		jobs = append(jobs, job{r, ukiRanges, h, ukiDigest[h]}, job{kernelData, kernelRanges, h, kernelDigest[h]})
		for _, s := range present {
			out := new([]byte)
			sectionDigest[s.Name][h] = out
			jobs = append(jobs, job{uki.sectionData(s), [][2]int64{{0, int64(s.VirtualSize)}}, h, out})
		}
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			*j.out, errs[i] = hashRanges(j.r, j.ranges, j.h)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("UKI: reading: %w", err)
	}

	digests := func(data []byte) map[crypto.Hash][]byte {
		m := map[crypto.Hash][]byte{}
		for _, h := range banks {
			d := h.New()
			d.Write(data)
			m[h] = d.Sum(nil)
		}
		return m
	}
	deref := func(m map[crypto.Hash]*[]byte) map[crypto.Hash][]byte {
		out := map[crypto.Hash][]byte{}
		for h, p := range m {
			out[h] = *p
		}
		return out
	}
	var sep [4]byte
	res.Events = append(res.Events,
		Event{4, EvEFIAction, callingEFIApplication, digests([]byte(callingEFIApplication))},
		Event{4, EvSeparator, "separator", digests(sep[:])},
		Event{4, EvEFIBootServicesApplication, "UKI (Authenticode)", deref(ukiDigest)},
	)
	for _, s := range present {
		res.Events = append(res.Events,
			Event{11, EvIPL, s.Name + " (name)", digests(append([]byte(s.Name), 0))},
			Event{11, EvIPL, s.Name, deref(sectionDigest[s.Name])})
	}
	res.Events = append(res.Events,
		Event{4, EvEFIBootServicesApplication, "kernel of .linux (Authenticode)", deref(kernelDigest)},
		Event{9, EvEventTag, "LOADED_IMAGE::LoadOptions", digests(loadOptions)})
	if d, ok := sectionDigest[sectionInitrd]; ok {
		res.Events = append(res.Events, Event{9, EvEventTag, "Linux initrd", deref(d)})
	}
	return res, nil
}

// stubCmdline returns the command line systemd-stub builds from the
// .cmdline section, and the load options it passes to the kernel. The
// stub takes the section's bytes up to the first NUL, widens each to
// UTF-16, and (its mangle_stub_cmdline, as in Debian 12's 252 stable
// release) drops leading and trailing whitespace and control characters
// and turns the inner ones into spaces, one for one; the load options are
// that string as UTF-16LE with a terminating NUL. The stub widens bytes
// one by one rather than decoding UTF-8, so a byte above 0x7f would be
// measured as a value that depends on the C compiler's char signedness:
// such a command line is refused.
func stubCmdline(uki *peImage) (string, []byte, error) {
	s := uki.section(sectionCmdline)
	if s == nil || s.VirtualSize == 0 {
		return "", nil, errors.New("UKI: no .cmdline section: the command line would come from the boot entry, which the image does not determine")
	}
	if s.VirtualSize > maxCmdline {
		return "", nil, fmt.Errorf("UKI: .cmdline section is %d bytes, more than the %d accepted", s.VirtualSize, maxCmdline)
	}
	raw := make([]byte, s.VirtualSize)
	if _, err := io.ReadFull(io.NewSectionReader(uki.sectionData(s), 0, int64(s.VirtualSize)), raw); err != nil {
		return "", nil, fmt.Errorf("UKI: reading .cmdline: %w", err)
	}
	if i := strings.IndexByte(string(raw), 0); i >= 0 {
		raw = raw[:i]
	}
	for i, c := range raw {
		if c > 0x7f {
			return "", nil, fmt.Errorf("UKI: .cmdline byte %d is %#x: only ASCII command lines are supported", i, c)
		}
	}
	space := func(c byte) bool { return c <= 0x20 || c == 0x7f }
	start, end := 0, len(raw)
	for start < end && space(raw[start]) {
		start++
	}
	for end > start && space(raw[end-1]) {
		end--
	}
	units := make([]uint16, 0, end-start+1)
	var b strings.Builder
	for _, c := range raw[start:end] {
		if space(c) {
			c = ' '
		}
		units = append(units, uint16(c))
		b.WriteByte(c)
	}
	units = append(units, 0)
	opts := make([]byte, 2*len(units))
	for i, u := range units {
		binary.LittleEndian.PutUint16(opts[2*i:], u)
	}
	return b.String(), opts, nil
}
