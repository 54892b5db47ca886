package mtufcmd

import (
	"encoding/base64"
	"fmt"
	"sort"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// The repository a release build trusts on first use: its initial root
// metadata, base64 of the exact bytes, and its URL. 'make release ROOT=FILE
// REPO=URL' (scripts/release.sh) sets them with
//
//	-ldflags "-X github.com/mtuf/mtuf/internal/mtufcmd.embeddedRoot=BASE64
//	          -X github.com/mtuf/mtuf/internal/mtufcmd.embeddedRepo=URL"
//
// after checking that the file is root metadata signed by its own keys. A
// development build has neither. The -X of a string is the one way to put
// bytes into a binary at link time without a generated source file; base64
// keeps them exact through the shell and the linker.
var (
	embeddedRoot string
	embeddedRepo string
)

// embeddedTrust returns the root metadata and repository URL compiled into
// this binary; ok is false for a build without them.
func embeddedTrust() (root []byte, repoURL string, ok bool, err error) {
	if embeddedRoot == "" {
		return nil, "", false, nil
	}
	root, err = base64.StdEncoding.DecodeString(embeddedRoot)
	if err != nil {
		return nil, "", true, fmt.Errorf("the root embedded in this binary is not base64: %w; give --root FILE, and rebuild with 'make release'", err)
	}
	return root, embeddedRepo, true, nil
}

// rootSummary is what a user checks of the root they trust: its version
// and the keys that sign the next one.
type rootSummary struct {
	Version   int64    `json:"version"`
	KeyIDs    []string `json:"key_ids"`
	Threshold int      `json:"threshold"`
}

func summarizeRoot(data []byte) (rootSummary, error) {
	md, err := tuf.Root().FromBytes(data)
	if err != nil {
		return rootSummary{}, err
	}
	role, ok := md.Signed.Roles[tuf.ROOT]
	if !ok {
		return rootSummary{}, fmt.Errorf("root metadata has no root role")
	}
	ids := append([]string(nil), role.KeyIDs...)
	sort.Strings(ids)
	return rootSummary{Version: md.Signed.Version, KeyIDs: ids, Threshold: role.Threshold}, nil
}
