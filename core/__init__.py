"""The bottom floor: small pieces every app may use, which import no app of the
project (pyproject.toml's import-linter contracts hold that): typed readers for the
environment (`env`), counting in fixed windows in Redis (`windows`), text a
database cannot keep, refused at the door (`storable`), JSON Schema derived from
TypedDicts (`json_schema`), and durations in human units (`durations`, and the
`duration` filter every template has: `template_filters`)."""
