"""Check an audit export or a record's proof offline, with only the log's public key: no
database, no service, nothing trusted but the key.

    python -m audit.verifier bundle audit-export.zip --public-key audit.pem
    python -m audit.verifier proof proof-42.json --public-key audit.pem

The public key is the PEM of GET /v1/public-key (its `public_key_pem`), obtained from the
firm out of band. Exit status 0: valid; 1: not valid (the first bad record is named);
2: the files could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from audit import domain_bundle, domain_signing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.verifier", description=__doc__.split("\n")[0]
    )
    parser.add_argument("kind", choices=("bundle", "proof"), help="an export zip or a proof JSON")
    parser.add_argument("path", type=Path)
    parser.add_argument("--public-key", type=Path, required=True, help="PEM file")
    args = parser.parse_args(argv)
    try:
        key = domain_signing.load_public_key(args.public_key.read_bytes())
        content = args.path.read_bytes()
        if args.kind == "bundle":
            outcome = domain_bundle.check_bundle(content, key)
        else:
            outcome = domain_bundle.check_proof(json.loads(content), key)
    except (OSError, ValueError) as error:
        print(json.dumps({"valid": False, "error": str(error)}), file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "valid": outcome.valid,
                "records_checked": outcome.records_checked,
                "tree_size": outcome.tree_size,
                "first_invalid_seq": outcome.first_invalid_seq,
                "reason": outcome.reason,
            }
        )
    )
    return 0 if outcome.valid else 1


if __name__ == "__main__":
    sys.exit(main())
