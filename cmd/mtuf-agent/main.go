// Command mtuf-agent serves a node's TPM attestations to mtuf verifiers.
// See internal/agentcmd, or run mtuf-agent --help.
package main

import (
	"os"

	"github.com/mtuf/mtuf/internal/agentcmd"
)

func main() {
	os.Exit(agentcmd.Main())
}
