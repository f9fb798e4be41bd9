"""Pipeline presets (YAML), installed with the package as ``esarm.configs``."""
