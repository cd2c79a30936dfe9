"""Test support for every suite of the platform: a pytest plugin (`app.testing.plugin`),
template databases and clones (`app.testing.databases`), and row builders
(`app.testing.factories`). Development dependency: it needs the `dev` extras."""
