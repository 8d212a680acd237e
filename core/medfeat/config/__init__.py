"""Pipeline configuration: YAML with source lines, schemas per pipeline kind, overrides."""
