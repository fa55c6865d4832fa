"""DEX KFP components: plain, unit-testable step logic plus thin ``@dsl.component`` wrappers
(in :mod:`dex_components.kfp_components`)."""

# The tag names the Python line: KFP treats a base image without "python" as non-Python.
COMPONENT_IMAGE = "ghcr.io/dataenginex/dex-components:0.1.0-python3.11"
