package mtufcmd

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// registerCompletions gives the flags whose values come from a known set
// their completions, wherever a command has such a flag, so that a new
// command gets them without asking: platforms from the profiles, key
// types, output formats, and the images the client trusts.
func registerCompletions(c *cobra.Command) {
	fixed := func(values ...string) cobra.CompletionFunc {
		return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return withPrefix(values, toComplete), cobra.ShellCompDirectiveNoFileComp
		}
	}
	complete := map[string]cobra.CompletionFunc{
		"platform": fixed(metadata.Platforms()...),
		"output":   fixed("text", "json"),
	}
	if c.Name() == "generate" && c.Parent() != nil && c.Parent().Name() == "keys" {
		complete["type"] = fixed(string(keys.ED25519), string(keys.ECDSAP256), string(keys.RSA3072))
	}
	if c.Parent() != nil && c.Parent().Name() == "client" {
		complete["image"] = trustedImages
		complete["drop-image"] = trustedImages
	}
	for name, f := range complete {
		if c.Flags().Lookup(name) != nil {
			// Registering twice is the only error, and each flag is
			// registered once here.
			_ = c.RegisterFlagCompletionFunc(name, f)
		}
	}
	for _, sub := range c.Commands() {
		registerCompletions(sub)
	}
}

// trustedImages completes the images that the client of --state (or the
// default state) trusts, read from its config without network; none when
// there is no client.
func trustedImages(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	dir := ""
	if f := cmd.Flag("state"); f != nil {
		dir = f.Value.String()
	}
	if dir == "" {
		d, err := client.DefaultStateDir()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		dir = d
	}
	cl, err := client.Open(dir)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	seen := map[string]bool{}
	for _, ti := range cl.Config().Images {
		if !seen[ti.Image] && strings.HasPrefix(ti.Image, toComplete) {
			seen[ti.Image] = true
			out = append(out, cobra.CompletionWithDesc(ti.Image, "trusted on "+ti.Platform))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// withPrefix returns the values that start with prefix: what the word
// typed so far can still become.
func withPrefix(values []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, v := range values {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out
}
