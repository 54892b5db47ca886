#!/bin/sh
# Regenerates this fixture with in-toto 1.3.1 (Debian's in-toto package):
# fresh keys of each type, a layout made and signed with in-toto's Python
# API, and links made by in-toto-run. The private keys are deleted at the
# end; only public keys, key IDs, the layout, the links and the measurements
# document they attest are kept.
set -eu
cd "$(dirname "$0")"
rm -f ./*.link root.layout ./*.pub ./*.keyid

in-toto-keygen -t ed25519 owner-test
in-toto-keygen -t ecdsa reader-test
in-toto-keygen -t rsa -b 3072 publisher-test

/usr/bin/python3 - <<'PY'
from securesystemslib import interface
from in_toto.models.layout import Layout, Step
from in_toto.models.metadata import Metablock

owner = interface.import_ed25519_privatekey_from_file("owner-test")
reader = interface.import_ecdsa_publickey_from_file("reader-test.pub")
publisher = interface.import_rsa_publickey_from_file("publisher-test.pub")
for name, key in (("owner-test", interface.import_ed25519_publickey_from_file("owner-test.pub")),
                  ("reader-test", reader), ("publisher-test", publisher)):
    with open(name + ".keyid", "w") as f:
        f.write(key["keyid"] + "\n")

layout = Layout(expires="2099-01-01T00:00:00Z", readme="mtuf test fixture")
layout.add_functionary_key(reader)
layout.add_functionary_key(publisher)
match = ["MATCH", "measurements.json", "WITH", "PRODUCTS", "FROM", "read-measurements"]
layout.steps = [
    Step(name="read-measurements", pubkeys=[reader["keyid"]], threshold=1,
         expected_materials=[], expected_products=[["CREATE", "measurements.json"], ["DISALLOW", "*"]]),
    Step(name="publish", pubkeys=[publisher["keyid"]], threshold=1,
         expected_materials=[match, ["DISALLOW", "*"]], expected_products=[match, ["DISALLOW", "*"]]),
]
mb = Metablock(signed=layout)
mb.sign(owner)
mb.dump("root.layout")
PY

in-toto-run -n read-measurements -k reader-test -t ecdsa -p measurements.json -- true
in-toto-run -n publish -k publisher-test -t rsa -m measurements.json -x
in-toto-verify -l root.layout -k owner-test.pub -t ed25519

rm -f owner-test reader-test publisher-test
chmod 644 ./*.pub
