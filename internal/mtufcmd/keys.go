package mtufcmd

import (
	"bytes"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
)

func newKeysCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Generate keys and show their TUF key ids",
		Example: `  MTUF_PASSWORD=... mtuf keys generate --type ecdsa-p256 --out releases
  mtuf keys id releases.pub`,
	}
	c.AddCommand(newKeysGenerateCmd(g), newKeysIDCmd(g))
	return c
}

func newKeysGenerateCmd(g *globals) *cobra.Command {
	var typ, out string
	c := &cobra.Command{
		Use:   "generate --type TYPE --out NAME",
		Short: "Generate a key pair: NAME.key (encrypted, cosign format, 0600) and NAME.pub",
		Long: `Generate a key pair. NAME.key is encrypted with a password, in the format
cosign uses, so mtuf can use keys made by 'cosign generate-key-pair' and
cosign can read the keys mtuf makes. Stock cosign (v2.6.5) signs with
ecdsa-p256 and rsa-3072 keys ('cosign sign-blob --key NAME.key'); it fails
on an ed25519 key, so a key that cosign must sign with, such as the
releases key, is ecdsa-p256. mtuf signs with all three types.
NAME.pub is the PEM public key.

The password comes from $MTUF_PASSWORD, --password-file, or a prompt.`,
		Example: `  mtuf keys generate --type ed25519 --out root-1
  MTUF_PASSWORD=... mtuf keys generate --type ecdsa-p256 --out releases`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr("--out NAME is required")
			}
			t, err := keys.ParseType(typ)
			if err != nil {
				return usageErr("%v", err)
			}
			pw, err := g.password().Password(out+".key", true)
			if err != nil {
				return err
			}
			priv, err := keys.Generate(t)
			if err != nil {
				return err
			}
			if err := keys.WriteKeyPair(out, priv, pw); err != nil {
				return err
			}
			id, err := keys.KeyID(priv.Public())
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(map[string]string{"private": out + ".key", "public": out + ".pub", "keyid": id, "type": string(t)})
			}
			fmt.Fprintf(g.stdout, "wrote %s.key and %s.pub (%s, key id %s)\n", out, out, t, id)
			return nil
		},
	}
	c.Flags().StringVar(&typ, "type", "ed25519", "key type: ed25519, ecdsa-p256 or rsa-3072 (cosign signs only with the last two)")
	c.Flags().StringVar(&out, "out", "", "write `NAME`.key and NAME.pub")
	addOutputFlag(c, g)
	return c
}

func newKeysIDCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "id FILE",
		Short: "Print the TUF or in-toto key id of a public or private key",
		Long: `Print the key id of a key: a PEM public key, an encrypted private key
(which needs its password), a pkcs11: URI, or an awskms:// reference of a key
in AWS KMS (whose id is that of the public key the KMS holds).

One key has two ids. TUF and in-toto both hash a JSON record of the public
key, but not the same record: TUF metadata (root.json, targets.json) names
the key by the hash of its TUF record, which --format tuf (the default)
prints; an in-toto layout, a link's signature and a link file's name
(STEP.<first 8 of the id>.link) use the hash of its in-toto record, which
also lists the hash algorithms and writes an ed25519 key in hex, and which
--format intoto prints.`,
		Example: `  mtuf keys id root-1.pub
  mtuf keys id --format intoto ci.pub
  MTUF_PASSWORD=... mtuf keys id cosign.key
  mtuf keys id awskms:///alias/mtuf-online`,
		Args: exactArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if format != "tuf" && format != "intoto" {
				return usageErr("--format must be tuf or intoto, not %q", format)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := keys.LoadPublic(args[0])
			if err != nil {
				priv, perr := keys.LoadPrivate(cmd.Context(), args[0], g.password())
				if perr != nil {
					if data, rerr := os.ReadFile(args[0]); rerr == nil && bytes.Contains(data, []byte("PRIVATE KEY")) {
						return perr
					}
					return err
				}
				pub = priv.Public()
			}
			keyID := keys.KeyID
			if format == "intoto" {
				keyID = intoto.KeyID
			}
			id, err := keyID(pub)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if g.json() {
				return g.printJSON(map[string]string{"file": args[0], "keyid": id, "format": format})
			}
			fmt.Fprintln(g.stdout, id)
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "tuf", "which id: tuf (of TUF metadata) or intoto (of in-toto layouts and links)")
	addOutputFlag(c, g)
	return c
}
