package precalc

import (
	"encoding/binary"
	"unicode/utf16"
)

// EvEFIVariableDriverConfig is the event type of a Secure Boot policy
// variable measured into PCR 7.
const EvEFIVariableDriverConfig = 0x80000001

// The vendor GUIDs of the Secure Boot variables, as UEFI stores GUIDs
// (the first three fields little-endian).
var (
	efiGlobalVariable     = []byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}
	imageSecurityDatabase = []byte{0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f}
)

// AddSecureBootDisabled adds the PCR 7 events of firmware whose Secure
// Boot is disabled with no keys enrolled, as OVMF boots from its empty
// variable store: SecureBoot (one byte, 0), then PK, KEK, db and dbx, each
// empty, as EV_EFI_VARIABLE_DRIVER_CONFIG events, then the separator. With
// Secure Boot off, no image verification adds authority events after it.
// PCRs then includes PCR 7.
func (r *Result) AddSecureBootDisabled() {
	vars := []struct {
		guid []byte
		name string
		data []byte
	}{
		{efiGlobalVariable, "SecureBoot", []byte{0}},
		{efiGlobalVariable, "PK", nil},
		{efiGlobalVariable, "KEK", nil},
		{imageSecurityDatabase, "db", nil},
		{imageSecurityDatabase, "dbx", nil},
	}
	for _, v := range vars {
		r.Events = append(r.Events, Event{7, EvEFIVariableDriverConfig, v.name, r.digests(variableData(v.guid, v.name, v.data))})
	}
	r.Events = append(r.Events, Event{7, EvSeparator, "separator", r.digests(make([]byte, 4))})
}

// variableData encodes UEFI_VARIABLE_DATA, the event data of a measured
// variable: vendor GUID, name length in characters, data length, the name
// in UTF-16LE without its NUL, and the data.
func variableData(guid []byte, name string, data []byte) []byte {
	u := utf16.Encode([]rune(name))
	out := append([]byte{}, guid...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(u)))
	out = binary.LittleEndian.AppendUint64(out, uint64(len(data)))
	for _, c := range u {
		out = binary.LittleEndian.AppendUint16(out, c)
	}
	return append(out, data...)
}
