package tpm

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-eventlog/tcg"
)

func TestLoadBootChainFixture(t *testing.T) {
	c := loadFixture(t, "image-v1.0.0.yaml")
	if c.Name != "mtuf-image v1.0.0" {
		t.Errorf("Name = %q", c.Name)
	}
	var kernel *BootEvent
	separators := map[uint32]int{}
	for i := range c.Events {
		ev := &c.Events[i]
		if ev.Description == "kernel" {
			kernel = ev
		}
		if ev.Type == tcg.Separator {
			separators[ev.PCR]++
			if !bytes.Equal(ev.Data, []byte{0, 0, 0, 0}) {
				t.Errorf("separator on PCR %d holds %x, want 00000000", ev.PCR, ev.Data)
			}
		}
	}
	if kernel == nil || kernel.PCR != 4 || kernel.Type != tcg.EFIBootServicesApplication || string(kernel.Data) != "vmlinuz-6.6.30-mtuf" {
		t.Errorf("kernel event = %+v", kernel)
	}
	for pcr := uint32(0); pcr < 8; pcr++ {
		if separators[pcr] != 1 {
			t.Errorf("PCR %d has %d separators, want 1", pcr, separators[pcr])
		}
	}
}

func TestParseBootChainJSON(t *testing.T) {
	c, err := ParseBootChain([]byte(`{"name": "json image", "events": [
		{"pcr": 8, "type": "EV_IPL", "description": "command line", "data": "quiet"},
		{"pcr": 4, "type": "EV_SEPARATOR", "description": "separator"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Events) != 2 || c.Events[0].PCR != 8 || string(c.Events[0].Data) != "quiet" || c.Events[1].Type != tcg.Separator {
		t.Errorf("parsed %+v", c)
	}
}

func TestParseBootChainErrors(t *testing.T) {
	const ok = `{pcr: 8, type: EV_IPL, description: cmdline, data: quiet}`
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"empty", "", []string{"empty file"}},
		{"not yaml", "name: [unclosed", []string{"not YAML or JSON"}},
		{"two documents", "name: a\nevents: [" + ok + "]\n---\nname: b\n", []string{"more than one YAML document"}},
		{"list at top", "- a\n- b\n", []string{"line 1", "want a mapping"}},
		{"missing name", "events: [" + ok + "]\n", []string{"missing field name"}},
		{"empty name", "name: ''\nevents: [" + ok + "]\n", []string{"field name"}},
		{"missing events", "name: a\n", []string{"missing field events"}},
		{"events not a list", "name: a\nevents: {pcr: 1}\n", []string{"line 2", "field events", "list"}},
		{"no events", "name: a\nevents: []\n", []string{"no events"}},
		{"unknown top field", "name: a\nimage: b\nevents: [" + ok + "]\n", []string{`unknown field "image"`, "name, events"}},
		{"duplicate field", "name: a\nname: b\nevents: [" + ok + "]\n", []string{`"name" given twice`}},
		{"event not a mapping", "name: a\nevents:\n  - kernel\n", []string{"events[0] (line 3)", "want a mapping"}},
		{"unknown event field", "name: a\nevents:\n  - " + ok + "\n  - {pcr: 4, type: EV_IPL, description: k, data: x, digest: ab}\n",
			[]string{"events[1] (line 4)", `unknown field "digest"`, "pcr, type, description, data"}},
		{"missing pcr", "name: a\nevents:\n  - {type: EV_IPL, description: k, data: x}\n", []string{"events[0] (line 3)", "missing field pcr"}},
		{"pcr string", "name: a\nevents:\n  - {pcr: four, type: EV_IPL, description: k, data: x}\n", []string{"events[0]", "field pcr", `"four"`}},
		{"pcr quoted", "name: a\nevents:\n  - {pcr: \"4\", type: EV_IPL, description: k, data: x}\n", []string{"field pcr", "integer"}},
		{"pcr out of range", "name: a\nevents:\n  - {pcr: 24, type: EV_IPL, description: k, data: x}\n", []string{"field pcr", "24", "0 to 23"}},
		{"pcr negative", "name: a\nevents:\n  - {pcr: -1, type: EV_IPL, description: k, data: x}\n", []string{"field pcr", "-1"}},
		{"drtm pcr", "name: a\nevents:\n  - {pcr: 18, type: EV_IPL, description: k, data: x}\n", []string{"field pcr", "PCR 18", "dynamic root of trust"}},
		{"missing type", "name: a\nevents:\n  - {pcr: 4, description: k, data: x}\n", []string{"missing field type"}},
		{"unknown type", "name: a\nevents:\n  - {pcr: 4, type: EV_KERNEL, description: k, data: x}\n", []string{"field type", `"EV_KERNEL"`, "EV_IPL"}},
		{"no action type", "name: a\nevents:\n  - {pcr: 4, type: EV_NO_ACTION, description: k, data: x}\n", []string{"field type", `"EV_NO_ACTION"`}},
		{"missing description", "name: a\nevents:\n  - {pcr: 4, type: EV_IPL, data: x}\n", []string{"missing field description"}},
		{"blank description", "name: a\nevents:\n  - {pcr: 4, type: EV_IPL, description: ' ', data: x}\n", []string{"field description"}},
		{"missing data", "name: a\nevents:\n  - {pcr: 4, type: EV_IPL, description: k}\n", []string{"events[0] (line 3)", "missing field data"}},
		{"data list", "name: a\nevents:\n  - {pcr: 4, type: EV_IPL, description: k, data: [1]}\n", []string{"field data", "string"}},
		{"separator with data", "name: a\nevents:\n  - {pcr: 4, type: EV_SEPARATOR, description: s, data: x}\n", []string{"field data", "EV_SEPARATOR", "00000000h"}},
		{"data too large", "name: a\nevents:\n  - {pcr: 4, type: EV_IPL, description: k, data: " + strings.Repeat("x", MaxEventDataBytes+1) + "}\n",
			[]string{"field data", "at most 65536"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBootChain([]byte(tc.doc))
			if err == nil {
				t.Fatal("parsed, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadBootChainFileErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#"), MaxBootChainBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: a\nevents:\n  - {pcr: 99, type: EV_IPL, description: k, data: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]string{
		filepath.Join(dir, "missing.yaml"): {"missing.yaml", "no such file"},
		big:                                {"big.yaml", "larger than 1048576 bytes"},
		bad:                                {"bad.yaml", "events[0] (line 3)", "99"},
	} {
		_, err := LoadBootChain(path)
		if err == nil {
			t.Errorf("LoadBootChain(%s) succeeded", path)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("LoadBootChain(%s) error %q does not mention %q", path, err, w)
			}
		}
	}
}

func TestValidateLimits(t *testing.T) {
	ev := BootEvent{PCR: 8, Type: tcg.Ipl, Description: "d", Data: []byte("x")}
	many := &BootChain{Name: "n", Events: make([]BootEvent, MaxBootEvents+1)}
	for i := range many.Events {
		many.Events[i] = ev
	}
	if err := many.Validate(); err == nil || !strings.Contains(err.Error(), "at most 1024") {
		t.Errorf("Validate of %d events = %v, want a limit error", len(many.Events), err)
	}
	for name, bad := range map[string]BootEvent{
		"unknown type":   {PCR: 8, Type: tcg.EventType(0x1234), Description: "d", Data: []byte("x")},
		"pcr 24":         {PCR: 24, Type: tcg.Ipl, Description: "d", Data: []byte("x")},
		"bad separator":  {PCR: 0, Type: tcg.Separator, Description: "d", Data: []byte{0xff, 0xff, 0xff, 0xff}},
		"no description": {PCR: 8, Type: tcg.Ipl, Data: []byte("x")},
		"hcrtm event":    {PCR: 0, Type: tcg.EFIHCRTMEvent, Description: "d", Data: []byte("x")},
	} {
		c := &BootChain{Name: "n", Events: []BootEvent{ev, bad}}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "events[1]") {
			t.Errorf("%s: Validate = %v, want an error naming events[1]", name, err)
		}
	}
}

func TestExpectedPCRs(t *testing.T) {
	c := &BootChain{Name: "n", Events: []BootEvent{
		{PCR: 8, Type: tcg.Ipl, Description: "a", Data: []byte("a")},
		{PCR: 8, Type: tcg.Ipl, Description: "b", Data: []byte("b")},
	}}
	got, err := c.ExpectedPCRs(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	// PCR8 = H(H(0^32 || H(a)) || H(b)), by hand.
	h := func(parts ...[]byte) []byte {
		d := crypto.SHA256.New()
		for _, p := range parts {
			d.Write(p)
		}
		return d.Sum(nil)
	}
	want := h(h(make([]byte, 32), h([]byte("a"))), h([]byte("b")))
	if len(got) != 1 || !bytes.Equal(got[8], want) {
		t.Errorf("ExpectedPCRs = %x, want only PCR 8 = %x", got, want)
	}
}

func TestEventTypeNames(t *testing.T) {
	names := EventTypeNames()
	for _, want := range []string{"EV_IPL", "EV_SEPARATOR", "EV_EFI_ACTION", "EV_S_CRTM_VERSION", "EV_EFI_BOOT_SERVICES_APPLICATION"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("EventTypeNames lacks %s", want)
		}
	}
	for _, n := range names {
		if n == "EV_NO_ACTION" || n == "EV_EFI_HCRTM_EVENT" {
			t.Errorf("EventTypeNames offers %s, which a boot chain cannot measure", n)
		}
	}
}
