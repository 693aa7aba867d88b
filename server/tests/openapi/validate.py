"""Checks real answers of the API against its OpenAPI 3.1 document with jsonschema (PyPI), the
way an API client generator or a contract test would read it.

Reads {"document": ..., "answers": [{"what": ..., "schema": ..., "body": ...}]} on stdin and
prints one line per answer that does not match; exits 1 if any does not.
"""

import json
import sys

from jsonschema import Draft202012Validator

given = json.load(sys.stdin)
components = given["document"]["components"]
Draft202012Validator.check_schema({"components": components})
failed = 0
for answer in given["answers"]:
    # The answer's schema, with the document's components beside it for its references.
    schema = dict(answer["schema"], components=components)
    for error in Draft202012Validator(schema).iter_errors(answer["body"]):
        failed += 1
        where = "/".join(str(p) for p in error.absolute_path)
        print(f"{answer['what']}: at /{where}: {error.message}"[:500])
print(f"{len(given['answers'])} answers checked, {failed} mismatches")
sys.exit(1 if failed else 0)
