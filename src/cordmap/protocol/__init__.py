"""The annotation protocol: label ids, structures and levels (`schema`, `levels`,
`protocol.json`). Every other package reads labels through it, so it depends on none."""
