"""The `creator-econ` command and the settings every part of the pipeline shares."""
