"""The machinery behind `curifactory_cli.caching` (Curifactory's public cacher module, which
keeps the user-facing classes): how cachers are constructed and bound to an entry, how their
files are written and checksummed, which values JSON keeps, and the file formats they use."""
