package precalc

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"
)

// DefaultBootPath is the removable-media boot path of an x86-64 ESP, where
// firmware finds the boot loader without a boot entry.
const DefaultBootPath = "EFI/BOOT/BOOTX64.EFI"

const (
	sectorSize = 512
	// maxGPTEntries bounds the partition table read; the specification's
	// usual table holds 128.
	maxGPTEntries = 1024
	// maxDirEntries bounds one directory read from a FAT file system.
	maxDirEntries = 1 << 16
)

// espTypeGUID is the EFI System Partition type C12A7328-F81F-11D2-BA4B-00A0C93EC93B
// as the GPT stores it (the first three fields little-endian).
var espTypeGUID = []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}

// File precalculates the measurements of booting the image at path: a UKI,
// an ESP (a directory or a FAT file system image) or a raw disk image with
// a GPT, the last two booting EFI/BOOT/BOOTX64.EFI.
func File(path string, banks ...crypto.Hash) (*Result, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		uki, rel, err := ESPBootFile(path)
		if err != nil {
			return nil, err
		}
		res, err := File(uki, banks...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", uki, err)
		}
		res.Source = "ESP directory, " + rel
		return res, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, source, err := Locate(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res, err := UKI(r, r.Size(), banks...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res.Source = source
	return res, nil
}

// Locate finds the UKI in an image of size bytes: the image itself when it
// is a PE file, else EFI/BOOT/BOOTX64.EFI in the FAT file system it holds
// or in the ESP of its GPT. It returns the UKI's bytes and says where they
// were found.
func Locate(r io.ReaderAt, size int64) (*io.SectionReader, string, error) {
	head := make([]byte, 2*sectorSize)
	n, err := r.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return nil, "", err
	}
	head = head[:n]
	switch {
	case n >= 2 && head[0] == 'M' && head[1] == 'Z':
		return io.NewSectionReader(r, 0, size), "UKI", nil
	case n >= 2*sectorSize && bytes.Equal(head[sectorSize:sectorSize+8], []byte("EFI PART")):
		off, length, idx, err := findESP(r, size, head[sectorSize:])
		if err != nil {
			return nil, "", err
		}
		f, err := fatFile(io.NewSectionReader(r, off, length), length, DefaultBootPath)
		if err != nil {
			return nil, "", fmt.Errorf("GPT partition %d (ESP): %w", idx, err)
		}
		return f, fmt.Sprintf("GPT disk image, ESP partition %d, %s", idx, DefaultBootPath), nil
	case n >= sectorSize && head[510] == 0x55 && head[511] == 0xaa:
		f, err := fatFile(r, size, DefaultBootPath)
		if err != nil {
			return nil, "", err
		}
		return f, "ESP image (FAT), " + DefaultBootPath, nil
	}
	return nil, "", errors.New("neither a UKI (PE), a FAT ESP image nor a GPT disk image")
}

// ESPBootFile finds EFI/BOOT/BOOTX64.EFI in the ESP directory dir, matching
// names without regard to case as FAT does, and returns its path and its
// path inside the ESP.
func ESPBootFile(dir string) (string, string, error) {
	cur := dir
	var rel []string
	for _, want := range strings.Split(DefaultBootPath, "/") {
		entries, err := os.ReadDir(cur)
		if err != nil {
			return "", "", fmt.Errorf("ESP directory %s: %w", dir, err)
		}
		found := ""
		for _, e := range entries {
			if strings.EqualFold(e.Name(), want) {
				found = e.Name()
				break
			}
		}
		if found == "" {
			return "", "", fmt.Errorf("ESP directory %s has no %s", dir, DefaultBootPath)
		}
		cur = filepath.Join(cur, found)
		rel = append(rel, found)
	}
	return cur, strings.Join(rel, "/"), nil
}

// findESP returns the byte range and the 1-based index of the first EFI
// System Partition in the GPT whose header (LBA 1) is hdr.
func findESP(r io.ReaderAt, size int64, hdr []byte) (int64, int64, int, error) {
	hdrSize := binary.LittleEndian.Uint32(hdr[12:])
	if hdrSize < 92 || hdrSize > sectorSize {
		return 0, 0, 0, fmt.Errorf("GPT header size %d is invalid", hdrSize)
	}
	check := bytes.Clone(hdr[:hdrSize])
	clear(check[16:20])
	if crc32.ChecksumIEEE(check) != binary.LittleEndian.Uint32(hdr[16:]) {
		return 0, 0, 0, errors.New("GPT header checksum does not match: the partition table is corrupt")
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	count := binary.LittleEndian.Uint32(hdr[80:])
	entrySize := binary.LittleEndian.Uint32(hdr[84:])
	if count > maxGPTEntries || entrySize < 128 || entrySize > 4096 || entriesLBA > uint64(size)/sectorSize {
		return 0, 0, 0, fmt.Errorf("GPT header is corrupt (%d entries of %d bytes at LBA %d)", count, entrySize, entriesLBA)
	}
	table := make([]byte, int64(count)*int64(entrySize))
	if _, err := r.ReadAt(table, int64(entriesLBA)*sectorSize); err != nil {
		return 0, 0, 0, fmt.Errorf("reading the GPT partition entries: %w", err)
	}
	if crc32.ChecksumIEEE(table) != binary.LittleEndian.Uint32(hdr[88:]) {
		return 0, 0, 0, errors.New("GPT partition entries' checksum does not match: the partition table is corrupt")
	}
	for i := range int(count) {
		e := table[i*int(entrySize):]
		if !bytes.Equal(e[:16], espTypeGUID) {
			continue
		}
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		if last < first || last >= uint64(size)/sectorSize {
			return 0, 0, 0, fmt.Errorf("GPT partition %d (ESP) spans LBA %d..%d, outside the %d-byte image", i+1, first, last, size)
		}
		return int64(first) * sectorSize, int64(last-first+1) * sectorSize, i + 1, nil
	}
	return 0, 0, 0, errors.New("the GPT has no EFI System Partition")
}

// fat is a FAT12, FAT16 or FAT32 file system, read-only.
type fat struct {
	r           io.ReaderAt
	size        int64
	bits        int // 12, 16 or 32
	clusterSize int64
	fatOff      int64
	dataOff     int64
	clusters    uint32 // number of data clusters
	rootOff     int64  // FAT12/16: the fixed root directory
	rootEntries int64
	rootCluster uint32 // FAT32
}

func openFAT(r io.ReaderAt, size int64) (*fat, error) {
	var bs [sectorSize]byte
	if _, err := r.ReadAt(bs[:], 0); err != nil {
		return nil, fmt.Errorf("reading the FAT boot sector: %w", err)
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(bs[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(bs[o:])) }
	bps, spc := le16(11), int64(bs[13])
	reserved, nfats, rootEnts := le16(14), int64(bs[16]), le16(17)
	total, fatSize := le16(19), le16(22)
	if total == 0 {
		total = le32(32)
	}
	if fatSize == 0 {
		fatSize = le32(36)
	}
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 || spc == 0 || spc&(spc-1) != 0 || reserved == 0 || nfats == 0 || fatSize == 0 {
		return nil, errors.New("not a FAT file system (its boot sector's parameters are invalid)")
	}
	f := &fat{r: r, size: size, clusterSize: bps * spc, fatOff: reserved * bps}
	rootSectors := (rootEnts*32 + bps - 1) / bps
	f.rootOff = (reserved + nfats*fatSize) * bps
	f.rootEntries = rootEnts
	firstData := reserved + nfats*fatSize + rootSectors
	if total <= firstData || total*bps > size {
		return nil, fmt.Errorf("FAT file system claims %d sectors of %d bytes, more than the %d-byte image holds", total, bps, size)
	}
	f.dataOff = firstData * bps
	f.clusters = uint32((total - firstData) / spc)
	switch {
	case f.clusters < 4085:
		f.bits = 12
	case f.clusters < 65525:
		f.bits = 16
	default:
		f.bits = 32
		f.rootCluster = uint32(le32(44))
	}
	if int64(f.clusters+2)*int64(f.bits)/8 > fatSize*bps {
		return nil, errors.New("FAT file system's allocation table is smaller than its clusters need")
	}
	return f, nil
}

// next returns the FAT entry of cluster c.
func (f *fat) next(c uint32) (uint32, error) {
	var b [4]byte
	switch f.bits {
	case 12:
		off := f.fatOff + int64(c) + int64(c)/2
		if _, err := f.r.ReadAt(b[:2], off); err != nil {
			return 0, err
		}
		v := uint32(binary.LittleEndian.Uint16(b[:]))
		if c&1 == 1 {
			v >>= 4
		}
		v &= 0xfff
		if v >= 0xff8 {
			return 0x0ffffff8, nil
		}
		return v, nil
	case 16:
		if _, err := f.r.ReadAt(b[:2], f.fatOff+int64(c)*2); err != nil {
			return 0, err
		}
		v := uint32(binary.LittleEndian.Uint16(b[:]))
		if v >= 0xfff8 {
			return 0x0ffffff8, nil
		}
		return v, nil
	}
	if _, err := f.r.ReadAt(b[:], f.fatOff+int64(c)*4); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]) & 0x0fffffff, nil
}

// chain returns the file extents of the cluster chain from first, enough
// for length bytes (all of it when length < 0).
func (f *fat) chain(first uint32, length int64) ([]extent, error) {
	var ext []extent
	var have int64
	c := first
	for steps := uint32(0); ; steps++ {
		if c < 2 || c >= f.clusters+2 {
			if c >= 0x0ffffff8 && length < 0 {
				return ext, nil
			}
			return nil, fmt.Errorf("FAT cluster chain is broken at cluster %d", c)
		}
		if steps > f.clusters {
			return nil, errors.New("FAT cluster chain loops")
		}
		off := f.dataOff + int64(c-2)*f.clusterSize
		if n := len(ext); n > 0 && ext[n-1].disk+ext[n-1].len == off {
			ext[n-1].len += f.clusterSize
		} else {
			ext = append(ext, extent{file: have, disk: off, len: f.clusterSize})
		}
		have += f.clusterSize
		if length >= 0 && have >= length {
			ext[len(ext)-1].len -= have - length
			return ext, nil
		}
		next, err := f.next(c)
		if err != nil {
			return nil, fmt.Errorf("reading the FAT: %w", err)
		}
		c = next
	}
}

type dirEntry struct {
	name    string // long name if any, else the 8.3 name as NAME.EXT
	short   string
	dir     bool
	cluster uint32
	size    int64
}

// readDir lists the directory whose bytes r holds (n bytes).
func readDir(r io.ReaderAt, n int64) ([]dirEntry, error) {
	if n/32 > maxDirEntries {
		n = maxDirEntries * 32
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading a FAT directory: %w", err)
	}
	var out []dirEntry
	var lfn []uint16
	for i := int64(0); i+32 <= n; i += 32 {
		e := buf[i : i+32]
		switch {
		case e[0] == 0:
			return out, nil
		case e[0] == 0xe5:
			lfn = nil
			continue
		case e[11] == 0x0f: // a long-name entry: 13 UTF-16 units, stored last first
			var part []uint16
			for _, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				part = append(part, binary.LittleEndian.Uint16(e[o:]))
			}
			if e[0]&0x40 != 0 {
				lfn = nil
			}
			lfn = append(part, lfn...)
			continue
		case e[11]&0x08 != 0: // volume label
			lfn = nil
			continue
		}
		base := strings.TrimRight(string(e[:8]), " ")
		ext := strings.TrimRight(string(e[8:11]), " ")
		short := base
		if ext != "" {
			short += "." + ext
		}
		name := short
		if lfn != nil {
			if k := indexU16(lfn, 0); k >= 0 {
				lfn = lfn[:k]
			}
			name = string(utf16.Decode(lfn))
		}
		lfn = nil
		out = append(out, dirEntry{
			name: name, short: short, dir: e[11]&0x10 != 0,
			cluster: uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:])),
			size:    int64(binary.LittleEndian.Uint32(e[28:])),
		})
	}
	return out, nil
}

func indexU16(s []uint16, v uint16) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// fatFile returns the bytes of the file at path (slash-separated, matched
// without regard to case) in the FAT file system of r.
func fatFile(r io.ReaderAt, size int64, path string) (*io.SectionReader, error) {
	f, err := openFAT(r, size)
	if err != nil {
		return nil, err
	}
	var dir io.ReaderAt
	var dirLen int64
	if f.bits == 32 {
		ext, err := f.chain(f.rootCluster, -1)
		if err != nil {
			return nil, fmt.Errorf("root directory: %w", err)
		}
		dir, dirLen = &extentReader{r: r, ext: ext}, sumExtents(ext)
	} else {
		dir, dirLen = io.NewSectionReader(r, f.rootOff, f.rootEntries*32), f.rootEntries*32
	}
	parts := strings.Split(path, "/")
	for i, want := range parts {
		entries, err := readDir(dir, dirLen)
		if err != nil {
			return nil, err
		}
		var hit *dirEntry
		for j := range entries {
			if strings.EqualFold(entries[j].name, want) || strings.EqualFold(entries[j].short, want) {
				hit = &entries[j]
				break
			}
		}
		sofar := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		switch {
		case hit == nil:
			return nil, fmt.Errorf("the FAT file system has no %s", sofar)
		case last && hit.dir:
			return nil, fmt.Errorf("%s is a directory in the FAT file system", sofar)
		case !last && !hit.dir:
			return nil, fmt.Errorf("%s is not a directory in the FAT file system", sofar)
		}
		if last {
			if hit.size == 0 {
				return nil, fmt.Errorf("%s is empty", sofar)
			}
			ext, err := f.chain(hit.cluster, hit.size)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sofar, err)
			}
			return io.NewSectionReader(&extentReader{r: r, ext: ext}, 0, hit.size), nil
		}
		ext, err := f.chain(hit.cluster, -1)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sofar, err)
		}
		dir, dirLen = &extentReader{r: r, ext: ext}, sumExtents(ext)
	}
	return nil, errors.New("empty path")
}

// extent maps len bytes of a file at offset file to the disk at disk.
type extent struct{ file, disk, len int64 }

func sumExtents(ext []extent) int64 {
	var n int64
	for _, e := range ext {
		n += e.len
	}
	return n
}

// extentReader reads a file stored in extents.
type extentReader struct {
	r   io.ReaderAt
	ext []extent
}

func (x *extentReader) ReadAt(b []byte, off int64) (int, error) {
	done := 0
	for _, e := range x.ext {
		if len(b) == done {
			break
		}
		if off+int64(done) >= e.file+e.len || off+int64(done) < e.file {
			continue
		}
		at := off + int64(done) - e.file
		k := min(int64(len(b)-done), e.len-at)
		m, err := x.r.ReadAt(b[done:done+int(k)], e.disk+at)
		done += m
		if int64(m) < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
	}
	if done < len(b) {
		return done, io.EOF
	}
	return done, nil
}
