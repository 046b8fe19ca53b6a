"""``python -m tomasulo.workflows`` rewrites ``workflow.schema.json`` from the pydantic model."""

from ._schema import SCHEMA_PATH, schema_text

SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
print(f"wrote {SCHEMA_PATH}")
