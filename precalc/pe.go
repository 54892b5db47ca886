package precalc

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Limits on the PE headers read, stated where they are enforced: no real
// image comes near them, and they keep a corrupt file from making the parser
// allocate or loop without bound.
const (
	maxPESections   = 96 // the PE format's own limit
	maxHeaderSize   = 1 << 20
	peSignatureSize = 4
	coffHeaderSize  = 20
	sectionHdrSize  = 40
	magicPE32       = 0x10b
	magicPE32Plus   = 0x20b
	dirSecurity     = 4 // index of the certificate table in the data directories
)

// ErrNotPE is returned for an input that does not start like a PE image.
var ErrNotPE = errors.New("not a PE image (no MZ header)")

// peSection is one entry of a PE section table.
type peSection struct {
	Name           string
	VirtualSize    uint32
	VirtualAddress uint32
	SizeOfRaw      uint32
	PointerToRaw   uint32
}

// peImage is what the precalculation needs from a PE image's headers: where
// the fields Authenticode skips lie, and the section table.
type peImage struct {
	r    io.ReaderAt
	size int64

	checksumOff   int64 // offset of OptionalHeader.CheckSum
	certDirOff    int64 // offset of the certificate table's data directory entry, or -1
	certSize      int64 // size of the certificate table (0 without one)
	sizeOfHeaders int64
	sections      []peSection
}

// parsePE reads the headers of the PE image held in r (size bytes) and
// checks that every section's file data lies inside it.
func parsePE(r io.ReaderAt, size int64) (*peImage, error) {
	var dos [64]byte
	if size < int64(len(dos)) {
		return nil, fmt.Errorf("%w: %d bytes", ErrNotPE, size)
	}
	if _, err := r.ReadAt(dos[:], 0); err != nil {
		return nil, fmt.Errorf("reading the DOS header: %w", err)
	}
	if dos[0] != 'M' || dos[1] != 'Z' {
		return nil, ErrNotPE
	}
	lfanew := int64(binary.LittleEndian.Uint32(dos[0x3c:]))
	if lfanew < int64(len(dos)) || lfanew > maxHeaderSize || lfanew+peSignatureSize+coffHeaderSize > size {
		return nil, fmt.Errorf("PE header offset %d is outside the %d-byte file", lfanew, size)
	}
	var nt [peSignatureSize + coffHeaderSize]byte
	if _, err := r.ReadAt(nt[:], lfanew); err != nil {
		return nil, fmt.Errorf("reading the PE header: %w", err)
	}
	if !bytes.Equal(nt[:4], []byte("PE\x00\x00")) {
		return nil, fmt.Errorf("no PE signature at offset %d", lfanew)
	}
	nsec := int(binary.LittleEndian.Uint16(nt[4+2:]))
	optSize := int64(binary.LittleEndian.Uint16(nt[4+16:]))
	if nsec > maxPESections {
		return nil, fmt.Errorf("PE header lists %d sections, more than the format's %d", nsec, maxPESections)
	}
	optOff := lfanew + peSignatureSize + coffHeaderSize
	end := optOff + optSize + int64(nsec)*sectionHdrSize
	if end > size {
		return nil, fmt.Errorf("PE headers end at %d, past the end of the %d-byte file", end, size)
	}
	hdr := make([]byte, optSize+int64(nsec)*sectionHdrSize)
	if _, err := r.ReadAt(hdr, optOff); err != nil {
		return nil, fmt.Errorf("reading the PE optional header: %w", err)
	}
	opt := hdr[:optSize]
	if len(opt) < 2 {
		return nil, errors.New("PE optional header is missing")
	}
	var dirsAt, countAt int
	switch magic := binary.LittleEndian.Uint16(opt); magic {
	case magicPE32:
		countAt, dirsAt = 92, 96
	case magicPE32Plus:
		countAt, dirsAt = 108, 112
	default:
		return nil, fmt.Errorf("PE optional header magic %#x is neither PE32 nor PE32+", magic)
	}
	if len(opt) < dirsAt {
		return nil, fmt.Errorf("PE optional header is %d bytes, too short for its kind", len(opt))
	}
	img := &peImage{r: r, size: size, checksumOff: optOff + 64, certDirOff: -1}
	img.sizeOfHeaders = int64(binary.LittleEndian.Uint32(opt[60:]))
	ndirs := int64(binary.LittleEndian.Uint32(opt[countAt:]))
	if ndirs > dirSecurity {
		at := int64(dirsAt) + dirSecurity*8
		if at+8 > int64(len(opt)) {
			return nil, fmt.Errorf("PE optional header lists %d data directories but holds fewer", ndirs)
		}
		img.certDirOff = optOff + at
		img.certSize = int64(binary.LittleEndian.Uint32(opt[at+4:]))
	}
	if img.sizeOfHeaders < img.certDirOff+8 || img.sizeOfHeaders < img.checksumOff+4 || img.sizeOfHeaders > size {
		return nil, fmt.Errorf("PE SizeOfHeaders %d does not cover the optional header or exceeds the %d-byte file", img.sizeOfHeaders, size)
	}
	for i := range nsec {
		s := hdr[optSize+int64(i)*sectionHdrSize:]
		sec := peSection{
			Name:           string(bytes.TrimRight(s[:8], "\x00")),
			VirtualSize:    binary.LittleEndian.Uint32(s[8:]),
			VirtualAddress: binary.LittleEndian.Uint32(s[12:]),
			SizeOfRaw:      binary.LittleEndian.Uint32(s[16:]),
			PointerToRaw:   binary.LittleEndian.Uint32(s[20:]),
		}
		if sec.SizeOfRaw > 0 && int64(sec.PointerToRaw)+int64(sec.SizeOfRaw) > size {
			return nil, fmt.Errorf("PE section %q (%d bytes at %d) runs past the end of the %d-byte file", sec.Name, sec.SizeOfRaw, sec.PointerToRaw, size)
		}
		img.sections = append(img.sections, sec)
	}
	return img, nil
}

// section returns the first section called name, or nil.
func (p *peImage) section(name string) *peSection {
	for i := range p.sections {
		if p.sections[i].Name == name {
			return &p.sections[i]
		}
	}
	return nil
}

// sectionData is the section as the loader maps it: VirtualSize bytes, the
// file data zero-filled past SizeOfRawData. That is what systemd-stub
// measures and hands on.
func (p *peImage) sectionData(s *peSection) io.ReaderAt {
	n := min(int64(s.VirtualSize), int64(s.SizeOfRaw))
	return &zeroPadded{r: io.NewSectionReader(p.r, int64(s.PointerToRaw), n), n: n, size: int64(s.VirtualSize)}
}

// authenticodeRanges lists the byte ranges of the image that its
// Authenticode hash covers, in order, as EDK2's measured boot library
// (which OVMF runs) hashes them: the headers without the checksum and the
// certificate table's directory entry, the sections' file data in the order
// of their file offsets, then what follows SizeOfHeaders plus the sections'
// sizes up to the certificate table.
func (p *peImage) authenticodeRanges() ([][2]int64, error) {
	var ranges [][2]int64
	if p.certDirOff < 0 {
		ranges = append(ranges, [2]int64{0, p.checksumOff}, [2]int64{p.checksumOff + 4, p.sizeOfHeaders})
	} else {
		ranges = append(ranges,
			[2]int64{0, p.checksumOff},
			[2]int64{p.checksumOff + 4, p.certDirOff},
			[2]int64{p.certDirOff + 8, p.sizeOfHeaders})
	}
	sum := p.sizeOfHeaders
	secs := slices.Clone(p.sections)
	slices.SortStableFunc(secs, func(a, b peSection) int { return int(int64(a.PointerToRaw) - int64(b.PointerToRaw)) })
	for _, s := range secs {
		if s.SizeOfRaw == 0 {
			continue
		}
		ranges = append(ranges, [2]int64{int64(s.PointerToRaw), int64(s.PointerToRaw) + int64(s.SizeOfRaw)})
		sum += int64(s.SizeOfRaw)
	}
	if p.size > sum {
		switch end := p.size - p.certSize; {
		case end > sum:
			ranges = append(ranges, [2]int64{sum, end})
		case end < sum:
			return nil, fmt.Errorf("PE certificate table (%d bytes) overlaps the image's sections", p.certSize)
		}
	}
	return ranges, nil
}

// Authenticode returns the Authenticode (PE image) hash of the PE image in r
// under h, as UEFI firmware computes it when it measures an EFI application
// into PCR 4 (and as 'pesign -h' prints it for sha256).
func Authenticode(r io.ReaderAt, size int64, h crypto.Hash) ([]byte, error) {
	p, err := parsePE(r, size)
	if err != nil {
		return nil, err
	}
	ranges, err := p.authenticodeRanges()
	if err != nil {
		return nil, err
	}
	return hashRanges(r, ranges, h)
}

// hashRanges hashes the byte ranges of r in order.
func hashRanges(r io.ReaderAt, ranges [][2]int64, h crypto.Hash) ([]byte, error) {
	d := h.New()
	buf := make([]byte, 1<<20)
	for _, rg := range ranges {
		if _, err := io.CopyBuffer(d, io.NewSectionReader(r, rg[0], rg[1]-rg[0]), buf); err != nil {
			return nil, err
		}
	}
	return d.Sum(nil), nil
}

// zeroPadded reads as r (n bytes) followed by zeros up to size.
type zeroPadded struct {
	r       io.ReaderAt
	n, size int64
}

func (z *zeroPadded) ReadAt(b []byte, off int64) (int, error) {
	if off >= z.size {
		return 0, io.EOF
	}
	want := len(b)
	if int64(want) > z.size-off {
		b = b[:z.size-off]
	}
	done := 0
	if off < z.n {
		k := min(int64(len(b)), z.n-off)
		m, err := z.r.ReadAt(b[:k], off)
		if int64(m) < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return m, err
		}
		done = m
	}
	clear(b[done:])
	if len(b) < want {
		return len(b), io.EOF
	}
	return len(b), nil
}
