package keys_test

import (
	"fmt"
	"log"
	"time"

	"github.com/mtuf/mtuf/keys"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// A key goes through its encrypted file format and then signs TUF root
// metadata that go-tuf verifies.
func Example() {
	priv, err := keys.Generate(keys.ED25519)
	if err != nil {
		log.Fatal(err)
	}
	password := []byte("example password")
	keyFile, err := keys.MarshalPrivate(priv, password) // the contents of NAME.key
	if err != nil {
		log.Fatal(err)
	}
	loaded, err := keys.ParsePrivate(keyFile, password)
	if err != nil {
		log.Fatal(err)
	}

	signer, err := keys.Signer(loaded)
	if err != nil {
		log.Fatal(err)
	}
	key, err := keys.TUFKey(loaded.Public())
	if err != nil {
		log.Fatal(err)
	}
	root := metadata.Root(time.Now().AddDate(1, 0, 0))
	if err := root.Signed.AddKey(key, metadata.ROOT); err != nil {
		log.Fatal(err)
	}
	if _, err := root.Sign(signer); err != nil {
		log.Fatal(err)
	}
	fmt.Println("root verifies:", root.VerifyDelegate(metadata.ROOT, root) == nil)

	_, err = keys.ParsePrivate(keyFile, []byte("guess"))
	fmt.Println(err)
	// Output:
	// root verifies: true
	// wrong password
}
