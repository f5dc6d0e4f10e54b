#!/usr/bin/env python3
"""Checks pefm's result lines against docs/results.schema.json.

    validate_results.py SCHEMA [FILE.jsonl ...]

Checks the schema itself, each of its examples (one per line type, all types present)
and every line of the files; prints the count of valid lines per type. Exit 1 on the
first kind of failure, naming the file, line and field."""
import json
import sys

import jsonschema


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)

    failures = []
    # A line's own type's schema, for messages that name the field: the whole schema's
    # oneOf only says that no type matched.
    types = [b["$ref"].rsplit("/", 1)[1] for b in schema["oneOf"]]
    by_name = {}
    for t in types:
        one = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{t}"}
        by_name[schema["$defs"][t]["properties"]["type"]["const"]] = validator_class(one)
    names = set(by_name)

    def check(where, line):
        if validator.is_valid(line):
            return True
        own = by_name.get(line.get("type")) if isinstance(line, dict) else None
        if own is None:
            failures.append(f"{where}: type {line.get('type')!r} is none of {sorted(names)}")
            return False
        errors = list(own.iter_errors(line)) or list(validator.iter_errors(line))
        for e in sorted(errors, key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in e.absolute_path) or "(line)"
            failures.append(f"{where}: {path}: {e.message[:300]}")
        return False

    example_types = set()
    for i, example in enumerate(schema.get("examples", [])):
        if check(f"example {i}", example):
            example_types.add(example["type"])
    if example_types != names:
        failures.append(f"examples cover {sorted(example_types)}, not every type {sorted(names)}")

    counts = {}
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as f:
            for number, text in enumerate(f, 1):
                if not text.strip():
                    failures.append(f"{path}:{number}: an empty line")
                    continue
                try:
                    line = json.loads(text)
                except ValueError as e:
                    failures.append(f"{path}:{number}: not JSON: {e}")
                    continue
                if check(f"{path}:{number}", line):
                    counts[line["type"]] = counts.get(line["type"], 0) + 1
    for failure in failures[:50]:
        print(failure)
    print(json.dumps(counts, sort_keys=True))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
